"""The core of an Appliance: its state and lock, the runtime record, and the
paths every area shares (the running backend and agent, watching for a dead VM,
device-name translation).  Each area of the Appliance is a module of this package
(:mod:`.slots`, :mod:`.cpus`, :mod:`.nics`, :mod:`.disksets`, :mod:`.lifecycle`,
:mod:`.detached`, :mod:`.saving`, :mod:`.migration`), a class deriving from the one
before it, so that each sees what the earlier ones do."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import logging
import os
import secrets
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import backends
from ..agent_client import AgentClient
from ..backends import (
    Backend,
    KeepsDiskSetMetadata,
    Layout,
)
from ..errors import (
    AgentError,
    ChannelBroken,
    ChannelClosed,
    DriveError,
    GuestOSError,
    GuestslotsError,
    StateError,
)
from ..guest.base import GuestCalls
from ..host import owner, runtime
from ..host.accel import AccelChoice
from ..host.build import ApplianceImage
from ..host.proc import CommandError
from ..host.qemuversion import reported_version
from ..host.sources import PROBE_TIMEOUT, make_drive
from ..model.cpus import TcgVcpuRules, VcpuTable, tcg_vcpu_rules
from ..model.disksets import DiskSet
from ..model.drives import DriveSpec, check_chain
from ..model.names import is_volume, split_btrfsvol, translate_out_text
from ..model.nics import NicTable, make_nic
from ..model.runtime import RuntimeRecord, RuntimeRecordError, nic_record, slot_record
from ..model.slots import MAX_SLOTS, SlotState, SlotTable
from ..model.sources import is_url
from ..wire import BTRFSVOL

log = logging.getLogger(__name__)

#: Chooses the backend of an ``Appliance()`` that names none (default ``qemu``).
BACKEND_ENV = "GUESTSLOTS_BACKEND"
#: Chooses the QEMU binary of an ``Appliance()`` that names none (as libguestfs's
#: ``LIBGUESTFS_HV``).
QEMU_ENV = "GUESTSLOTS_QEMU"
DEFAULT_QEMU = "/usr/bin/qemu-system-x86_64"

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


def warn(message: str, stacklevel: int) -> None:
    """Log *message* and issue it as a :class:`RuntimeWarning` (*stacklevel* as for
    :func:`warnings.warn`, counted from the caller)."""
    log.warning("%s", message)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


@functools.cache
def owner_record(pid: int) -> dict[str, object]:
    """Process *pid* (this one) as a runtime record's owner: read from /proc once per
    process (keyed by pid, so a forked child records itself)."""
    return dataclasses.asdict(owner.current())


def slot_identity(path: str, chain: tuple[str, ...] = ()) -> str | None:
    """Which file *path* is and how it is now (None: gone); with its snapshot overlays
    *chain*, all of them, separated by ``;``."""
    try:
        return ";".join(runtime.image_identity(p) for p in (path, *chain))
    except OSError:
        return None


def reap(backend: Backend) -> None:
    """Finaliser: no VM outlives its Appliance, even one the caller forgot."""
    with contextlib.suppress(Exception):
        backend.kill()


class ApplianceCore(GuestCalls):
    """An Appliance's state, and what every area of it uses."""

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
        qemu: str | None = None,
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
        #: The QEMU binary: *qemu*, else ``$GUESTSLOTS_QEMU``, else the system's.
        self.qemu_binary = qemu or os.environ.get(QEMU_ENV) or DEFAULT_QEMU
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
        #: What ends with a slot's disk (a libvirt domain's point-in-time export), by
        #: slot: called when the slot empties or the appliance stops.
        self._on_empty: dict[int, Callable[[], None]] = {}
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
        self._ended_sources()
        with contextlib.suppress(OSError, GuestslotsError):
            runtime.remove(self.id)

    def _probe_timeout(self) -> float:
        """How long checking a remote source may take (see :mod:`guestslots.host.sources`):
        the call's timeout, at most :data:`~guestslots.host.sources.PROBE_TIMEOUT`."""
        return min(self.call_timeout, PROBE_TIMEOUT)

    def _ended_sources(self, index: int | None = None) -> None:
        """End what slot *index*'s disk came with (every slot's: None), its errors
        logged: the slot is empty, or the appliance stopped, either way."""
        for i in [index] if index is not None else list(self._on_empty):
            end = self._on_empty.pop(i, None)
            if end is not None:
                try:
                    end()
                except Exception as e:
                    log.warning("slot %d: ending its source: %s", i, e)

    def _update_runtime(self, held: bool = True) -> None:
        """Rewrite the runtime record (see :mod:`guestslots.model.runtime`), held by this
        process (or by none: *held* False); a record that cannot be written is a
        warning, not the change's failure."""
        backend = self._backend
        if backend is None or not self._started:  # launching: written once it is up
            return
        slots = tuple(slot_record(slot, self.id, self._identities.get(slot.index))
                      for slot in self._table)
        info = backend.runtime_info()
        record = RuntimeRecord(
            id=self.id, backend=self.backend, pid=backend.pid, started=self._started,
            updated=time.time(), workdir=backend.workdir or "",
            layout_key=self._layout_key, owner=owner_record(os.getpid()) if held else {},
            slots=slots, vcpus_max=self._vcpus.max_vcpus,
            vcpus_plugged=tuple(sorted(self._vcpus.live)),
            nics=tuple(nic_record(n) for n in self._nics.listed(True)),
            memory_mb=self.memory_mb, diskset=tuple(self._diskset.list()),
            detached=self.detached, vcpu_unplugged=self._vcpu_unplugged,
            qemu=self.qemu_binary, qmp_socket=info.get("qmp_socket", ""),
            agent_socket=info.get("agent_socket", ""), uri=info.get("uri", ""),
            domain=info.get("domain", ""))
        self._record = record
        try:
            runtime.write(record)
        except (OSError, GuestslotsError) as e:
            message = f"the runtime record of appliance {self.id} was not written: {e}"
            warn(message, stacklevel=4)
        if isinstance(backend, KeepsDiskSetMetadata):  # libvirt: the domain's metadata
            try:
                backend.note_disk_set(record.diskset, self.call_timeout)
            except GuestslotsError as e:
                warn(f"the disk set of appliance {self.id} was not written into its "
                      f"domain's metadata: {e}", stacklevel=4)

    @property
    def pid(self) -> int | None:
        """The VM process's id (QEMU's) while running."""
        return self._backend.pid if self._backend else None

    def _filled(self) -> list[int]:
        return [slot.index for slot in self._table if slot.drive is not None]

    def _left_diskset(self, index: int) -> None:
        if self._diskset.unplugged(index):
            warn(f"appliance {self.id}: slot {index} was unplugged and left the disk set "
                  f"(now {self._diskset.list()})", stacklevel=4)

    def _drive(self, index: int) -> DriveSpec:
        drive = self._table[index].drive
        assert drive is not None, f"slot {index} is empty"
        return drive

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

    def _adopt(self, record: RuntimeRecord) -> None:
        """Make *record*'s running layout this appliance's definition (images checked
        first: a refusal changes nothing)."""
        drives: list[DriveSpec | None] = []
        for slot in record.slots:
            if slot.state != SlotState.FILLED.value or slot.path is None:
                drives.append(None)
                continue
            why = "" if is_url(slot.path) else runtime.image_changed(slot)
            if why:
                raise RuntimeRecordError(f"appliance {record.id}, slot {slot.index}",
                                         f"image {slot.path}: {why}; not relaunched")
            if slot.identity is None and not is_url(slot.path):
                warn(f"appliance {record.id}, slot {slot.index}: the record (an older "
                     f"guestslots's) does not say which file {slot.path} was: it is "
                     "taken as it is now, unchecked", stacklevel=5)
            try:
                check_chain(slot.path, slot.chain)
            except DriveError as e:
                raise RuntimeRecordError(f"appliance {record.id}, slot {slot.index}",
                                         f"{e}; not relaunched") from None
            made = make_drive(slot.path, slot.format, bool(slot.readonly), slot.label,
                              bool(slot.overlay), slot.sslverify is not False,
                              self._probe_timeout())
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

    def _tcg_rules(self) -> TcgVcpuRules:
        """What this appliance's QEMU survives of vCPU hotplug under TCG, by the version
        it reports (every limit for a QEMU that does not say)."""
        try:
            version = reported_version(self.qemu_binary)
        except (OSError, CommandError):
            version = "unknown"
        return tcg_vcpu_rules(version)

    def _tcg_limits_after_unplug(self) -> TcgVcpuRules | None:
        """The TCG rules if a vCPU was unplugged from this QEMU process under TCG (what
        a save, a migration or a PCI hotplug must respect); else None."""
        if self._vcpu_unplugged and self.accel is not None and self.accel.accel == "tcg":
            return self._tcg_rules()
        return None

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
