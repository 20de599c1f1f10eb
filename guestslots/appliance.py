"""The Appliance: one launched appliance VM, its slots, and the calls into it.

The Appliance decides; the slot table says what is allowed; the backend and
the agent client carry out.  Every slot change is checked against the table
first, carried out, and only then recorded, so a refused or failed call
leaves the table, the other slots and their data as they were.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import io
import json
import logging
import os
import shutil
import stat
import threading
import time
import typing
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from . import savedstate
from .accel import AccelChoice, choose_accel
from .agent_client import AgentClient
from .build import ApplianceImage, ensure_appliance
from .drives import NULL_DRIVE, DriveSpec, make_drive
from .errors import (
    AgentError,
    ChannelBroken,
    ChannelClosed,
    DeviceBusyError,
    DeviceNameError,
    DriveError,
    GuestOSError,
    GuestslotsError,
    HostFileError,
    LabelError,
    LaunchError,
    QemuError,
    StateError,
)
from .inspection import inspect_os, mount_mountpoints
from .names import (
    BTRFSVOL,
    LINK_DIR,
    canonical_volume,
    is_volume,
    split_btrfsvol,
    translate_out_text,
)
from .proc import CommandError, run
from .qemu import QemuMachine
from .qmpargs import MachineConfig, warmup_blockdev_args, warmup_device_args
from .slots import MAX_SLOTS, Slot, SlotTable
from .workdir import WorkDir, remove_stale

log = logging.getLogger(__name__)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

Progress = Callable[[str], None]


class ApplianceState(enum.Enum):
    """Where an Appliance is in its life."""

    CONFIG = "not launched"
    RUNNING = "running"
    CLOSED = "shut down"


def _serialised(method: F) -> F:
    """Run *method* holding its Appliance's lock.

    Every call on one Appliance is serialised: slot changes, the name
    translation around a guest call and the call itself happen as one step, so a
    call from one thread never sees another thread's half-done hotplug.  (The
    agent answers one call at a time anyway; for parallel work, use one
    appliance per thread.)
    """

    @functools.wraps(method)
    def serialised(self: Appliance, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return typing.cast(F, serialised)


@contextlib.contextmanager
def _host_file(path: str | os.PathLike[str], mode: str) -> Iterator[IO[bytes]]:
    """Open host file *path*; a failure to open, read or write it is a :class:`HostFileError`."""
    try:
        f = open(path, mode)  # noqa: SIM115 (closed below)
    except OSError as e:
        raise HostFileError(os.fspath(path), e.strerror or str(e)) from None
    with f:
        try:
            yield typing.cast(IO[bytes], f)
        except OSError as e:
            if isinstance(e, GuestslotsError):
                raise
            raise HostFileError(os.fspath(path), e.strerror or str(e)) from None


def _reap(machine: QemuMachine, workdir: WorkDir) -> None:
    """Finaliser: no QEMU outlives its Appliance, even one the caller forgot."""
    with contextlib.suppress(Exception):
        machine.kill()
    workdir.remove()


class Appliance:
    """A small Linux appliance VM with drive slots that can be hotplugged by index.

    Reserve slots with :meth:`add_drive` (``/dev/null`` for an empty one),
    :meth:`launch`, then :meth:`hotplug` and :meth:`unplug` by slot index.
    Slot *i* is always ``/dev/sd`` + letters(i) (0 -> ``/dev/sda``,
    27 -> ``/dev/sdab``), whatever the kernel's discovery order was.  Use it as
    a context manager, or call :meth:`shutdown`.
    """

    def __init__(
        self,
        backend: str = "qemu",
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
    ) -> None:
        if backend != "qemu":
            raise ValueError(f"backend {backend!r} is not available (this version has: 'qemu')")
        self.backend = backend
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
        self._table = SlotTable(max_slots)
        self._state = ApplianceState.CONFIG
        self._lock = threading.RLock()
        self._machine: QemuMachine | None = None
        self._agent: AgentClient | None = None
        self._workdir: str | None = None
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
            self._require("add_drive", ApplianceState.CONFIG)
            if os.fspath(path) == NULL_DRIVE:
                if label is not None:
                    raise LabelError("an empty slot has no label: give the label to hotplug")
                return self._table.reserve(None)
            return self._table.reserve(make_drive(path, format, readonly, label, overlay))

    def launch(self, fresh: bool = False) -> None:
        """Start the appliance and attach the drives added so far.

        The first launch of a given configuration builds the appliance if
        needed, boots it cold, and saves the booted state; later launches
        restore that state (under a second).  ``fresh=True`` forces a cold
        boot.  A restore that fails for any reason falls back to a cold boot
        with a :class:`RuntimeWarning`, and the bad state is rebuilt.

        Raises :class:`LaunchError` with QEMU's exit status, command line and
        log tail if the appliance does not come up; nothing is left running.
        """
        with self._lock:
            self._require("launch", ApplianceState.CONFIG)
            started = time.monotonic()
            self.image = ensure_appliance(self._say)
            self.accel = choose_accel(self.qemu_binary, str(self.image.kernel), self._accel_request)
            self._say(f"accelerator: {self.accel.accel} ({self.accel.reason})")
            self._start_vm(self.image, fresh)
            try:
                for slot in self._table:
                    if slot.drive is not None:
                        self._plug(slot.index, slot.drive)
            except BaseException:
                self._teardown()
                self._state = ApplianceState.CLOSED
                raise
            took = time.monotonic() - started
            self._say(f"appliance ready in {took:.2f} s ({self.launched_from})")

    def _config(self, image: ApplianceImage, accel: str, workdir: str) -> MachineConfig:
        return MachineConfig(
            qemu=self.qemu_binary,
            accel=accel,
            kernel=str(image.kernel),
            initrd=str(image.initrd),
            root_overlay=os.path.join(workdir, "root.qcow2"),
            qmp_socket=os.path.join(workdir, "qmp.sock"),
            agent_socket=os.path.join(workdir, "agent.sock"),
            console_log=os.path.join(workdir, "console.log"),
            memory_mb=self.memory_mb,
            tcg_cache_mib=self.tcg_cache_mib,
        )

    def _start_vm(self, image: ApplianceImage, fresh: bool) -> None:
        assert self.accel is not None
        use_saved = self.saved_state and not fresh
        key = savedstate.state_key(self._config(image, self.accel.accel, "/"), image.key)
        saved = savedstate.find(key) if use_saved else None
        unusable = savedstate.check(saved) if saved is not None else ""
        if saved is not None and unusable:
            message = f"the saved appliance is not usable ({unusable}): booting cold to rebuild it"
            log.warning("%s", message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            savedstate.discard(key)
            saved = None
        if saved is not None:
            try:
                self._boot(image, self.accel.accel, saved)
                self.launched_from = "restored"
                return
            except GuestslotsError as e:
                message = f"restoring the saved appliance failed, booting cold instead: {e}"
                log.warning("%s", message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                savedstate.discard(key)
        try:
            self._boot(image, self.accel.accel)
        except LaunchError:
            if self.accel.accel != "kvm" or self.accel.requested:
                raise
            self._say("the appliance did not boot under KVM: retrying with TCG")
            self.accel = AccelChoice("tcg", "KVM passed its probe but the boot failed")
            key = savedstate.state_key(self._config(image, "tcg", "/"), image.key)
            self._boot(image, "tcg")
        self.launched_from = "cold boot"
        if use_saved:
            try:
                self._save_state(key)
            except (GuestslotsError, OSError) as e:
                message = f"could not save the booted appliance (launches stay cold): {e}"
                log.warning("%s", message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                if self._machine is None or not self._machine.is_running():
                    raise

    def _save_state(self, key: str) -> None:
        machine, agent = self._running("launch")
        assert self._workdir is not None
        self._say("saving the booted appliance, so that later launches restore it")
        started = time.monotonic()
        # The first hotplug after boot is the slowest: take it now, so that
        # every restored appliance starts warm.
        machine.attach_args(0, warmup_blockdev_args(0), warmup_device_args(0))
        agent.call("wait_disk", target=0, plugged=True, timeout=60)
        machine.detach(0)
        agent.call("wait_disk", target=0, plugged=False, timeout=60)
        staged = savedstate.staging(key)
        try:
            try:
                machine.save_state(staged / "state")  # stops the VM, flushing its disks
                shutil.copyfile(os.path.join(self._workdir, "root.qcow2"), staged / "root.qcow2")
            finally:
                machine.resume()  # whatever happened: a stopped appliance would answer nothing
            savedstate.publish(key, staged)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self._say(f"saved in {time.monotonic() - started:.1f} s")

    def _boot(
        self, image: ApplianceImage, accel: str, saved: savedstate.SavedState | None = None
    ) -> None:
        for stale in remove_stale():
            self._say(f"removed {stale}, left by an appliance whose owner died")
        owned = WorkDir()
        workdir = owned.path
        cfg = self._config(image, accel, workdir)
        backing, backing_format = (saved.root, "qcow2") if saved else (image.root, "raw")
        try:
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format,
                 "-b", str(backing), cfg.root_overlay])
        except CommandError as e:
            owned.remove()
            raise LaunchError(f"cannot create the root overlay: {e}") from None
        machine = QemuMachine(cfg, Path(workdir), incoming=saved is not None)
        finalizer = weakref.finalize(self, _reap, machine, owned)
        self._say(f"restoring the saved appliance ({accel})" if saved
                  else f"booting the appliance ({accel})")
        try:
            sock = machine.start(timeout=30)
            agent = AgentClient(sock, self._death_report(machine), self.call_timeout)
            try:
                if saved is not None:
                    machine.restore_state(saved.state)
                    agent.call("ping", wait_for=30)
                else:
                    agent.wait_hello(self.boot_timeout)
            except (AgentError, QemuError) as e:
                what = "restored" if saved else "came up"
                raise machine.error(f"the appliance never {what}: {e}", LaunchError) from None
        except BaseException:
            finalizer()
            raise
        self._machine, self._agent, self._workdir = machine, agent, workdir
        self._finalizer = finalizer
        self._state = ApplianceState.RUNNING

    @staticmethod
    def _death_report(machine: QemuMachine) -> Callable[[], str]:
        def report() -> str:
            status = machine.wait_exit(2)
            state = "QEMU is still running" if status is None else f"QEMU exited ({status})"
            return f"{state}\n{machine.log_tail()}"

        return report

    def shutdown(self) -> None:
        """Unmount everything, sync, power the appliance off and clean up.

        Safe to call more than once; after it, the Appliance cannot be relaunched.
        """
        with self._lock:
            graceful = False
            if self._state is ApplianceState.RUNNING and self._agent is not None:
                try:
                    self._agent.call("shutdown", wait_for=min(self.call_timeout, 30))
                    graceful = True
                except GuestslotsError as e:  # stuck or gone: nothing to wait for
                    log.warning("the appliance did not power off by itself (%s): killing it",
                                str(e).splitlines()[0])
            self._teardown(graceful)
            self._state = ApplianceState.CLOSED

    close = shutdown

    def _teardown(self, graceful: bool = False) -> None:
        """Stop QEMU (waiting for the guest to power off if *graceful*) and clean up."""
        if self._machine is not None:
            if graceful:
                self._machine.shutdown(timeout=10)
            else:
                self._machine.kill()
        if self._finalizer is not None:
            self._finalizer()  # removes the work directory; kill() is a no-op by now
        self._machine = self._agent = None
        self._workdir = None

    @property
    def pid(self) -> int | None:
        """QEMU's process id while running."""
        return self._machine.pid if self._machine else None

    # ------------------------------------------------------------ slots

    def max_slots(self) -> int:
        """The most slots this appliance can reserve (255: 256 SCSI targets, less one)."""
        return self._table.max_slots

    @_serialised
    def slots(self) -> list[Slot]:
        """Every reserved slot: index, device, state, path, format, readonly, label, serial."""
        return list(self._table)

    @_serialised
    def list_devices(self) -> list[str]:
        """The device of every reserved slot, empty ones included, in slot order."""
        return [slot.device for slot in self._table]

    @_serialised
    def list_disk_labels(self) -> dict[str, str]:
        """Label -> device, for every full slot that has a label."""
        return {label: self._table[i].device for label, i in self._table.labels().items()}

    @_serialised
    def resolve_link(self, link: str, timeout: float = 10.0) -> str:
        """Wait until the appliance's udev has made *link* and return the device it names.

        *link* is ``/dev/disk/guestslots/<label|slotK>[-partN]``.  Calls never
        need these links (the host translates labels itself, without waiting
        for udev); this is for checking the mapping, and for tools run inside
        the appliance that want stable names.
        """
        prefix = LINK_DIR + "/"
        if not link.startswith(prefix):
            raise DeviceNameError(link, f"not a link under {LINK_DIR}")
        # The agent waits *timeout* for the link; the host waits a little longer for the
        # agent's answer (``wait_for``), so a missing link is the agent's clear error.
        target = self._call("wait_link", wait_for=timeout + 5, name=link.removeprefix(prefix),
                            timeout=timeout)
        return self._out(str(target))

    def hotplug(
        self,
        index: int,
        path: str | os.PathLike[str],
        format: str | None = None,
        readonly: bool = True,
        label: str | None = None,
        overlay: bool = False,
    ) -> int:
        """Fill reserved empty slot *index* (``-1``: the first empty one) with an image.

        Returns the slot index.  Returns once the disk is usable in the
        appliance.  The same checks as :meth:`add_drive` apply; on any error
        the slot stays empty and nothing else changes.
        """
        with self._lock:
            self._require("hotplug", ApplianceState.RUNNING)
            if os.fspath(path) == NULL_DRIVE:
                raise DriveError(NULL_DRIVE, "cannot be hotplugged: a slot is emptied by unplug")
            drive = make_drive(path, format, readonly, label, overlay)
            index = self._table.plug_index(index, drive)
            self._check_shared_image(index, drive)
            self._plug(index, drive)
            return index

    def _check_shared_image(self, index: int, drive: DriveSpec) -> None:
        """Refuse an image that another slot holds when either may write to it (QEMU
        would refuse it with a bare lock message)."""
        for slot in self._table:
            if slot.drive is None or slot.index == index:
                continue
            with contextlib.suppress(OSError):
                if not os.path.samefile(slot.drive.path, drive.path):
                    continue
                if not (slot.drive.readonly or slot.drive.overlay) or not (
                        drive.readonly or drive.overlay):
                    raise DriveError(
                        drive.path,
                        f"slot {slot.index} ({slot.device}) holds this image "
                        f"{'writable' if not slot.drive.readonly else 'read-only'}; an image "
                        "may be in several slots only if none of them writes to it",
                    )

    def _plug(self, index: int, drive: DriveSpec) -> None:
        machine, agent = self._running("hotplug")
        overlay = self._make_overlay(index, drive) if drive.throwaway else None
        try:
            with self._watch():
                machine.attach(index, drive, overlay, timeout=self.call_timeout)
                try:
                    found = agent.call("disk_plugged", target=index, readonly=drive.readonly,
                                       activate=self.auto_activate, timeout=60)
                except BaseException:
                    with contextlib.suppress(GuestslotsError):
                        machine.detach(index, timeout=self.call_timeout)
                    raise
        except BaseException:
            self._drop_overlay(index)
            raise
        self._table.fill(index, drive, found["name"])
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
            log.warning("%s", message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    def _overlay_path(self, index: int) -> str:
        assert self._workdir is not None
        return os.path.join(self._workdir, f"overlay-slot{index}.qcow2")

    def _make_overlay(self, index: int, drive: DriveSpec) -> str:
        """A throwaway qcow2 over *drive*'s image.  ``qemu-img info`` reads only the
        image itself (it opens no backing file without --backing-chain), and the
        overlay is made with -u so that nothing else is opened either."""
        path = self._overlay_path(index)
        try:
            st = os.stat(drive.path)
            if drive.format == "raw" and stat.S_ISREG(st.st_mode):
                size = st.st_size  # a raw file is its own virtual size: no process
            else:
                try:
                    size = json.loads(run(["qemu-img", "info", "--output=json", "-f",
                                           drive.format, drive.path]))["virtual-size"]
                except CommandError as e:
                    said = e.output.strip().splitlines()[-1:] or [e.reason]
                    raise DriveError(drive.path, f"QEMU cannot open it as {drive.format}: "
                                     f"{said[0].removeprefix('qemu-img: ')}") from None
            run(["qemu-img", "create", "-q", "-u", "-f", "qcow2", "-F", drive.format,
                 "-b", drive.path, path, str(size)])
        except (CommandError, OSError, ValueError, KeyError) as e:
            raise DriveError(drive.path, f"cannot make its throwaway overlay: {e}") from None
        return path

    def _drop_overlay(self, index: int) -> None:
        if self._workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._overlay_path(index))

    def unplug(self, index: int, force: bool = False) -> int:
        """Empty full slot *index* (``-1``: the highest full one); return the index.

        A slot whose device is in use is refused with :class:`DeviceBusyError`
        (naming what uses it) unless ``force=True``: in use means mounted, a
        member of a running md array, or a PV of an active volume group.
        ``force=True`` unmounts what is on it (and on the LVs of its volume
        groups, wherever they are), deactivates those volume groups and stops
        those arrays first.  Either way everything written is synced before the
        disk leaves, so no data is lost, and no device-mapper or md device is
        left behind.
        """
        with self._lock:
            self._require("unplug", ApplianceState.RUNNING)
            index = self._table.unplug_index(index)
            slot = self._table[index]
            machine, agent = self._running("unplug")
            users = self._call("prepare_unplug", device=f"/dev/{slot.kernel_name}", force=force)
            if users:
                raise DeviceBusyError(index, slot.device, [self._out(u) for u in users])
            with self._watch():
                machine.detach(index, timeout=self.call_timeout)
                agent.call("wait_disk", target=index, plugged=False, timeout=60)
            self._drop_overlay(index)
            self._table.empty(index)
            return index

    def _running(self, call: str) -> tuple[QemuMachine, AgentClient]:
        self._require(call, ApplianceState.RUNNING)
        assert self._machine is not None and self._agent is not None
        return self._machine, self._agent

    @contextlib.contextmanager
    def _watch(self) -> Iterator[None]:
        """If QEMU died under a call, or the channel to the agent closed or fell out of
        step, close the Appliance (no QEMU is left behind; the call's error says why)."""
        try:
            yield
        except GuestslotsError as e:
            dead = self._machine is not None and not self._machine.is_running()
            if dead or isinstance(e, (ChannelClosed, ChannelBroken)):
                self._teardown()
                self._state = ApplianceState.CLOSED
            raise

    # ------------------------------------------------------------ translation

    def _out(self, text: str) -> str:
        return translate_out_text(text, self._table.kernel_to_api())

    def _dev(self, name: str) -> str:
        btrfsvol = split_btrfsvol(name)
        if btrfsvol is not None:
            return f"{BTRFSVOL}{self._dev(btrfsvol[0])}/{btrfsvol[1]}"
        return name if is_volume(name) else self._table.to_kernel(name)


    def _call(self, call: str, wait_for: float | None = None, **args: Any) -> Any:
        """Run agent call *call* with *args*; wait *wait_for* seconds (default
        ``call_timeout``) for its answer."""
        _, agent = self._running(call)
        with self._watch():
            try:
                return agent.call(call, wait_for=wait_for, **args)
            except AgentError as e:
                raise self._translated(e) from None

    def _translated(self, e: AgentError) -> AgentError:
        message = self._out(str(e).removeprefix(f"{e.call}: "))
        if isinstance(e, GuestOSError):
            return GuestOSError(e.call, message, e.errno)
        return type(e)(e.call, message)

    def _filled_kernel_disks(self) -> list[str]:
        return [f"/dev/{s.kernel_name}" for s in self._table if s.kernel_name is not None]

    # ------------------------------------------------------------ devices

    @_serialised
    def list_partitions(self) -> list[str]:
        """Every partition of every full slot, in slot then partition order."""
        parts = self._call("list_partitions", disks=self._filled_kernel_disks())
        return [self._out(p) for p in parts]

    @_serialised
    def list_filesystems(self) -> dict[str, str]:
        """Device -> filesystem type (``unknown`` when none is recognised), as libguestfs.

        Whole disks that are not partitioned, partitions, running md arrays, then
        active LVs (``/dev/VG/LV``, sorted).  Containers are left out: PVs, RAID
        members, LUKS, MBR extended partitions, Windows LDM and reserved partitions.
        """
        pairs = self._call("list_filesystems", disks=self._filled_kernel_disks())
        return {self._out(dev): fstype for dev, fstype in pairs}

    # ------------------------------------------------------------ LVM and md

    @_serialised
    def pvs(self) -> list[str]:
        """The LVM physical volumes on the slots (device names), sorted."""
        return sorted(self._out(pv) for pv in self._call("pvs"))

    @_serialised
    def vgs(self) -> list[str]:
        """The LVM volume groups on the slots, active or not, sorted."""
        return list(self._call("vgs"))

    @_serialised
    def lvs(self) -> list[str]:
        """The LVM logical volumes on the slots as ``/dev/VG/LV``, active or not, sorted."""
        return list(self._call("lvs"))

    @_serialised
    def vg_activate(self, activate: bool, volgroups: list[str]) -> None:
        """Activate (or deactivate) the volume groups *volgroups*; an empty list means
        all.  Deactivating a volume group with a mounted LV is refused."""
        self._call("vg_activate", activate=bool(activate), volgroups=list(volgroups))

    @_serialised
    def vg_activate_all(self, activate: bool) -> None:
        """Activate (or deactivate) every volume group on the slots."""
        self.vg_activate(activate, [])

    @_serialised
    def list_dm_devices(self) -> list[str]:
        """Every device-mapper node in the appliance's ``/dev/mapper``, sorted (after a
        slot's volume groups are deactivated, none of theirs is left)."""
        return list(self._call("list_dm_devices"))

    @_serialised
    def list_md_devices(self) -> list[str]:
        """The running md arrays on the slots (``/dev/mdN``, never translated)."""
        return list(self._call("list_md_devices"))

    @_serialised
    def md_detail(self, md: str) -> dict[str, str]:
        """What mdadm says of array *md*: level, devices, metadata, uuid, name..."""
        detail = self._call("md_detail", md=self._dev(md))
        return {key: self._out(value) for key, value in detail.items()}

    @_serialised
    def blkid(self, device: str) -> dict[str, str]:
        """Everything libblkid says of *device* (TYPE, UUID, LABEL, PTTYPE, PART_ENTRY_*...)."""
        return dict(self._call("blkid", device=self._dev(device)))

    @_serialised
    def vfs_type(self, device: str) -> str:
        """The filesystem type on *device*, or ``""``."""
        return self.blkid(device).get("TYPE", "")

    @_serialised
    def vfs_label(self, device: str) -> str:
        """The filesystem label on *device*, or ``""``."""
        return self.blkid(device).get("LABEL", "")

    @_serialised
    def vfs_uuid(self, device: str) -> str:
        """The filesystem UUID on *device*, or ``""``."""
        return self.blkid(device).get("UUID", "")

    # ------------------------------------------------------------ mounts

    @_serialised
    def mount(self, device: str, mountpoint: str, options: str = "") -> None:
        """Mount *device* read-write on *mountpoint* (``/`` first) inside the appliance.

        Refused for anything on a slot plugged read-only (an LV or array too).
        """
        self._mount(device, mountpoint, False, options)

    @_serialised
    def mount_ro(self, device: str, mountpoint: str) -> None:
        """Mount *device* read-only on *mountpoint*."""
        self._mount(device, mountpoint, True)

    @_serialised
    def mount_options(self, options: str, device: str, mountpoint: str) -> None:
        """Mount *device* on *mountpoint* with filesystem *options* (read-only if it is on
        a read-only slot)."""
        self._mount(device, mountpoint, None, options)

    def _mount(self, device: str, mountpoint: str, readonly: bool | None,
               options: str = "") -> None:
        """The one way to mount: a ``btrfsvol:`` name is split into its device and
        subvolume here; the appliance decides what a read-only slot allows, as only it
        knows which slot disks lie under an LV or array."""
        btrfsvol = split_btrfsvol(device)
        dev, subvolume = btrfsvol if btrfsvol is not None else (device, "")
        self._call("mount", device=self._dev(dev), mountpoint=mountpoint, readonly=readonly,
                   options=options, subvolume=subvolume)

    @_serialised
    def umount(self, mountpoint: str) -> None:
        """Unmount the filesystem mounted on *mountpoint* (or the one from *device*)."""
        if mountpoint.startswith(("/dev/", BTRFSVOL)):
            kernel = canonical_volume(self._dev(mountpoint))
            for dev, mp in self._call("mounts"):
                if dev == kernel:
                    mountpoint = mp
                    break
            else:
                raise DeviceNameError(mountpoint, "is not mounted")
        self._call("umount", mountpoint=mountpoint)

    @_serialised
    def umount_all(self) -> None:
        """Unmount everything mounted in the appliance, innermost first, and sync."""
        self._call("umount_all")

    @_serialised
    def mounts(self) -> list[str]:
        """The devices mounted, in mount order."""
        return [self._out(dev) for dev, _mp in self._call("mounts")]

    @_serialised
    def mountpoints(self) -> dict[str, str]:
        """Device -> mount point of every mount."""
        return {self._out(dev): mp for dev, mp in self._call("mounts")}

    # ------------------------------------------------------------ files

    @_serialised
    def ls(self, directory: str) -> list[str]:
        """Names in *directory* (sorted, without ``.`` and ``..``)."""
        return list(self._call("ls", path=directory))

    @_serialised
    def stat(self, path: str) -> dict[str, int]:
        """stat(2) of *path* (symlinks followed): mode, size, uid, gid, times in ns..."""
        return dict(self._call("stat", path=path))

    @_serialised
    def lstat(self, path: str) -> dict[str, int]:
        """lstat(2) of *path* (a symlink itself)."""
        return dict(self._call("stat", path=path, follow=False))

    @_serialised
    def exists(self, path: str) -> bool:
        """Whether *path* exists (a dangling symlink exists)."""
        return bool(self._call("exists", path=path))

    @_serialised
    def is_file(self, path: str, followsymlinks: bool = False) -> bool:
        """Whether *path* is a regular file."""
        return bool(self._call("is_file", path=path, follow=followsymlinks))

    @_serialised
    def is_dir(self, path: str, followsymlinks: bool = False) -> bool:
        """Whether *path* is a directory."""
        return bool(self._call("is_dir", path=path, follow=followsymlinks))

    @_serialised
    def readlink(self, path: str) -> str:
        """The target of symbolic link *path*, as stored (not resolved)."""
        return str(self._call("readlink", path=path))

    @_serialised
    def mkdir(self, path: str) -> None:
        """Create directory *path*."""
        self._call("mkdir", path=path)

    @_serialised
    def mkdir_p(self, path: str) -> None:
        """Create directory *path* and its parents; no error if it exists."""
        self._call("mkdir", path=path, parents=True)

    @_serialised
    def rm(self, path: str) -> None:
        """Remove file *path*."""
        self._call("rm", path=path)

    @_serialised
    def rmdir(self, path: str) -> None:
        """Remove empty directory *path*."""
        self._call("rmdir", path=path)

    @_serialised
    def read_file(self, path: str) -> bytes:
        """The whole content of file *path*, as bytes."""
        buf = io.BytesIO()
        self._download(path, buf)
        return buf.getvalue()

    @_serialised
    def cat(self, path: str) -> str:
        """The content of text file *path* (UTF-8; undecodable bytes replaced)."""
        return self.read_file(path).decode("utf-8", "replace")

    @_serialised
    def write(self, path: str, content: bytes | str) -> None:
        """Create or replace file *path* with *content*."""
        data = content.encode() if isinstance(content, str) else content
        self._upload(io.BytesIO(data), path)

    @_serialised
    def download(
        self,
        remotefile: str,
        filename: str | os.PathLike[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Copy file *remotefile* from the appliance to host file *filename*.

        *progress*, if given, is called with the size of each chunk copied.
        """
        with _host_file(filename, "wb") as f:
            self._download(remotefile, f, progress)

    @_serialised
    def upload(
        self,
        filename: str | os.PathLike[str],
        remotefile: str,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Copy host file *filename* to *remotefile* in the appliance.

        *progress*, if given, is called with the size of each chunk copied.
        """
        with _host_file(filename, "rb") as f:
            self._upload(f, remotefile, progress)

    def _download(
        self, path: str, sink: IO[bytes], progress: Callable[[int], None] | None = None
    ) -> None:
        _, agent = self._running("download")
        with self._watch():
            try:
                agent.download("download", sink, progress=progress, path=path)
            except AgentError as e:
                raise self._translated(e) from None

    def _upload(
        self, source: IO[bytes], path: str, progress: Callable[[int], None] | None = None
    ) -> None:
        _, agent = self._running("upload")
        with self._watch():
            try:
                agent.upload("upload", source, progress=progress, path=path)
            except AgentError as e:
                raise self._translated(e) from None

    @_serialised
    def checksum(self, csumtype: str, path: str) -> str:
        """Hex digest of file *path*: md5, sha1, sha224, sha256, sha384 or sha512."""
        return str(self._call("checksum", csumtype=csumtype, path=path))

    @_serialised
    def statvfs(self, path: str) -> dict[str, int]:
        """statvfs(2) of the filesystem holding *path*."""
        return dict(self._call("statvfs", path=path))

    @_serialised
    def sync(self) -> None:
        """Write every cached change to the disks."""
        self._call("sync")

    # ------------------------------------------------------------ inspection

    @_serialised
    def inspect_os(self) -> list[dict[str, object]]:
        """Find operating systems on the full slots (Linux: /etc/os-release, /etc/fstab).

        Each is a dict: root, name, pretty_name, version, distro, hostname, and
        mountpoints (mount point -> device, from fstab's UUID=, LABEL= and
        device entries).  Nothing may be mounted; nothing is left mounted.
        """
        return [found.as_dict() for found in inspect_os(self)]

    @_serialised
    def mount_os(self, root: str, readonly: bool = True) -> None:
        """Mount the filesystems of the operating system on *root* as its fstab says."""
        for found in inspect_os(self):
            if found.root == root:
                mount_mountpoints(self, found.mountpoints, readonly)
                return
        raise DeviceNameError(root, "no operating system was found on it")

    # ------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def mounted(self, device: str, mountpoint: str = "/", readonly: bool = True) -> Iterator[None]:
        """Mount *device* for the duration of a ``with`` block, then unmount it."""
        if readonly:
            self.mount_ro(device, mountpoint)
        else:
            self.mount(device, mountpoint)
        try:
            yield
        finally:
            self.umount(mountpoint)
