"""The Appliance: one launched appliance VM, its slots, and the calls into it.

The Appliance decides; the slot table says what is allowed; the backend and
the agent client carry out.  Every slot change is checked against the table
first, carried out, and only then recorded, so a refused or failed call
leaves the table, the other slots and their data as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import io
import logging
import os
import secrets
import shutil
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from . import backends
from .agent_client import AgentClient
from .backends import (
    Backend,
    Detachable,
    KeepsDiskSetMetadata,
    Layout,
    Migrates,
    RestoresUnderItsName,
    Saves,
    Snapshots,
    VMSpec,
)
from .errors import (
    AgentError,
    ChannelBroken,
    ChannelClosed,
    DeviceBusyError,
    DriveError,
    GuestOSError,
    GuestslotsError,
    HostFileError,
    LabelError,
    LaunchError,
    QemuError,
    SlotError,
    StateError,
)
from .guest.archive import ArchiveCalls
from .guest.base import serialised
from .guest.devio import DeviceIoCalls
from .guest.edits import EditCalls
from .guest.fs import FsCalls
from .guest.fstools import FsToolCalls
from .guest.guestexec import GuestExecCalls
from .guest.inspect import InspectionCalls
from .guest.listing import ListingCalls
from .guest.net import NetCalls
from .guest.parts import PartCalls
from .guest.tree import TreeCalls
from .guest.volumes import VolumeCalls
from .host import owner, runtime, savedstate, warmup
from .host.accel import AccelChoice, choose_accel
from .host.build import ApplianceImage, ensure_appliance
from .host.proc import CommandError, run, signal_process
from .host.room import check_room
from .host.sparse import punch_holes
from .model.cpus import Vcpu, VcpuError, VcpuTable
from .model.disksets import DiskSet, DiskSetError
from .model.drives import NULL_DRIVE, DriveSpec, check_chain, make_drive
from .model.flags import CONFIG, CURRENT, LIVE, Affect, NotRunning
from .model.flags import resolve as resolve_flags
from .model.ids import device_id
from .model.migration import (
    MigrationParamError,
    MigrationParams,
    MigrationProgress,
    check_destination,
)
from .model.names import is_volume, split_btrfsvol, translate_out_text
from .model.nics import Nic, NicError, NicSpec, NicTable, make_nic, with_guest_view
from .model.runtime import NicRecord, RuntimeRecord, RuntimeRecordError, SlotRecord
from .model.saved import DESCRIPTION, DISKS, SavedAppliance
from .model.slots import MAX_SLOTS, Slot, SlotState, SlotTable
from .model.snapshots import MAX_CHAIN, SnapshotError, check_name, overlay_path
from .wire import BTRFSVOL

log = logging.getLogger(__name__)

#: Chooses the backend of an ``Appliance()`` that names none (default ``qemu``).
BACKEND_ENV = "GUESTSLOTS_BACKEND"

Progress = Callable[[str], None]


class ApplianceState(enum.Enum):
    """Where an Appliance is in its life."""

    CONFIG = "not launched"
    RUNNING = "running"
    #: Shut down (or died); it may be launched again from its definition.
    CLOSED = "shut down"
    #: A detached appliance this object let go of (:meth:`Appliance.disconnect`): it
    #: runs on, for :func:`attach`.
    DISCONNECTED = "disconnected (running detached)"


def _warn(message: str, stacklevel: int) -> None:
    """Log *message* and issue it as a :class:`RuntimeWarning` (*stacklevel* as for
    :func:`warnings.warn`, counted from the caller)."""
    log.warning("%s", message)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


@functools.cache
def _owner_record(pid: int) -> dict[str, object]:
    """Process *pid* (this one) as a runtime record's owner: read from /proc once per
    process (keyed by pid, so a forked child records itself)."""
    return dataclasses.asdict(owner.current())


def _identity(path: str, chain: tuple[str, ...] = ()) -> str | None:
    """Which file *path* is and how it is now (None: gone); with its snapshot overlays
    *chain*, all of them, separated by ``;``."""
    try:
        return ";".join(runtime.image_identity(p) for p in (path, *chain))
    except OSError:
        return None


def _reap(backend: Backend) -> None:
    """Finaliser: no VM outlives its Appliance, even one the caller forgot."""
    with contextlib.suppress(Exception):
        backend.kill()


class Appliance(InspectionCalls, VolumeCalls, FsCalls, NetCalls, TreeCalls, EditCalls,
                ArchiveCalls, PartCalls, FsToolCalls, DeviceIoCalls, ListingCalls,
                GuestExecCalls):
    """A small Linux appliance VM with drive slots that can be hotplugged by index.

    Reserve slots with :meth:`add_drive` (``/dev/null`` for an empty one),
    :meth:`launch`, then :meth:`hotplug` and :meth:`unplug` by slot index.
    Slot *i* is always ``/dev/sd`` + letters(i) (0 -> ``/dev/sda``,
    27 -> ``/dev/sdab``), whatever the kernel's discovery order was.  Use it as
    a context manager, or call :meth:`shutdown`.

    With ``detached=True`` the appliance outlives this object and this process (on
    the libvirt backend: at a libvirt daemon, not the embedded driver): it runs until
    :meth:`shutdown` (or ``guestslots stop ID``), and another process takes it over
    with :func:`guestslots.attach` once this one has exited or called
    :meth:`disconnect`.
    """

    def __init__(
        self,
        backend: str | None = None,
        *,
        accel: str | None = None,
        memory_mb: int = 512,
        tcg_cache_mib: int = 64,
        max_slots: int = MAX_SLOTS,
        call_timeout: float = 120.0,
        boot_timeout: float = 180.0,
        qemu: str = "/usr/bin/qemu-system-x86_64",
        progress: Progress | None = None,
        saved_state: bool = True,
        auto_activate: bool = True,
        uri: str | None = None,
        vcpus: int = 1,
        max_vcpus: int = 1,
        detached: bool = False,
    ) -> None:
        backend = backend or os.environ.get(BACKEND_ENV) or "qemu"
        backends.check_options(backend, uri, detached, max_vcpus)
        #: The appliance outlives this object and its process (see :func:`attach`).
        self.detached = detached
        self.backend = backend
        #: The libvirt URI (backend ``libvirt``): default ``$GUESTSLOTS_LIBVIRT_URI``, else
        #: libvirt's embedded QEMU driver.
        self.uri = uri
        self._accel_request = accel
        self.memory_mb = memory_mb
        #: TCG's translation cache (MiB): bounds how far QEMU's memory grows under TCG.
        self.tcg_cache_mib = tcg_cache_mib
        self.call_timeout = call_timeout
        self.boot_timeout = boot_timeout
        self.qemu_binary = qemu
        self._progress = progress
        #: Whether launches save and restore the booted appliance (see :meth:`launch`).
        self.saved_state = saved_state
        #: Whether a hotplugged disk's complete volume groups are activated (md arrays
        #: are assembled either way); without it, use :meth:`vg_activate`.
        self.auto_activate = auto_activate
        #: How the last launch started the VM: ``"restored"`` or ``"cold boot"``.
        self.launched_from: str | None = None
        #: This appliance's id: names its runtime record (``guestslots ps``).
        self.id = secrets.token_hex(4)
        self._started = 0.0
        self._layout_key = ""
        self._table = SlotTable(max_slots)
        #: vCPU ids 0..max_vcpus-1; *vcpus* of them (0...) plugged at launch.
        self._vcpus = VcpuTable(vcpus, max_vcpus)
        #: NIC slots: what the running appliance has, what its definition has.
        self._nics = NicTable(self.id)
        #: slot index -> its image's identity when plugged (see :meth:`_plug`).
        self._identities: dict[int, str | None] = {}
        #: Each slot's external snapshot overlays (host paths, oldest first).
        self._diskset = DiskSet()
        #: The last runtime record written: the layout :meth:`relaunch` brings back.
        self._record: RuntimeRecord | None = None
        #: A vCPU was unplugged from the running VM (see :meth:`_plug_vcpu`).
        self._vcpu_unplugged = False
        self._state = ApplianceState.CONFIG
        self._lock = threading.RLock()
        self._backend: Backend | None = None
        self._agent: AgentClient | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        #: The accelerator used, and why (set by :meth:`launch`).
        self.accel: AccelChoice | None = None
        #: The appliance image booted (set by :meth:`launch`).
        self.image: ApplianceImage | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Appliance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def state(self) -> ApplianceState:
        """The appliance's state: not launched, running, or shut down."""
        return self._state

    def _require(self, call: str, state: ApplianceState) -> None:
        if self._state is not state:
            raise StateError(call, state.value, self._state.value)

    def _say(self, message: str) -> None:
        log.info("%s", message)
        if self._progress is not None:
            self._progress(message)

    def add_drive(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        readonly: bool = True,
        label: str | None = None,
        overlay: bool = False,
    ) -> int:
        """Reserve the next slot before launch; return its index.

        ``/dev/null`` reserves an empty slot, to be filled later by
        :meth:`hotplug`.  Any other path is checked now and attached at launch.
        ``format`` is ``raw`` (the default) or ``qcow2``, never guessed;
        drives are read-only unless ``readonly=False``; ``label`` (1-20
        letters, digits, ``_``) names the slot as ``/dev/disk/guestslots/LABEL``;
        with ``overlay=True`` the guest may write, but to a throwaway overlay:
        the image itself is only read, and the writes are gone at unplug.

        A read-only drive is also seen through a throwaway overlay (as libguestfs
        does), so that md arrays assemble and dirty journals replay; only
        read-only mounts are allowed, and the image is never written.
        """
        with self._lock:
            if self._state is ApplianceState.RUNNING:
                raise StateError(
                    "add_drive",
                    ApplianceState.CONFIG.value,
                    self._state.value + " (reserve every slot before launch; then use hotplug)",
                )
            if os.fspath(path) == NULL_DRIVE:
                if label is not None:
                    raise LabelError("an empty slot has no label: give the label to hotplug")
                return self._table.reserve(None)
            drive = make_drive(path, format, readonly, label, overlay)
            self._check_shared_image(None, drive, config=True)
            return self._table.reserve(drive)

    def launch(self, fresh: bool = False) -> None:
        """Start the appliance and attach the drives added so far.

        The first launch of a given configuration builds the appliance if
        needed, boots it cold, and saves the booted state; later launches
        restore that state (under a second).  ``fresh=True`` forces a cold
        boot.  A restore that fails for any reason falls back to a cold boot
        with a :class:`RuntimeWarning`, and the bad state is rebuilt.

        An appliance that was shut down may be launched again: it starts from its
        definition (the drives of :meth:`add_drive` and of hotplug and unplug with
        ``CONFIG``), not from what was plugged when it stopped.

        Raises :class:`LaunchError` with QEMU's exit status, command line and
        log tail if the appliance does not come up; nothing is left running.
        """
        with self._lock:
            if self._state is ApplianceState.RUNNING:
                raise StateError("launch", ApplianceState.CONFIG.value, self._state.value)
            self._refuse_running_twin()
            self._table.show_config()
            started = time.monotonic()
            self.image = ensure_appliance(self._say)
            self.accel = choose_accel(self.qemu_binary, str(self.image.kernel), self._accel_request)
            self._say(f"accelerator: {self.accel.accel} ({self.accel.reason})")
            self._start_vm(self.image, fresh)
            try:
                for slot in self._table:
                    if slot.drive is not None:
                        self._plug(slot.index, slot.drive)
                self._vcpus.live = {0}
                for vcpu in sorted(self._vcpus.config - {0}):
                    self._plug_vcpu(vcpu)
                self._nics.live = {}
                for nic_slot, nic in sorted(self._nics.config.items()):
                    self._plug_nic(nic_slot, nic)
            except BaseException:
                self._teardown()
                self._state = ApplianceState.CLOSED
                self._table.show_config()
                raise
            took = time.monotonic() - started
            self._started = time.time()
            self._update_runtime()
            self._say(f"appliance ready in {took:.2f} s ({self.launched_from})")

    def _refuse_running_twin(self) -> None:
        """Refuse to launch while this appliance id runs elsewhere (a detached appliance
        this object disconnected from, or another process attached to)."""
        try:
            record = runtime.read(runtime.record_path(self.id))
        except (OSError, RuntimeRecordError):
            return
        if runtime.vm_alive(record):
            raise StateError("launch", "not running anywhere",
                             f"running detached as pid {record.pid} "
                             f"(guestslots.attach('{self.id}'), or shut it down)")

    def relaunch(self) -> None:
        """Boot a new appliance with the layout this one had when it last ran.

        Every slot (empty ones too) with the image it held, at the same index, with
        the same label and access; the vCPUs and NICs that were plugged; the same
        appliance id, so every device id is the same.  For an appliance whose QEMU
        died or was killed (the call that found it dead raised an error and closed
        it), or one that was shut down.  That layout becomes the definition.  Each
        image is checked first: the same file, and unchanged if the guest could not
        write it; otherwise :class:`RuntimeRecordError` names the slot and nothing
        is launched.  What went to throwaway overlays is gone, as after any restart.
        """
        with self._lock:
            if self._state is ApplianceState.RUNNING:
                if self._backend is not None and self._backend.is_running():
                    raise StateError("relaunch", "shut down or dead", self._state.value)
                self._teardown()
                self._state = ApplianceState.CLOSED
            if self._record is None:
                raise StateError("relaunch", "launched before", self._state.value)
            self._adopt(self._record)
            self.launch()

    def disconnect(self) -> None:
        """Leave this detached appliance running, and let go of it.

        Only for ``Appliance(detached=True)`` (or one from :func:`attach`): the
        connections to it close, its runtime record says nobody holds it, and
        :func:`guestslots.attach` (in this process or another) takes it over, mounts
        and all.  This object is closed then.  Exiting the process does the same
        (without the record saying so: ``attach`` sees that its holder died)."""
        with self._lock:
            backend, agent = self._running("disconnect")
            if not self.detached or not isinstance(backend, Detachable):
                raise StateError("disconnect", "detached (Appliance(detached=True))",
                                 "attached to this process only")
            self._update_runtime(held=False)
            agent.close()
            backend.release()
            self._backend = self._agent = None
            self._started = 0.0
            self._state = ApplianceState.DISCONNECTED
            self._table.show_config()
            self._say(f"appliance {self.id} left running (guestslots.attach('{self.id}'))")

    def _attach(self, record: RuntimeRecord, timeout: float) -> None:
        """Become the holder of *record*'s running detached appliance (see
        :func:`attach`)."""
        with self._lock:
            self._adopt(record)
            started = time.monotonic()
            self.image = ensure_appliance(self._say)
            backend = self._new_backend(self.image, "tcg")  # adopt says which it is
            assert isinstance(backend, Detachable)
            sock, accel = backend.adopt(record, timeout)
            try:
                self.accel = AccelChoice(accel, "the running appliance's")
                agent = AgentClient(sock, backend.death_report, self.call_timeout)
                agent.call("ping", wait_for=timeout)  # the agent says hello to a new host
                names = {slot.index: agent.call("wait_disk", target=slot.index, timeout=5)
                         for slot in self._table if slot.drive is not None}
            except BaseException:
                backend.release()
                raise
            self._backend, self._agent = backend, agent
            self._state = ApplianceState.RUNNING
            for slot in list(self._table):
                if slot.drive is not None:
                    self._table.fill(slot.index, slot.drive, names[slot.index])
            self._identities = {s.index: s.identity for s in record.slots if s.path}
            self._vcpus.live = set(record.vcpus_plugged) | {0}
            self._vcpu_unplugged = record.vcpu_unplugged
            self._nics.live = dict(self._nics.config)
            self._layout_key = record.layout_key
            self._started = record.started
            self.launched_from = "attached"
            self._update_runtime()
            self._say(f"attached to appliance {self.id} (pid {record.pid}) in "
                      f"{time.monotonic() - started:.2f} s")

    def _adopt(self, record: RuntimeRecord) -> None:
        """Make *record*'s running layout this appliance's definition (images checked
        first: a refusal changes nothing)."""
        drives: list[DriveSpec | None] = []
        for slot in record.slots:
            if slot.state != SlotState.FILLED.value or slot.path is None:
                drives.append(None)
                continue
            why = runtime.image_changed(slot)
            if why:
                raise RuntimeRecordError(f"appliance {record.id}, slot {slot.index}",
                                         f"image {slot.path}: {why}; not relaunched")
            try:
                check_chain(slot.path, slot.chain)
            except DriveError as e:
                raise RuntimeRecordError(f"appliance {record.id}, slot {slot.index}",
                                         f"{e}; not relaunched") from None
            made = make_drive(slot.path, slot.format, bool(slot.readonly), slot.label,
                              bool(slot.overlay))
            drives.append(dataclasses.replace(made, chain=slot.chain))
        if len(drives) > self._table.max_slots:
            raise RuntimeRecordError(f"appliance {record.id}", f"{len(drives)} slots: more "
                                     f"than max_slots={self._table.max_slots}")
        nics = {n.slot: make_nic(n.slot, n.network, record.id, n.mac, n.tap,
                                 None if n.network == "user" else n.address,
                                 None if n.network == "user" else n.gateway)
                for n in record.nics}
        vcpus = VcpuTable(1, record.vcpus_max)
        vcpus.config = set(record.vcpus_plugged) | {0}
        table = SlotTable(self._table.max_slots)
        for drive in drives:
            table.reserve(drive)
        self.id = record.id
        self._table, self._vcpus = table, vcpus
        self._nics = NicTable(record.id)
        self._nics.config = nics
        self.memory_mb = record.memory_mb
        self._diskset = DiskSet(i for i in record.diskset
                                if i < len(drives) and drives[i] is not None)

    def _new_backend(self, image: ApplianceImage, accel: str) -> Backend:
        spec = VMSpec(image=image, accel=accel, qemu=self.qemu_binary,
                      memory_mb=self.memory_mb, tcg_cache_mib=self.tcg_cache_mib,
                      max_vcpus=self._vcpus.max_vcpus, appliance_id=self.id,
                      detached=self.detached)
        return backends.create(self.backend, self.uri, spec)

    def _start_vm(self, image: ApplianceImage, fresh: bool) -> None:
        assert self.accel is not None
        backend = self._new_backend(image, self.accel.accel)
        use_saved = self.saved_state and not fresh and backend.saves_state
        key = savedstate.state_key(backend.layout_key(), image.key)
        self._layout_key = key
        saved = savedstate.find(key) if use_saved else None
        unusable = savedstate.check(saved) if saved is not None else ""
        if saved is not None and unusable:
            message = f"the saved appliance is not usable ({unusable}): booting cold to rebuild it"
            _warn(message, stacklevel=4)
            savedstate.discard(key)
            saved = None
        if saved is not None:
            try:
                self._boot(backend, saved)
                self.launched_from = "restored"
                return
            except GuestslotsError as e:
                message = f"restoring the saved appliance failed, booting cold instead: {e}"
                _warn(message, stacklevel=4)
                savedstate.discard(key)
                backend = self._new_backend(image, self.accel.accel)
        try:
            self._boot(backend)
        except LaunchError:
            if self.accel.accel != "kvm" or self.accel.requested:
                raise
            self._say("the appliance did not boot under KVM: retrying with TCG")
            self.accel = AccelChoice("tcg", "KVM passed its probe but the boot failed")
            backend = self._new_backend(image, "tcg")
            key = self._layout_key = savedstate.state_key(backend.layout_key(), image.key)
            self._boot(backend)
        self.launched_from = "cold boot"
        if use_saved:
            try:
                self._save_state(key)
            except (GuestslotsError, OSError) as e:
                message = f"could not save the booted appliance (launches stay cold): {e}"
                _warn(message, stacklevel=4)
                if self._backend is None or not self._backend.is_running():
                    raise

    def _save_state(self, key: str) -> None:
        backend, agent = self._running("launch")
        self._say("saving the booted appliance, so that later launches restore it")
        started = time.monotonic()

        # what the guest cached while booting is of no use: drop it, then take a first
        # hotplug as a real image would, so that every restored appliance starts warm
        agent.call("prepare_save", wait_for=60)
        self._warm_up(backend, agent)
        staged = savedstate.staging(key)
        try:
            backend.save(staged, timeout=120)
            savedstate.publish(key, staged, backend.name)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self._say(f"saved in {time.monotonic() - started:.1f} s")
        if backend.save_stops:
            # the VM is gone: carry on from the state just saved (which proves it)
            saved = savedstate.find(key)
            agent.close()
            if self._finalizer is not None:
                self._finalizer.detach()
            self._backend = self._agent = None
            if saved is None:
                backend.kill()
                raise LaunchError("the state just saved is not in the cache")
            self._boot(backend, saved)

    def _warm_up(self, backend: Backend, agent: AgentClient) -> None:
        """Use the warm-up disk once in slot 0 (see :mod:`guestslots.host.warmup`): plug,
        scan, list, mount, read, unmount, unplug.  No slot is filled yet."""
        drive = make_drive(warmup.image(), "raw", True, None, False)
        backend.attach_disk(0, drive, timeout=self.call_timeout)
        found = agent.call("disk_plugged", target=0, readonly=True,
                           activate=self.auto_activate, timeout=60)
        disk = f"/dev/{found['name']}"
        try:
            agent.call("list_filesystems", disks=[disk])
            agent.call("mount", device=disk + "1", mountpoint="/", readonly=True)
            agent.download("download", io.BytesIO(), path=warmup.FILE)
        finally:
            agent.call("umount_all")
            agent.call("prepare_unplug", device=disk)
            backend.detach_disk(0, timeout=self.call_timeout)
            agent.call("wait_disk", target=0, plugged=False, timeout=60)
        agent.call("net_prepare")  # the NIC driver, loaded once here, not per appliance
        # No vCPU is plugged and unplugged here: QEMU 7.2 under TCG keeps an unplugged
        # vCPU's address space after freeing it, and the save's first memory transaction
        # then aborts QEMU (free(): invalid pointer in qemu_savevm_state_setup), about
        # one save in two (measured).  A restored appliance's first vCPU plug takes
        # 0.4 s without this warm-up.

    def _boot(self, backend: Backend, saved: savedstate.SavedState | None = None) -> None:
        """Start *backend*'s VM (restoring *saved*) and wait until its agent answers."""
        self._vcpu_unplugged = False  # a new VM
        finalizer = weakref.finalize(self, _reap, backend)
        accel = self.accel.accel if self.accel else "?"
        self._say(f"restoring the saved appliance ({accel})" if saved
                  else f"booting the appliance ({accel})")
        try:
            sock = backend.start(saved.directory if saved else None, timeout=60)
            agent = AgentClient(sock, backend.death_report, self.call_timeout)
            try:
                if saved is not None:
                    agent.call("ping", wait_for=30)
                else:
                    agent.wait_hello(self.boot_timeout)
            except (AgentError, QemuError) as e:
                what = "restored" if saved else "came up"
                raise backend.error(f"the appliance never {what}: {e}", LaunchError) from None
        except BaseException:
            finalizer()
            raise
        self._backend, self._agent = backend, agent
        if self.detached:
            finalizer.detach()  # it outlives this object and this process
        else:
            self._finalizer = finalizer
        self._state = ApplianceState.RUNNING

    def shutdown(self) -> None:
        """Unmount everything, sync, power the appliance off and clean up.

        An appliance whose every slot is read-only or ``overlay=True`` has nothing
        to write back: it is stopped at once.  Safe to call more than once.  A later
        :meth:`launch` starts the appliance again from its definition.
        """
        with self._lock:
            graceful = False
            if self._state is ApplianceState.RUNNING and self._agent is not None \
                    and not self._nothing_to_lose():
                try:
                    self._agent.call("shutdown", wait_for=min(self.call_timeout, 30))
                    graceful = True
                except GuestslotsError as e:  # stuck or gone: nothing to wait for
                    log.warning("the appliance did not power off by itself (%s): killing it",
                                str(e).splitlines()[0])
            self._teardown(graceful)
            self._state = ApplianceState.CLOSED
            self._table.show_config()

    close = shutdown

    def kill(self) -> None:
        """Kill the appliance's VM at once, from any thread, even during a call.

        For a Ctrl-C handler or a watchdog: a call in progress fails with
        :class:`ChannelClosed` and the appliance closes (what was written since the
        last sync is lost, as after a power cut).  A no-op when not running.
        """
        pid = self.pid
        if pid is not None:
            signal_process(pid, signal.SIGKILL)

    def _nothing_to_lose(self) -> bool:
        """Whether no image would keep anything of a graceful shutdown: every full
        slot's writes go to a throwaway overlay (read-only or ``overlay=True``), so
        the VM is stopped at once (no unmount, sync and power-off to wait for)."""
        return all(slot.drive is None or slot.drive.throwaway for slot in self._table
                   if slot.state is SlotState.FILLED)

    def _teardown(self, graceful: bool = False) -> None:
        """Stop the VM (waiting for the guest to power off if *graceful*) and clean up."""
        if self._backend is not None:
            if graceful:
                self._backend.shutdown(timeout=10)
            else:
                self._backend.kill()
        if self._finalizer is not None:
            self._finalizer()  # kill() again: a no-op by now
        self._backend = self._agent = None
        self._started = 0.0
        with contextlib.suppress(OSError, GuestslotsError):
            runtime.remove(self.id)

    def _update_runtime(self, held: bool = True) -> None:
        """Rewrite the runtime record (see :mod:`guestslots.model.runtime`), held by this
        process (or by none: *held* False); a record that cannot be written is a
        warning, not the change's failure."""
        backend = self._backend
        if backend is None or not self._started:  # launching: written once it is up
            return
        slots = tuple(
            SlotRecord(slot.index, slot.device, device_id("disk", self.id, slot.index),
                       slot.state.value,
                       slot.drive.path if slot.drive else None,
                       slot.drive.format if slot.drive else None,
                       slot.drive.readonly if slot.drive else None,
                       slot.drive.overlay if slot.drive else None,
                       slot.label, slot.serial,
                       self._identities.get(slot.index) if slot.drive else None,
                       slot.drive.chain if slot.drive else ())
            for slot in self._table)
        info = backend.runtime_info()
        record = RuntimeRecord(
            id=self.id, backend=self.backend, pid=backend.pid, started=self._started,
            updated=time.time(), workdir=backend.workdir or "",
            layout_key=self._layout_key, owner=_owner_record(os.getpid()) if held else {},
            slots=slots, vcpus_max=self._vcpus.max_vcpus,
            vcpus_plugged=tuple(sorted(self._vcpus.live)),
            nics=tuple(NicRecord(n.slot, n.device_id, n.network, n.mac, n.address, n.gateway,
                                 n.tap) for n in self._nics.listed(True)),
            memory_mb=self.memory_mb, diskset=tuple(self._diskset.list()),
            detached=self.detached, vcpu_unplugged=self._vcpu_unplugged,
            qmp_socket=info.get("qmp_socket", ""),
            agent_socket=info.get("agent_socket", ""), uri=info.get("uri", ""),
            domain=info.get("domain", ""))
        self._record = record
        try:
            runtime.write(record)
        except (OSError, GuestslotsError) as e:
            message = f"the runtime record of appliance {self.id} was not written: {e}"
            _warn(message, stacklevel=4)
        if isinstance(backend, KeepsDiskSetMetadata):  # libvirt: the domain's metadata
            try:
                backend.note_disk_set(record.diskset, self.call_timeout)
            except GuestslotsError as e:
                _warn(f"the disk set of appliance {self.id} was not written into its "
                      f"domain's metadata: {e}", stacklevel=4)

    @property
    def pid(self) -> int | None:
        """The VM process's id (QEMU's) while running."""
        return self._backend.pid if self._backend else None

    # ------------------------------------------------------------ slots

    def max_slots(self) -> int:
        """The most slots this appliance can reserve (255: 256 SCSI targets, less one)."""
        return self._table.max_slots

    @serialised
    def slots(self) -> list[Slot]:
        """Every reserved slot: index, device, state, path, format, readonly, label, serial."""
        return list(self._table)

    @serialised
    def list_devices(self) -> list[str]:
        """The device of every reserved slot, empty ones included, in slot order."""
        return [slot.device for slot in self._table]

    @serialised
    def list_disk_labels(self) -> dict[str, str]:
        """Label -> device, for every full slot that has a label."""
        return {label: self._table[i].device for label, i in self._table.labels().items()}

    def hotplug(
        self,
        index: int,
        path: str | os.PathLike[str],
        format: str | None = None,
        readonly: bool = True,
        label: str | None = None,
        overlay: bool = False,
        flags: int = CURRENT,
    ) -> int:
        """Fill reserved empty slot *index* (``-1``: the first empty one) with an image.

        Returns the slot index.  With ``LIVE`` it returns once the disk is usable in
        the appliance.  *flags*, as libvirt's: ``LIVE`` plugs it into the running
        appliance, ``CONFIG`` makes it part of the definition the next launch starts
        from, both do both, ``CURRENT`` (the default) is ``LIVE`` when running and
        ``CONFIG`` before launch; ``LIVE`` on an appliance that does not run is an
        error.  The same checks as :meth:`add_drive` apply; on any error the slot
        stays as it was and nothing else changes.
        """
        with self._lock:
            affect = self._affect("hotplug", flags)
            if os.fspath(path) == NULL_DRIVE:
                raise DriveError(NULL_DRIVE, "cannot be hotplugged: a slot is emptied by unplug")
            drive = make_drive(path, format, readonly, label, overlay)
            running = self._state is ApplianceState.RUNNING
            if affect & LIVE:
                index = self._table.plug_index(index, drive)
                if affect & CONFIG:
                    self._table.config_plug_index(index, drive)
                    self._check_shared_image(index, drive, config=True)
                self._plug(index, drive)
            else:
                index = self._table.config_plug_index(index, drive)
                self._check_shared_image(index, drive, config=True)
            if affect & CONFIG:
                self._table.set_config(index, drive, running)
            return index

    def _affect(self, call: str, flags: int) -> Affect:
        """What *flags* mean for *call* now (see :mod:`guestslots.model.flags`)."""
        try:
            return resolve_flags(flags, self._state is ApplianceState.RUNNING)
        except NotRunning as e:
            raise StateError(call, f"running for LIVE ({e})", self._state.value) from None
        except ValueError as e:
            raise SlotError(-1, f"{call}: {e}") from None

    def _check_shared_image(self, index: int | None, drive: DriveSpec,
                            config: bool = False) -> None:
        """Refuse an image that another slot holds (live, or with *config* in the
        definition) when either may write to it: QEMU would refuse it with a bare lock
        message, at a hotplug or in the middle of a launch."""
        for slot in self._table:
            other = slot.config if config else slot.drive
            if other is None or slot.index == index:
                continue
            with contextlib.suppress(OSError):
                if not os.path.samefile(other.path, drive.path):
                    continue
                if not (other.readonly or other.overlay) or not (
                        drive.readonly or drive.overlay):
                    held = "read-only" if other.readonly or other.overlay else "writable"
                    where = " in the definition" if config else ""
                    raise DriveError(
                        drive.path,
                        f"slot {slot.index} ({slot.device}) holds this image {held}{where}; "
                        "an image may be in several slots only if none of them writes to it",
                    )

    def _plug(self, index: int, drive: DriveSpec) -> None:
        backend, agent = self._running("hotplug")
        self._check_shared_image(index, drive)
        # which file this is, taken before QEMU opens it and kept: a record rewritten at a
        # later change must not take in a read-only image that changed meanwhile
        identity = _identity(drive.path)
        with self._watch():
            if backend.clean_slot(index, self.call_timeout):
                # an abandoned hotplug may have run after all: the guest must have seen
                # that disk go before the new one comes, or the new slot would be
                # matched with the old disk's device
                agent.call("wait_disk", target=index, plugged=False, timeout=60)
            backend.attach_disk(index, drive, timeout=self.call_timeout)
            try:
                found = agent.call("disk_plugged", target=index, readonly=drive.readonly,
                                   activate=self.auto_activate, timeout=60)
            except BaseException:
                with contextlib.suppress(GuestslotsError):
                    backend.detach_disk(index, timeout=self.call_timeout)
                raise
        self._table.fill(index, drive, found["name"])
        self._identities[index] = identity
        self._forget_inspection()
        self._update_runtime()
        self._report_volumes(index, found)

    def _report_volumes(self, index: int, found: dict[str, Any]) -> None:
        """Say which md arrays and volume groups the new disk completed (the agent
        assembles and activates them before it answers); its failures are warnings."""
        for array in found.get("arrays", []):
            self._say(f"slot {index}: md array {array} assembled")
        for vg in found.get("activated", []):
            self._say(f"slot {index}: volume group {vg} activated")
        for vg in found.get("incomplete", []):
            self._say(f"slot {index}: volume group {vg} waits for more PVs: not activated yet")
        for warning in found.get("warnings", []):
            message = f"slot {index}: {self._out(warning)}"
            _warn(message, stacklevel=5)

    # ------------------------------------------------------------ vCPUs

    def max_vcpus(self) -> int:
        """The number of vCPU ids (``Appliance(max_vcpus=N)``: ids 0 to N-1)."""
        return self._vcpus.max_vcpus

    @serialised
    def vcpus(self) -> list[Vcpu]:
        """Every vCPU id with its state: absent, present (plugged, offline in the guest)
        or online; not running, what the next launch plugs."""
        running = self._state is ApplianceState.RUNNING
        online = set(self._call("vcpus_online")) if running else None
        return self._vcpus.list(running, online)

    def add_vcpu(self, id: int = -1, flags: int = CURRENT) -> int:
        """Plug the vCPU with id *id* (``-1``: the first free id); return the id.

        Ids are 0 to ``max_vcpus - 1`` (``Appliance(max_vcpus=N)``).  ``LIVE``
        plugs it into the running appliance and returns once the guest has it
        online; ``CONFIG`` adds it to what the next launch plugs; ``CURRENT`` is
        ``LIVE`` when running and ``CONFIG`` otherwise.  An id out of range or
        already plugged: :class:`VcpuError`, and nothing changes.
        """
        with self._lock:
            affect = self._affect("add_vcpu", flags)
            vcpu = self._vcpus.add_id(id, bool(affect & LIVE), bool(affect & CONFIG))
            if affect & LIVE:
                self._plug_vcpu(vcpu)
            if affect & CONFIG:
                self._vcpus.config.add(vcpu)
            return vcpu

    def remove_vcpu(self, id: int = -1, flags: int = CURRENT) -> int:
        """Unplug the vCPU with id *id* (``-1``: the highest plugged); return the id.

        The guest offlines it first (its work moves to the other vCPUs), then it
        is unplugged and its removal confirmed by QEMU.  vCPU 0, the boot CPU,
        cannot be removed.  *flags* as for :meth:`add_vcpu`.

        Under TCG, QEMU 7.2 limits this (measured): the plugged ids must stay 0 to
        k-1 (add the lowest free id, remove the highest), and after a ``LIVE``
        removal no vCPU can be plugged until the next launch; anything else is
        refused with :class:`VcpuError`, nothing changed.
        """
        with self._lock:
            affect = self._affect("remove_vcpu", flags)
            vcpu = self._vcpus.remove_id(id, bool(affect & LIVE), bool(affect & CONFIG))
            if affect & LIVE:
                backend, agent = self._running("remove_vcpu")
                self._tcg_vcpu_limits(vcpu, adding=False)
                with self._watch():
                    agent.call("vcpu_unplugging", vcpu=vcpu)
                    self._vcpu_unplugged = True
                    backend.detach_vcpu(vcpu, timeout=self.call_timeout)
                self._vcpus.live.discard(vcpu)
                self._update_runtime()
            if affect & CONFIG:
                self._vcpus.config.discard(vcpu)
            return vcpu

    def _tcg_vcpu_limits(self, vcpu: int, adding: bool) -> None:
        """Refuse what QEMU 7.2 under TCG cannot do with vCPUs (measured here): a plug
        after an unplug crashes QEMU (SIGSEGV), and a guest whose plugged ids leave a
        gap locks up in its next CPU change (stop_machine never completes).  So under
        TCG the plugged ids stay 0..k-1: add the lowest free id, remove the highest."""
        if self.accel is None or self.accel.accel != "tcg":
            return
        live = self._vcpus.live
        if adding and self._vcpu_unplugged:
            raise VcpuError(vcpu, f"vCPU {vcpu} cannot be plugged: a vCPU was unplugged since "
                            "this appliance started, and QEMU 7.2 under TCG crashes on a vCPU "
                            "plug after that; shut down and launch again to plug vCPUs (the "
                            "definition, CONFIG, is unaffected)")
        lowest_free = min(set(range(self._vcpus.max_vcpus)) - live, default=None)
        if adding and vcpu != lowest_free:
            raise VcpuError(vcpu, f"vCPU {vcpu} cannot be plugged before vCPU {lowest_free}: "
                            "under TCG the plugged ids must stay 0 to k-1 (with a gap, "
                            "QEMU 7.2's guest locks up at its next CPU change)")
        if not adding and vcpu != max(live):
            raise VcpuError(vcpu, f"vCPU {vcpu} cannot be removed before vCPU {max(live)}: "
                            "under TCG the plugged ids must stay 0 to k-1 (with a gap, "
                            "QEMU 7.2's guest locks up at its next CPU change)")

    def _plug_vcpu(self, vcpu: int) -> None:
        backend, agent = self._running("add_vcpu")
        self._tcg_vcpu_limits(vcpu, adding=True)
        with self._watch():
            backend.attach_vcpu(vcpu, timeout=self.call_timeout)
            agent.call("vcpu_plugged", vcpu=vcpu, timeout=60, wait_for=70)
        self._vcpus.live.add(vcpu)
        self._update_runtime()

    # ------------------------------------------------------------ the disk set

    def _filled(self) -> list[int]:
        return [slot.index for slot in self._table if slot.drive is not None]

    def _left_diskset(self, index: int) -> None:
        if self._diskset.unplugged(index):
            _warn(f"appliance {self.id}: slot {index} was unplugged and left the disk set "
                  f"(now {self._diskset.list()})", stacklevel=4)

    @serialised
    def diskset_add(self, slot: int) -> int:
        """Add full slot *slot* to this appliance's disk set (the slots that
        snapshots, export and migration act on): 0, or 1 if it was in it already.
        An empty slot or an index that is no slot is an error.  The set is kept in
        the runtime record, and a slot that is unplugged leaves it (with a warning)."""
        before = self._diskset.list()
        done = self._diskset.add(slot, self._filled(), len(self._table))
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_remove(self, slot: int) -> int:
        """Take slot *slot* out of the disk set: 0, or 1 if it was not in it."""
        before = self._diskset.list()
        done = self._diskset.remove(slot, self._filled(), len(self._table))
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_add_all(self) -> int:
        """Put every full slot in the disk set: 0."""
        before = self._diskset.list()
        done = self._diskset.add_all(self._filled())
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_remove_all(self) -> int:
        """Empty the disk set: 0."""
        before = self._diskset.list()
        done = self._diskset.remove_all()
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_size(self) -> int:
        """How many slots the disk set holds."""
        return self._diskset.size()

    @serialised
    def diskset_list(self) -> list[int]:
        """The slots in the disk set, in index order."""
        return self._diskset.list()

    def export(self, dest_dir: str | os.PathLike[str], diskset: bool = True, *,
               progress: Callable[[int, int], None] | None = None,
               timeout: float = 3600.0) -> list[str]:
        """Copy the disks of the disk set (every full slot with ``diskset=False``) into
        host directory *dest_dir*, consistent and all of one instant, while the
        appliance runs; return the copies' paths.

        Each copy is what the guest sees on that slot, in the image's format, named
        as the image is (never replacing a file: an existing one is an error and
        nothing is copied).  The guest filesystems on those disks are frozen (written
        out and held) only while the copies start; QEMU's block jobs then copy the
        data as it was at that instant (copy-before-write) while the guest goes on.
        *progress* is called with (bytes copied, bytes in all).  On libvirt, one
        push-mode backupBegin does the same.
        """
        with self._lock:
            backend, _ = self._running("export")
            indices = self._diskset.list() if diskset else self._filled()
            if not indices:
                raise DiskSetError("export: the disk set is empty (diskset_add first)"
                                   if diskset else "export: no slot holds a disk")
            dest = Path(dest_dir)
            if not dest.is_dir():
                raise HostFileError(str(dest), "not a directory")
            exports: list[tuple[int, str, str]] = []
            for index in indices:
                drive = self._table[index].drive
                assert drive is not None
                target = dest / Path(drive.path).name
                if target.exists() or any(e[1] == str(target) for e in exports):
                    raise HostFileError(str(target), "exists (or two slots' images share "
                                        "its name): export never replaces a file")
                exports.append((index, str(target), drive.format))
            check_room(str(dest), [(i, self._drive(i)) for i in indices],
                       zeroes_allocated=True)
            with _removed_on_failure() as made, self._watch():
                for index, path, fmt in exports:
                    _make_target(path, fmt, backend.disk_size(index, self.call_timeout))
                    made.append(path)
                disks = [f"/dev/{self._table[i].kernel_name}" for i in indices]
                frozen = self._call("freeze", disks=disks)
                thawed: list[bool] = []

                def thaw() -> None:  # in QEMU's event thread, as soon as the jobs run
                    with contextlib.suppress(GuestslotsError):
                        assert self._agent is not None
                        self._agent.call("thaw", mountpoints=frozen)
                        thawed.append(True)

                try:
                    backend.export_disks(exports, thaw, progress, timeout)
                finally:
                    if not thawed:  # again, here, with the usual error handling
                        self._call("thaw", mountpoints=frozen)
                _sparse_again(exports)
            return made

    # ------------------------------------------------------------ migration

    def migrate(self, params: MigrationParams | None = None, *,
                progress: Callable[[MigrationProgress], None] | None = None,
                timeout: float = 600.0) -> MigrationProgress:
        """Move the running appliance, live, into a new QEMU process on this host.

        The new process gets the identical layout (every plugged slot, vCPU and NIC,
        with the same device ids) and the guest carries on there, its mounts, the
        agent channel and this object with it; the runtime record names the new
        process.  What was reported at the end is returned: total time, downtime,
        bytes sent.

        QEMU backend: the new process is this backend's own.  libvirt backend: the
        domain moves to the libvirt at ``destination_uri`` (libvirt's ``migrate3``
        with the typed parameters: ``uri`` as ``migrate_uri``, ``destination_name``,
        ``destination_config`` as the destination's domain XML, ``bandwidth``,
        ``parallel_connections``), which must run its QEMU on this host (the agent
        channel is a Unix socket here), and stays there: later calls go to that
        libvirt.  Copied slots (below) go by libvirt's storage migration
        (``migrate_disks``), into the copies the destination's XML names.

        *params* (:class:`~guestslots.model.migration.MigrationParams`):
        ``bandwidth`` (MiB/s) limits the stream, ``downtime_limit`` (ms),
        ``parallel_connections``, ``uri`` (default: a Unix socket in the work
        directory), ``destination_config`` (a runtime record; one that would change
        what the guest sees is refused before anything moves).  Both processes share
        the image files, except the slots that ``disks`` names (or the disk set's,
        with ``with_disk_set``): each of those is copied, live, into a new file
        ``slotN.img`` (raw) or ``slotN.qcow2`` in ``disk_directory`` (an existing
        directory; an existing file there is an error) and the new process uses
        the copy: the guest's writes go on reaching both until the switch, which
        happens when the copy is in step, so it is the disk as of the switch (a
        snapshot chain collapses into it).  The slot then names the copy (its
        ``slots()`` path, the runtime record); the old image keeps what the guest
        wrote up to then.  Only writable slots are copied (a read-only or
        ``overlay=True`` slot's image does not change).  Tap NICs are refused
        (their device is held by the running QEMU).
        *progress* gets a :class:`MigrationProgress` about four times a second
        (status ``copying-disks`` while the copies catch up, with their bytes).
        On failure the appliance runs on where it was, on its own images, and the
        copies made are removed."""
        with self._lock:
            backend, agent = self._running("migrate")
            params = params if params is not None else MigrationParams()
            if self._record is not None:
                check_destination(params, self._record, self.backend)
            indices = params.disk_slots(self._diskset.list(), self._filled())
            which = "with_disk_set" if params.with_disk_set else "disks"
            if params.with_disk_set and not indices:
                raise DiskSetError("migrate: with_disk_set, but the disk set is empty "
                                   "(diskset_add first)")
            self._writable_drives("migrate", indices, partial(MigrationParamError, which),
                                  "its image does not change, the new process shares it")
            directory = params.disk_directory
            if indices and not directory:
                raise MigrationParamError("disk_directory", "copying slots' images needs "
                                          "a directory for the copies")
            if directory and not indices:
                raise MigrationParamError("disk_directory", "no slot is copied (disks or "
                                          "with_disk_set): nothing would go there")
            if directory and not os.path.isdir(directory):
                raise MigrationParamError("disk_directory", f"{directory} is not a "
                                          "directory")
            if not isinstance(backend, Migrates):
                raise GuestslotsError(f"migrate: the {self.backend} backend cannot move "
                                      "an appliance to another process yet")
            taps = [slot for slot, nic in self._nics.live.items() if nic.network == "tap"]
            if taps:
                raise NicError(taps[0], "a tap NIC's device is held by the running QEMU: "
                               "remove it before migrating")
            if self._vcpu_unplugged and self.accel is not None and self.accel.accel == "tcg":
                raise VcpuError(None, "migrate: a vCPU was unplugged since this appliance "
                                "started, and QEMU 7.2 under TCG then crashes saving its "
                                "state; shut down and launch again")
            backend.check_migration(params)  # before copies are made for nothing
            copies = self._make_copies(backend, indices, os.path.abspath(directory or "."))
            info: MigrationProgress
            try:
                with self._watch():
                    if copies:
                        sock, info = backend.migrate(self._layout(), params, progress,
                                                     timeout, copies)
                    else:
                        sock, info = backend.migrate(self._layout(), params, progress,
                                                     timeout)
            except BaseException:
                for copy in copies.values():
                    with contextlib.suppress(OSError):
                        os.unlink(copy.path)
                raise
            for index, copy in copies.items():  # the new process has them, not the images
                slot = self._table[index]
                if slot.config == slot.drive:  # the definition follows, as libvirt's does
                    self._table.set_config(index, copy, running=True)
                self._table.fill(index, copy, slot.kernel_name)
                self._identities[index] = _identity(copy.path)
            with self._watch():
                agent.switch(sock)
                agent.call("ping", wait_for=30)  # the channel is in step over there
            self._update_runtime()
            if copies:
                self._say(f"appliance {self.id} migrated with copies of slots "
                          + ", ".join(f"{i} ({c.path})" for i, c in copies.items()))
            return info

    def _drive(self, index: int) -> DriveSpec:
        drive = self._table[index].drive
        assert drive is not None, f"slot {index} is empty"
        return drive

    def _make_copies(self, backend: Any, indices: Sequence[int], directory: str,
                     zeroes_allocated: bool = False) -> dict[int, DriveSpec]:
        """New, empty image files in *directory* for the slots *indices* to be copied
        into (the disks' sizes and formats), by slot; on failure none is left.  Copies
        that would not fit in *directory* are refused first (see
        :mod:`guestslots.host.room`; *zeroes_allocated* for a backup job's copies)."""
        check_room(directory, [(i, self._drive(i)) for i in indices], zeroes_allocated)
        copies: dict[int, DriveSpec] = {}
        try:
            for index in indices:
                drive = self._drive(index)
                ext = "qcow2" if drive.format == "qcow2" else "img"
                target = os.path.join(directory, f"slot{index}.{ext}")
                _make_target(target, drive.format,
                             backend.disk_size(index, self.call_timeout))
                copies[index] = dataclasses.replace(drive, path=target, chain=())
        except BaseException:
            for copy in copies.values():
                with contextlib.suppress(OSError):
                    os.unlink(copy.path)
            raise
        return copies

    def save(self, path: str | os.PathLike[str], with_disk_set: bool = False, *,
             timeout: float = 120.0) -> str:
        """Save the running appliance into new directory *path*, and stop it.

        As ``virsh save`` does: its memory, devices' state and every plugged slot,
        vCPU and NIC, with a description that :func:`guestslots.restore` checks; an
        existing *path* is an error.  What the guest had in its page cache, its
        mounts, the disk set: all come back with the restore.  The images stay where
        they are; a restore refuses any that changed since.

        With *with_disk_set*, the disk set's disks are saved too (seed 004's
        save with the disk set): the VM is paused, each of those slots' disks, as the
        guest sees it, is copied into ``PATH/disks/`` (same format), then the memory
        is saved, so the copies and the memory are of one instant.  The restore
        plugs the copies in those slots, in place (it writes to them: copy the
        directory first to restore it more than once); the original images are
        free to change.  Only writable slots (a read-only slot's image does not
        change).  Returns the directory.  On failure the appliance runs on."""
        with self._lock:
            backend, _ = self._running("save")
            if not isinstance(backend, Saves):
                raise GuestslotsError(f"save: the {self.backend} backend cannot save an "
                                      "appliance with its slots yet")
            if self._vcpu_unplugged and self.accel is not None and self.accel.accel == "tcg":
                raise VcpuError(None, "save: a vCPU was unplugged since this appliance "
                                "started, and QEMU 7.2 under TCG then crashes saving its "
                                "state; shut down and launch again")
            indices = self._diskset.list() if with_disk_set else []
            if with_disk_set and not indices:
                raise DiskSetError("save: with_disk_set, but the disk set is empty "
                                   "(diskset_add first)")
            self._writable_drives("save", indices, DiskSetError,
                                  "its image does not change; take it out of the disk set")
            directory = Path(os.path.abspath(path))
            try:
                directory.mkdir()
            except OSError as e:
                raise HostFileError(str(directory), f"cannot make the save directory: "
                                    f"{e.strerror}") from None
            self._update_runtime()
            record, layout = self._record, self._layout()
            assert record is not None
            copies: dict[int, DriveSpec] = {}
            try:
                if indices:
                    (directory / DISKS).mkdir()
                copies = self._make_copies(backend, indices, str(directory / DISKS),
                                           zeroes_allocated=True)
                exports = [(i, copy.path, copy.format) for i, copy in copies.items()]
                with self._watch():
                    if exports:
                        backend.save_appliance(directory, layout, timeout, exports)
                    else:
                        backend.save_appliance(directory, layout, timeout)
                _sparse_again(exports)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            # QEMU is gone: the images are as the state expects them from here on
            drives = {i: copies.get(i, d) for i, d in layout.disks}
            if copies:
                record = dataclasses.replace(record, slots=tuple(
                    dataclasses.replace(slot, path=copies[slot.index].path, chain=(),
                                        identity=_identity(copies[slot.index].path))
                    if slot.index in copies else slot for slot in record.slots))
            described = SavedAppliance(
                state_key=self._layout_key, record=record,
                kernel_names={s.index: s.kernel_name for s in self._table
                              if s.state is SlotState.FILLED and s.kernel_name},
                identities={i: _identity(d.path, d.chain) for i, d in drives.items()})
            (directory / DESCRIPTION).write_text(described.to_json())
            self._teardown()
            self._state = ApplianceState.CLOSED
            self._table.show_config()
            self._say(f"appliance {self.id} saved in {directory}"
                      + (f" with slots {', '.join(map(str, indices))}" if indices else ""))
            return str(directory)

    def _restore(self, directory: Path, saved: SavedAppliance) -> None:
        """Boot *saved* (from *directory*) with its layout: see :func:`restore`."""
        with self._lock:
            self._adopt(saved.record)
            self.image = ensure_appliance(self._say)
            self.accel = choose_accel(self.qemu_binary, str(self.image.kernel),
                                      self._accel_request)
            backend = self._new_backend(self.image, self.accel.accel)
            try:
                if isinstance(backend, RestoresUnderItsName) and saved.record.domain:
                    backend.claim_domain_name(saved.record.domain)
                key = savedstate.state_key(backend.layout_key(), self.image.key)
                if key != saved.state_key:
                    raise RuntimeRecordError(str(directory), "saved with another QEMU, "
                                             "appliance image or accelerator: not "
                                             "restorable here")
                if not isinstance(backend, Saves):
                    raise GuestslotsError(f"restore: the {self.backend} backend cannot "
                                          "restore a saved appliance yet")
                drives = {s.index: s.drive for s in self._table if s.drive is not None}
                layout = Layout(disks=tuple(sorted(drives.items())),
                                vcpus=tuple(sorted(self._vcpus.config - {0})),
                                nics=tuple(sorted(self._nics.config.items())))
                backend.restore_layout(layout, directory)
                self._layout_key = key
                started = time.monotonic()
                self._boot(backend, savedstate.SavedState(key, directory))
            except BaseException:
                backend.kill()  # nothing left running, no name held
                raise
            for index, drive in layout.disks:
                self._table.fill(index, drive, saved.kernel_names[index])
                identity = saved.identities[index]  # the image's, then its overlays'
                self._identities[index] = identity.split(";")[0] if identity else None
            self._vcpus.live = {0, *layout.vcpus}
            self._nics.live = dict(layout.nics)
            self._started = time.time()
            self.launched_from = "restored from a save"
            self._update_runtime()
            self._say(f"appliance {self.id} restored in {time.monotonic() - started:.2f} s")

    def snapshot(self, name: str, diskset: bool = True, *, timeout: float = 60.0
                 ) -> list[str]:
        """Take external snapshot *name* of the disk set's slots, all at one instant.

        Every full slot with ``diskset=False``; while the appliance runs; the overlay
        files are returned.  Each slot's disk goes on a new qcow2 overlay,
        ``STEM.NAME.qcow2`` beside its image (never replacing a file), which takes
        the guest's writes from then on;
        the image stays exactly as it was at the snapshot.  That works for raw images
        too.  The guest filesystems on those disks are frozen (written out and held)
        only while one QMP ``transaction`` of ``blockdev-snapshot`` switches every
        disk at once, so each image is consistent; other slots are untouched.  Each
        overlay's header names its backing file (for ``qemu-img commit`` and other
        tools), but QEMU is told its backing node and never opens a file a header
        names.  Only writable slots (a read-only or ``overlay=True`` slot's writes
        are thrown away already).  The runtime record lists each slot's overlays;
        relaunch, migrate, save and restore carry them.  On libvirt, one disk-only
        external ``snapshotCreateXML`` of exactly those disks."""
        with self._lock:
            backend, _ = self._running("snapshot")
            check_name(name)
            if not isinstance(backend, Snapshots):
                raise SnapshotError(f"snapshot: the {self.backend} backend cannot take "
                                    "snapshots yet")
            indices = self._diskset.list() if diskset else self._filled()
            if not indices:
                raise DiskSetError("snapshot: the disk set is empty (diskset_add first)"
                                   if diskset else "snapshot: no slot holds a disk")
            plans: list[tuple[int, str, str, str]] = []  # index, overlay, backing, format
            for index, drive in self._writable_drives(
                    "snapshot", indices, SnapshotError,
                    "its writes are thrown away already; nothing to keep").items():
                chain = drive.chain
                if len(chain) >= MAX_CHAIN:
                    raise SnapshotError(f"snapshot: slot {index} has {MAX_CHAIN} "
                                        "snapshots already")
                top = chain[-1] if chain else drive.path
                path = overlay_path(drive.path, name)
                if os.path.lexists(path) or path in (p for _, p, _, _ in plans):
                    raise HostFileError(path, "exists: a snapshot's overlay never replaces "
                                        "a file")
                plans.append((index, path, top, "qcow2" if chain else drive.format))
            with _removed_on_failure() as made:
                for index, path, top, fmt in plans:
                    size = backend.disk_size(index, self.call_timeout)
                    try:
                        run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", fmt,
                             "-b", os.path.abspath(top), path, str(size)])
                    except CommandError as e:
                        raise HostFileError(path, f"qemu-img create: {e.reason}: "
                                            f"{e.output.strip()}") from None
                    made.append(path)
                disks = [f"/dev/{self._table[i].kernel_name}" for i in indices]
                with self._watch():
                    frozen = self._call("freeze", disks=disks)
                    try:
                        backend.snapshot_disks([(i, p) for i, p, _, _ in plans], timeout)
                    finally:
                        self._call("thaw", mountpoints=frozen)
            for index, path, _, _ in plans:
                slot = self._table[index]
                assert slot.drive is not None
                grown = dataclasses.replace(slot.drive, chain=(*slot.drive.chain, path))
                if slot.config == slot.drive:  # the definition follows, as libvirt's does
                    self._table.set_config(index, grown, running=True)
                self._table.fill(index, grown, slot.kernel_name)
            self._update_runtime()
            return [path for _, path, _, _ in plans]

    def _writable_drives(self, call: str, indices: Sequence[int],
                         error: Callable[[str], GuestslotsError], why: str,
                         ) -> dict[int, DriveSpec]:
        """The drives of full slots *indices*; a read-only or ``overlay=True`` one is
        refused with *error* saying *why*."""
        drives = {}
        for index in indices:
            drive = self._table[index].drive
            assert drive is not None
            if drive.throwaway:
                raise error(f"{call}: slot {index} ({drive.path}) is read-only or "
                            f"overlay=True: {why}")
            drives[index] = drive
        return drives

    def _layout(self) -> Layout:
        """What is plugged now, for another process to plug the same."""
        return Layout(
            disks=tuple((slot.index, slot.drive) for slot in self._table
                        if slot.state is SlotState.FILLED and slot.drive is not None),
            vcpus=tuple(sorted(self._vcpus.live - {0})),
            nics=tuple(sorted(self._nics.live.items())))

    # ------------------------------------------------------------ NICs

    @serialised
    def nics(self) -> list[Nic]:
        """Every plugged NIC: slot, device id, network, MAC, address, gateway (for
        ``user``, where the host's 127.0.0.1 is reached), and the guest's interface,
        link state and whether its default route goes through it (it moves to another
        NIC with a gateway when its NIC is removed); not running, the NICs the next
        launch plugs."""
        running = self._state is ApplianceState.RUNNING
        listed = self._nics.listed(running)
        if not running:
            return listed
        state = self._call("nics_state")
        return [with_guest_view(n, *(state.get(n.mac) or (None, False, False)))
                for n in listed]

    def add_nic(self, slot: int = -1, network: str = "user", mac: str | None = None,
                tap: str | None = None, address: str | None = None,
                gateway: str | None = None, flags: int = CURRENT) -> int:
        """Plug a NIC into NIC slot *slot* (``-1``: the first free one); return the slot.

        *network* ``user`` is QEMU's user-mode network, one per NIC: NIC slot *k* is on
        ``10.0.(2+k).0/24``, the guest is ``.15`` and reaches the host's 127.0.0.1 at the
        gateway ``.2`` (see :meth:`nics`); nothing outside reaches the guest.  *network*
        ``tap`` is the host's tap device *tap* (guestslots opens it and hands QEMU the
        descriptor; it is made if missing, which needs CAP_NET_ADMIN), with the guest's
        *address* (``192.168.100.2/24``) and an optional *gateway*.  *mac* defaults to
        ``52:54:00:`` + the appliance id + the slot.  The guest's interface is up with
        its address when this returns; the first NIC with a gateway carries the
        default route.  *flags* as for :meth:`hotplug`.  A bad slot, network or
        address: :class:`NicError`, nothing changed.
        """
        with self._lock:
            affect = self._affect("add_nic", flags)
            live, config = bool(affect & LIVE), bool(affect & CONFIG)
            in_use = self._backend.nic_slots_in_use(self.call_timeout) \
                if live and self._backend is not None else frozenset()
            slot = self._nics.add_slot(slot, live, config, in_use)
            nic = make_nic(slot, network, self.id, mac, tap, address, gateway)
            if live:
                self._plug_nic(slot, nic)
            if config:
                self._nics.config[slot] = nic
            return slot

    def _plug_nic(self, slot: int, nic: NicSpec) -> None:
        backend, agent = self._running("add_nic")
        if self._vcpu_unplugged and self.accel is not None and self.accel.accel == "tcg":
            raise NicError(slot, "cannot be plugged: a vCPU was unplugged since this appliance "
                           "started, and QEMU 7.2 under TCG then crashes on the PCI hotplug "
                           "(the unplugged vCPU's freed address space); shut down and launch "
                           "again (the definition, CONFIG, is unaffected)")
        with self._watch():
            backend.attach_nic(slot, nic, timeout=self.call_timeout)
            try:
                agent.call("nic_plugged", mac=nic.mac, address=nic.address,
                           gateway=nic.gateway, dns=nic.dns, timeout=60, wait_for=70)
            except BaseException:
                with contextlib.suppress(GuestslotsError):
                    backend.detach_nic(slot, timeout=self.call_timeout)
                raise
        self._nics.live[slot] = nic
        self._update_runtime()

    def remove_nic(self, slot: int = -1, flags: int = CURRENT) -> int:
        """Unplug the NIC of NIC slot *slot* (``-1``: the highest full one); return the
        slot.  The guest takes it down first, and its removal is confirmed by the
        hypervisor.  *flags* as for :meth:`unplug`."""
        with self._lock:
            affect = self._affect("remove_nic", flags)
            live, config = bool(affect & LIVE), bool(affect & CONFIG)
            slot = self._nics.remove_slot(slot, live, config)
            if live:
                backend, agent = self._running("remove_nic")
                with self._watch():
                    agent.call("nic_unplugging", mac=self._nics.live[slot].mac)
                    backend.detach_nic(slot, timeout=self.call_timeout)
                del self._nics.live[slot]
                self._update_runtime()
            if config:
                del self._nics.config[slot]
            return slot

    def unplug(self, index: int, force: bool = False, flags: int = CURRENT) -> int:
        """Empty full slot *index* (``-1``: the highest full one); return the index.

        *flags* as for :meth:`hotplug`: ``LIVE`` unplugs from the running appliance,
        ``CONFIG`` removes the drive from the definition the next launch starts
        from, ``CURRENT`` is ``LIVE`` when running and ``CONFIG`` otherwise.

        A slot whose device is in use is refused with :class:`DeviceBusyError`
        (naming what uses it) unless ``force=True``: in use means mounted, a
        member of a running md array, or a PV of an active volume group.
        ``force=True`` unmounts what is on it (and on the LVs of its volume
        groups, wherever they are), deactivates those volume groups and stops
        those arrays first.  Either way everything written is synced before the
        disk leaves, so no data is lost, and no device-mapper or md device is
        left behind.  A slot in the disk set leaves it (a ``RuntimeWarning`` says
        so).
        """
        with self._lock:
            affect = self._affect("unplug", flags)
            running = self._state is ApplianceState.RUNNING
            if not affect & LIVE:
                index = self._table.config_unplug_index(index)
                self._table.set_config(index, None, running)
                self._left_diskset(index)
                return index
            index = self._table.unplug_index(index)
            if affect & CONFIG:
                self._table.config_unplug_index(index)
            slot = self._table[index]
            backend, agent = self._running("unplug")
            users = self._call("prepare_unplug", device=f"/dev/{slot.kernel_name}", force=force)
            if users:
                raise DeviceBusyError(index, slot.device, [self._out(u) for u in users])
            with self._watch():
                backend.detach_disk(index, timeout=self.call_timeout)
                agent.call("wait_disk", target=index, plugged=False, timeout=60)
            self._table.empty(index)
            self._identities.pop(index, None)
            self._forget_inspection()
            self._left_diskset(index)
            self._update_runtime()
            if affect & CONFIG:
                self._table.set_config(index, None, running)
            return index

    def _running(self, call: str) -> tuple[Backend, AgentClient]:
        self._require(call, ApplianceState.RUNNING)
        assert self._backend is not None and self._agent is not None
        return self._backend, self._agent

    @contextlib.contextmanager
    def _watch(self) -> Iterator[None]:
        """If QEMU died under a call, or the channel to the agent closed or fell out of
        step, close the Appliance (no QEMU is left behind; the call's error says why)."""
        try:
            yield
        except GuestslotsError as e:
            dead = self._backend is not None and not self._backend.is_running()
            if dead or isinstance(e, (ChannelClosed, ChannelBroken)):
                self._teardown()
                self._state = ApplianceState.CLOSED
                self._table.show_config()
            raise

    # ------------------------------------------------------------ translation

    def _out(self, text: str) -> str:
        return translate_out_text(text, self._table.kernel_to_api())

    def _dev(self, name: str) -> str:
        btrfsvol = split_btrfsvol(name)
        if btrfsvol is not None:
            return f"{BTRFSVOL}{self._dev(btrfsvol[0])}/{btrfsvol[1]}"
        return name if is_volume(name) else self._table.to_kernel(name)

    @contextlib.contextmanager
    def _agent_for(self, call: str) -> Iterator[AgentClient]:
        _, agent = self._running(call)
        with self._watch():
            try:
                yield agent
            except AgentError as e:
                raise self._translated(e) from None

    def _translated(self, e: AgentError) -> AgentError:
        message = self._out(str(e).removeprefix(f"{e.call}: "))
        if isinstance(e, GuestOSError):
            return GuestOSError(e.call, message, e.errno)
        return type(e)(e.call, message)

    def _filled_kernel_disks(self) -> list[str]:
        return [f"/dev/{s.kernel_name}" for s in self._table if s.kernel_name is not None]


@contextlib.contextmanager
def _removed_on_failure() -> Iterator[list[str]]:
    """A list for the files a call makes: if the call fails, they are removed again."""
    made: list[str] = []
    try:
        yield made
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


def _sparse_again(exports: Sequence[tuple[int, str, str]]) -> None:
    """Free the zero ranges a backup job left allocated in the raw copies of
    *exports* (slot, copy, format): see :mod:`guestslots.host.sparse`.  The copies are
    right either way: a failure is only logged."""
    for _, path, fmt in exports:
        if fmt == "raw":
            try:
                punch_holes(path)
            except OSError as e:
                log.warning("%s: its zero ranges stay allocated: %s", path, e)


def _make_target(path: str, fmt: str, size: int) -> None:
    """An empty image file *path* of *fmt* and *size* bytes, made new (never replacing)."""
    try:
        with open(path, "xb") as f:
            f.truncate(size)
        if fmt == "qcow2":
            try:
                run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(size)])
            except CommandError as e:
                os.unlink(path)  # made just now
                raise HostFileError(path, f"qemu-img create: {e.reason}: {e.output.strip()}") \
                    from None
    except OSError as e:
        raise HostFileError(path, e.strerror or str(e)) from None


def restore(path: str | os.PathLike[str], **options: Any) -> Appliance:
    """Bring back, running, an appliance saved with :meth:`Appliance.save` into
    directory *path*: the same slots, vCPUs, NICs, mounts and memory, the same
    appliance id and device ids.  Only if it can be exactly that: the same QEMU and
    appliance image, and every image the very file it was at the save, unchanged
    (checked: device, inode, size, modification time); otherwise
    :class:`RuntimeRecordError` says which, and nothing is started.  *options* are
    :class:`Appliance`'s (``call_timeout``, ``progress``, ``detached``: by default
    detached if the saved one was); the layout comes from the save.  The directory
    must stay while the appliance runs (its memory may be mapped from it,
    copy-on-write: it is never changed, and may be restored again while the images
    are unchanged)."""
    directory = Path(path)
    where = str(directory / DESCRIPTION)
    try:
        text = (directory / DESCRIPTION).read_text()
    except OSError as e:
        raise RuntimeRecordError(where, f"cannot read it: {e.strerror}") from None
    saved = SavedAppliance.from_json(text, where)
    for slot in saved.record.slots:
        if slot.index in saved.identities and slot.path is not None:
            now = _identity(slot.path, slot.chain)
            if now != saved.identities[slot.index]:
                why = "is gone" if now is None else "is another file, or changed since the save"
                what = f"image {slot.path}" + (" or one of its snapshot overlays "
                                               f"({', '.join(slot.chain)})" if slot.chain else "")
                raise RuntimeRecordError(f"{directory}, slot {slot.index}",
                                         f"{what} {why}: not restored")
    if runtime.record_path(saved.record.id).exists():
        raise RuntimeRecordError(str(directory), f"appliance {saved.record.id} of this save "
                                 "is running (guestslots ps): stop it first")
    for name in ("backend", "uri", "max_vcpus", "memory_mb"):
        if name in options:
            raise TypeError(f"restore: {name} comes from the save, not from the caller")
    options.setdefault("detached", saved.record.detached)
    app = Appliance(saved.record.backend, uri=saved.record.uri or None,
                    max_vcpus=saved.record.vcpus_max, memory_mb=saved.record.memory_mb,
                    **options)
    app._restore(directory, saved)
    return app


def relaunch(appliance: str | os.PathLike[str], **options: Any) -> Appliance:
    """Boot again the appliance of a runtime record whose QEMU is gone (its owner died,
    or it crashed): *appliance* is its id (``guestslots ps``) or its record's path.

    The new appliance has the record's layout (see :meth:`Appliance.relaunch`) and
    id, and is owned by the caller; *options* are :class:`Appliance`'s (backend,
    memory and vCPU count come from the record).  A record whose QEMU still runs, or
    that is truncated, of a newer schema, or names changed images: a clear
    :class:`RuntimeRecordError`, and nothing is launched.
    """
    path = _record_path(appliance)
    record = runtime.read(path)
    if runtime.vm_alive(record):
        hint = "guestslots.attach it" if record.detached else "use it"
        raise RuntimeRecordError(str(path), f"appliance {record.id} is still running "
                                 f"(pid {record.pid}): {hint}, or `guestslots stop "
                                 f"{record.id}` first")
    uri = record.uri or None  # a QEMU backend's record names none
    options.setdefault("detached", record.detached)
    app = Appliance(record.backend, uri=uri, memory_mb=record.memory_mb,
                    max_vcpus=record.vcpus_max, **options)
    app._adopt(record)
    app.launch()
    return app


def _record_path(appliance: str | os.PathLike[str]) -> Path:
    """The runtime record of *appliance*: an id (``guestslots ps``), or a record's path."""
    text = os.fspath(appliance)
    if os.sep in text or text.endswith(".json"):
        return Path(text)
    path = runtime.record_path(text)
    if not path.exists():
        raise RuntimeRecordError(text, f"no appliance {text} is recorded (guestslots ps "
                                 "lists the running ones)")
    return path


def attach(appliance: str | os.PathLike[str], *, timeout: float = 10.0,
           **options: Any) -> Appliance:
    """Take over a running detached appliance (``Appliance(detached=True)``) from
    another process: *appliance* is its id (``guestslots ps``) or its runtime record's
    path.

    The returned :class:`Appliance` is the same appliance, running: its slots,
    mounts, page cache, vCPUs, NICs and disk set, with the same API; its runtime
    record names this process as the one that holds it.  It stays detached:
    :meth:`Appliance.disconnect` (or this process's exit) leaves it for the next,
    :meth:`Appliance.shutdown` stops it.  *options* are :class:`Appliance`'s
    (``call_timeout``, ``progress``...).  Refused with :class:`RuntimeRecordError`,
    changing nothing: an appliance that is not detached (only its owner uses it),
    whose QEMU is gone (see :func:`relaunch`), or that a living process holds (it
    must exit or disconnect first).  *timeout* bounds the wait for QEMU's greeting.
    As a context manager it is shut down at the end, as any :class:`Appliance`; call
    ``disconnect()`` inside to leave it running.
    """
    path = _record_path(appliance)
    record = runtime.read(path)
    where = str(path)
    if not record.detached:
        raise RuntimeRecordError(where, f"appliance {record.id} is not detached: only the "
                                 "process that launched it uses it")
    if not runtime.vm_alive(record) or record.pid is None:
        raise RuntimeRecordError(where, f"appliance {record.id}'s QEMU is gone: "
                                 "guestslots.relaunch brings its layout back")
    if record.owner:
        holder = owner.Owner(**record.owner)
        if holder.pid == os.getpid() and holder.alive():
            raise RuntimeRecordError(where, f"this process holds appliance {record.id} "
                                     "already: use its Appliance object")
        if holder.alive():
            raise RuntimeRecordError(where, f"appliance {record.id} is held by process "
                                     f"{holder.pid}: it must disconnect() or exit first")
    for name in ("backend", "uri", "max_vcpus", "memory_mb", "detached"):
        if name in options:
            raise TypeError(f"attach: {name} comes from the running appliance, not from "
                            "the caller")
    uri = record.uri or None  # a QEMU backend's record names none
    app = Appliance(record.backend, uri=uri, memory_mb=record.memory_mb,
                    max_vcpus=record.vcpus_max, detached=True, **options)
    app._attach(record, timeout)
    return app
