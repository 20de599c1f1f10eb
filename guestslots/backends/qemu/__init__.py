"""The QEMU backend: QEMU run directly and driven over QMP, no daemon.

It owns the VM's work directory (sockets, the root overlay, slot overlays,
logs), the QEMU process (:mod:`.machine`) and the declarations QEMU is given
(:mod:`.qmpargs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ...errors import LaunchError, QemuError
from ...host import workdir as workdirs
from ...host.cache import file_id
from ...host.proc import CommandError
from ...host.qemuversion import reported_version
from ...host.savedstate import RAM_FILE, ROOT_FILE, STATE_FILE
from ...host.tap import open_tap
from ...model.drives import DriveSpec
from ...model.migration import MigrationParams, MigrationProgress
from ...model.nics import NicSpec
from ...model.runtime import RuntimeRecord
from .. import Layout, VMSpec
from ..overlays import make_root_overlay, virtual_size
from ..workfiles import (
    Generation,
    bring_overlays,
    keep_overlays,
    overlay_path,
    root_overlay,
)
from .machine import QemuMachine
from .migration_plan import check_params, qmp_plan
from .qmpargs import ANONYMOUS_RAM, MachineConfig, layout_key_command, slot_ids

log = logging.getLogger(__name__)


def move_sparse(source: str, destination: Path, keep: bool = False) -> None:
    """Move a file (with *keep*: copy it), leaving its zero blocks out (holes): the
    guest's RAM is mostly zeros (its kernel zeroes what it frees), and a hole costs
    neither disk nor a read."""
    block = 1 << 16
    zero = bytes(block)
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(block):
            if chunk == zero:
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
        dst.truncate()
    if not keep:
        os.unlink(source)


class QemuBackend:
    """One appliance VM run by QEMU."""

    name = "qemu"
    saves_state = True
    #: The saved state's RAM is the file the VM ran on: it must not run on after the save.
    save_stops = True

    def __init__(self, spec: VMSpec) -> None:
        self.spec = spec
        self.machine: QemuMachine | None = None
        self._workdir: workdirs.WorkDir | None = None
        #: Migrations so far: each new process's files are numbered.
        self._generation = 0
        #: What :meth:`start` plugs before it restores a state: for restoring an
        #: appliance saved with :meth:`save_appliance` (see :meth:`restore_layout`).
        self._pending: tuple[Layout, Path] | None = None

    # ---- what the VM is

    def _config(self, workdir: str, memory_file: str = "@",
                memory_shared: bool = True) -> MachineConfig:
        return MachineConfig(
            qemu=self.spec.qemu,
            accel=self.spec.accel,
            kernel=str(self.spec.image.kernel),
            initrd=str(self.spec.image.initrd),
            root_overlay=root_overlay(workdir),
            qmp_socket=Generation(workdir).qmp_socket,
            agent_socket=Generation(workdir).agent_socket,
            console_log=Generation(workdir).console_log,
            memory_mb=self.spec.memory_mb,
            max_vcpus=self.spec.max_vcpus,
            tcg_cache_mib=self.spec.tcg_cache_mib,
            memory_file=memory_file,
            memory_shared=memory_shared,
            detached=self.spec.detached,
        )

    def layout_key(self) -> str:
        """The QEMU binary and the version it reports, and the command line with every
        per-instance path blanked."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, file_id(self.spec.qemu),
                             reported_version(self.spec.qemu),
                             layout_key_command(self._config("/"))]).encode())
        return h.hexdigest()

    def runtime_info(self) -> dict[str, str]:
        if self.machine is None:
            return {}
        return {"qmp_socket": self.machine.cfg.qmp_socket,
                "agent_socket": self.machine.cfg.agent_socket}

    @property
    def pid(self) -> int | None:
        return self.machine.pid if self.machine else None

    @property
    def workdir(self) -> str | None:
        return self._workdir.path if self._workdir else None

    # ---- lifecycle

    def start(self, restore_from: Path | None, timeout: float) -> socket.socket:
        """Make the work directory and root overlay, start QEMU (restoring the state in
        *restore_from*, if given) and return the agent channel."""
        self._workdir = workdirs.fresh()
        workdir = self._workdir.path
        if restore_from is not None and _holds_data(restore_from / RAM_FILE):
            # copy-on-write over the saved RAM: nothing to load, and shared pages
            cfg = self._config(workdir, str(restore_from / RAM_FILE), memory_shared=False)
        elif restore_from is not None:
            # the RAM is in the state's stream (saved from RAM that was no file of its
            # own): anonymous memory takes it in; mapping the empty file instead makes
            # QEMU fault in a page of it for every zero page it checks (3.5 s, not 0.2)
            cfg = self._config(workdir, ANONYMOUS_RAM, memory_shared=False)
        else:
            cfg = self._config(workdir, os.path.join(workdir, RAM_FILE))
        if restore_from is not None:
            backing, backing_format = str(restore_from / ROOT_FILE), "qcow2"
        else:
            backing, backing_format = str(self.spec.image.root), "raw"
        try:
            make_root_overlay(cfg.root_overlay, backing, backing_format)
        except CommandError as e:
            self.kill()
            raise LaunchError(f"cannot create the root overlay: {e}") from None
        self.machine = QemuMachine(cfg, Path(workdir), incoming=restore_from is not None,
                                   owner=self.spec.appliance_id, hold_fds=self._hold())
        try:
            sock = self.machine.start(timeout=30)
            if restore_from is not None:
                if self._pending is not None:
                    layout, overlays = self._pending
                    bring_overlays(overlays, layout, workdir)
                    self._replay(self.machine, layout)
                    self._pending = None
                self.machine.restore_state(restore_from / STATE_FILE, timeout=timeout)
        except BaseException:
            self.kill()
            raise
        return sock

    def _hold(self) -> tuple[int, ...]:
        """What QEMU inherits: for a detached appliance, the work directory's lock, so
        that the directory is not cleaned up while QEMU runs."""
        if not self.spec.detached or self._workdir is None:
            return ()
        return (self._workdir.lock_fd,)

    def adopt(self, record: RuntimeRecord, timeout: float) -> tuple[socket.socket, str]:
        """Take over the detached appliance whose QEMU and work directory and sockets
        runtime record *record* names: see :meth:`.QemuMachine.adopt`.  Returns the
        agent channel and the accelerator QEMU uses; :class:`LaunchError` if it cannot
        be had."""
        if record.pid is None:
            raise LaunchError(f"appliance {record.id}: its record names no QEMU process")
        pid, workdir = record.pid, record.workdir
        qmp_socket, agent_socket = record.qmp_socket, record.agent_socket
        try:
            self._workdir = workdirs.WorkDir.join(workdir)
        except OSError as e:
            raise LaunchError(f"the work directory {workdir} of QEMU (pid {pid}) cannot be "
                              f"held: {e.strerror or e}") from None
        gen = Generation.of(qmp_socket)  # qmp.sock, or qmp-N.sock (migrated)
        self._generation = gen.number
        cfg = replace(self._config(workdir), qmp_socket=qmp_socket, agent_socket=agent_socket,
                      console_log=gen.console_log)
        machine = QemuMachine(cfg, Path(workdir), owner=self.spec.appliance_id,
                              log_name=gen.name("qemu", ".log"))
        try:
            sock = machine.adopt(pid, timeout)
            ram, shared = _memory_of(machine)
            kvm = machine.execute("query-kvm").get("enabled")
        except BaseException:
            machine.close()
            self._workdir.release()
            self._workdir = None
            raise
        self.spec = replace(self.spec, accel="kvm" if kvm else "tcg")
        machine.cfg = replace(self._config(workdir, ram, shared),
                              qmp_socket=cfg.qmp_socket, agent_socket=cfg.agent_socket,
                              console_log=cfg.console_log)
        self.machine = machine
        return sock, self.spec.accel

    def release(self) -> None:
        """Let go of a detached appliance: close this process's connections to it and
        its hold on the work directory; QEMU runs on, for the next process."""
        if self.machine is not None:
            self.machine.close()
            self.machine = None
        if self._workdir is not None:
            self._workdir.release()
            self._workdir = None

    def is_running(self) -> bool:
        return self.machine is not None and self.machine.is_running()

    def death_report(self) -> str:
        if self.machine is None:
            return "QEMU was not started"
        status = self.machine.wait_exit(2)
        state = "QEMU is still running" if status is None else f"QEMU exited ({status})"
        return f"{state}\n{self.machine.log_tail()}"

    def error(self, message: str, cls: type[QemuError] = QemuError) -> QemuError:
        if self.machine is None:
            return cls(message)
        return self.machine.error(message, cls)

    def shutdown(self, timeout: float) -> None:
        if self.machine is not None:
            self.machine.shutdown(timeout=timeout)
        self._cleanup()

    def kill(self) -> None:
        if self.machine is not None:
            with contextlib.suppress(Exception):
                self.machine.kill()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._workdir is not None:
            self._workdir.remove()

    def _running(self) -> QemuMachine:
        if self.machine is None:
            raise QemuError("QEMU is not running")
        return self.machine

    # ---- slots

    def attach_disk(self, index: int, drive: DriveSpec, timeout: float) -> None:
        """Plug *drive*; a throwaway drive (read-only, or ``overlay``) over a qcow2
        overlay of its own in the work directory, removed again on failure."""
        machine = self._running()
        overlay = size = None
        if drive.throwaway:
            size = virtual_size(drive)
            overlay = self._overlay_path(index)
        try:
            if overlay is not None:  # QEMU writes the qcow2 into it: no process
                os.close(os.open(overlay, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                 0o600))
            machine.attach(index, drive, overlay, timeout=timeout, overlay_size=size)
        except BaseException:
            self._drop_overlay(index)
            raise

    def detach_disk(self, index: int, timeout: float) -> None:
        self._running().detach(index, timeout=timeout)
        self._drop_overlay(index)

    def clean_slot(self, index: int, timeout: float) -> bool:
        return self._running().clean(index, timeout)

    def attach_vcpu(self, vcpu: int, timeout: float) -> None:
        self._running().attach_vcpu(vcpu, timeout=timeout)

    def vcpu_removal_refused(self) -> str:
        """Nothing: QEMU's own unplug is confirmed by asking QEMU, not by an event."""
        return ""

    def detach_vcpu(self, vcpu: int, timeout: float) -> None:
        self._running().detach_vcpu(vcpu, timeout=timeout)

    def nic_slots_in_use(self, timeout: float) -> frozenset[int]:
        return self._running().nic_slots_in_use(timeout=timeout)

    def attach_nic(self, slot: int, nic: NicSpec, timeout: float) -> None:
        """Plug NIC slot *slot*; a tap NIC's device is opened here and its descriptor
        handed to QEMU."""
        machine = self._running()
        fd = open_tap(nic.tap) if nic.network == "tap" and nic.tap else None
        try:
            machine.attach_nic(slot, nic, fd, timeout=timeout)
        finally:
            if fd is not None:
                os.close(fd)

    def detach_nic(self, slot: int, timeout: float) -> None:
        self._running().detach_nic(slot, timeout=timeout)

    def export_disks(self, exports: list[tuple[int, str, str]], started: Callable[[], None],
                     progress: Callable[[int, int], None] | None, timeout: float) -> None:
        self._running().export_disks(exports, started, progress, timeout)

    def snapshot_disks(self, overlays: list[tuple[int, str]], timeout: float) -> None:
        """Put slots' disks on new overlay files, all at one instant (see
        :meth:`.QemuMachine.snapshot`)."""
        self._running().snapshot(overlays, timeout)

    def disk_size(self, index: int, timeout: float) -> int:
        return self._running().disk_size(index, timeout)

    def save(self, directory: Path, timeout: float) -> None:
        """Stop the VM, save its devices' state, copy its root overlay (stopping flushed
        it) and move its RAM file into *directory*; then stop QEMU (its RAM is the
        state now).  If anything fails, the VM runs on as it was."""
        self.save_appliance(directory, Layout(), timeout)

    # ---- an appliance's layout in another process

    def _replay(self, machine: QemuMachine, layout: Layout) -> None:
        """Plug *layout* into *machine*, a QEMU waiting for a state (``-incoming``): the
        same slots (each over its throwaway overlay in the work directory, if it has
        one), vCPUs and NICs, with the same ids, as the state expects."""
        for index, drive in layout.disks:
            machine.attach(index, drive, self._overlay_path(index) if drive.throwaway
                           else None, timeout=30)
        for vcpu in layout.vcpus:
            machine.attach_vcpu(vcpu, timeout=30)
        for slot, nic in layout.nics:
            fd = open_tap(nic.tap) if nic.network == "tap" and nic.tap else None
            try:
                machine.attach_nic(slot, nic, fd, timeout=30)
            finally:
                if fd is not None:
                    os.close(fd)

    def restore_layout(self, layout: Layout, directory: Path) -> None:
        """Make the next :meth:`start` (from *directory*, saved by
        :meth:`save_appliance`) plug *layout* before it restores the state."""
        self._pending = (layout, directory)

    def save_appliance(self, directory: Path, layout: Layout, timeout: float,
                       exports: Sequence[tuple[int, str, str]] = (),
                       live: bool = False) -> socket.socket | None:
        """Save the running appliance with what is plugged (*layout*) into *directory*:
        as :meth:`save`, plus each throwaway overlay (what the guest wrote to a
        read-only slot).  RAM the guest ran on a file of its own (a cold-booted or
        migrated appliance) is moved in as ``ram`` (with *live*: copied); RAM mapped
        from a saved state goes into the stream, over an empty ``ram``.  With
        *exports* (slot, target file made by the caller, its format), the VM is
        stopped first and those slots' disks are copied into the targets, so the
        copies match the saved memory.  QEMU is stopped after; with *live* the VM
        runs on instead, in the same process (None: the agent channel stays)."""
        machine = self._running()
        assert self._workdir is not None
        try:
            if exports:
                machine.execute("stop")
                machine.export_disks(list(exports), lambda: None, None, timeout)
            machine.save_state(directory / STATE_FILE, timeout=timeout)
            keep_overlays(self._workdir.path, layout, directory, ROOT_FILE,
                          str(self.spec.image.root))
            if machine.cfg.memory_shared:  # (the VM stands still: the RAM is of then)
                move_sparse(machine.cfg.memory_file, directory / RAM_FILE, keep=live)
            else:
                with open(directory / RAM_FILE, "wb") as f:
                    f.truncate(machine.cfg.memory_mb << 20)
        except BaseException:
            machine.resume()  # a stopped appliance would answer nothing
            raise
        if live:  # QEMU takes its images back from the finished migration, and runs
            machine.resume()
            return None
        self.kill()
        return None

    # ---- live migration

    def check_migration(self, params: MigrationParams) -> None:
        """Refuse, before copies are made or a process starts, what this backend
        cannot carry out (:func:`~.migration_plan.check_params`)."""
        check_params(params)

    def migrate(self, layout: Layout, params: MigrationParams,
                progress: Callable[[MigrationProgress], None] | None,
                timeout: float, copies: Mapping[int, DriveSpec] | None = None,
                ) -> tuple[socket.socket, MigrationProgress]:
        """Move the running VM into a new QEMU process on this host: started with the
        same command line and ``-incoming defer``, given the same slots, vCPUs and NICs
        (*layout*), with the same ids, before the stream arrives; then the live
        migration (*params*: ``uri``, ``bandwidth``, ``downtime_limit``,
        ``parallel_connections``).  Both processes share every image file (QEMU hands
        the locks over at the switch), except the slots in *copies*: the new process
        plugs each of those on its copy (a new, empty image file of the disk's size,
        made by the caller), the disk is mirrored into it over NBD before the memory
        moves (*progress* gets status ``copying-disks`` with their bytes
        meanwhile), and the mirrors end in step while both VMs stand still, before
        the new one starts.  Returns the new agent channel and QEMU's final
        ``query-migrate`` (read); the old process is gone.  On any failure the new process
        is killed and the VM runs on in the old one, on its own images."""
        source = self._running()
        assert self._workdir is not None
        workdir = self._workdir.path
        copies = dict(copies or {})
        deadline = time.monotonic() + timeout  # for the copy and the stream together
        gen = Generation(workdir, self._generation).next()
        self._generation = gen.number
        cfg = replace(source.cfg, qmp_socket=gen.qmp_socket, agent_socket=gen.agent_socket,
                      console_log=gen.console_log, memory_file=gen.path(RAM_FILE),
                      memory_shared=True)
        uri = params.uri or f"unix:{gen.migrate_socket}"
        nbd = gen.nbd_socket
        owner = self.spec.appliance_id
        nodes = {index: (source.top_node(index), slot_ids(index, owner).fmt_node)
                 for index in copies}
        plan = qmp_plan(params.replace(uri=uri), nodes, nbd if copies else "")
        dest = QemuMachine(cfg, Path(workdir), incoming=True, owner=self.spec.appliance_id,
                           log_name=gen.name("qemu", ".log"), hold_fds=self._hold())
        sock: socket.socket | None = None
        try:
            sock = dest.start(timeout=30)
            self._replay(dest, replace(layout, disks=tuple(
                (index, copies.get(index, drive)) for index, drive in layout.disks)))
            dest.listen_incoming(plan.destination, uri)
            switch_over = None
            if copies:
                disk_progress = None if progress is None else (
                    lambda done, total: progress(MigrationProgress(
                        "copying-disks", disk_transferred=done, disk_total=total)))
                source.start_mirrors(plan.mirrors, plan.jobs, disk_progress, timeout)

                def tidy_destination() -> None:
                    for command, args in plan.finish_destination:
                        dest.execute(command, args)

                switch_over = (plan, tidy_destination)
            report = None if progress is None else \
                (lambda info: progress(MigrationProgress.from_qmp(info)))
            info = source.migrate_out(plan.source, report,
                                      max(deadline - time.monotonic(), 0.001), switch_over)
            dest.wait_incoming_done(timeout=60)
        except BaseException:
            if sock is not None:
                sock.close()
            dest.kill()
            for path in (cfg.memory_file, cfg.agent_socket, cfg.qmp_socket, nbd):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if source.is_running():
                if copies:
                    with contextlib.suppress(QemuError):
                        source.abandon_mirrors(plan.jobs, plan.targets)
                with contextlib.suppress(QemuError):
                    if not source.execute("query-status").get("running"):
                        source.resume()  # the stream ended, the new process did not run
            raise
        old_ram = source.cfg.memory_file
        # the old agent connection is the caller's to drain (AgentClient.switch): what
        # the old process passed on before it stopped is still in it
        source.agent_sock = None
        source.kill()
        self.machine = dest
        with contextlib.suppress(OSError):
            os.unlink(nbd)
        if old_ram and os.path.dirname(old_ram) == workdir:  # not a saved state's RAM
            with contextlib.suppress(OSError):
                os.unlink(old_ram)
        return sock, MigrationProgress.from_qmp(info)

    # ---- throwaway overlays

    def _overlay_path(self, index: int) -> str:
        assert self._workdir is not None
        return overlay_path(self._workdir.path, index)

    def _drop_overlay(self, index: int) -> None:
        if self._workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._overlay_path(index))


def _holds_data(path: Path) -> bool:
    """Whether file *path* has any data (not only holes); a missing file has none."""
    try:
        return os.stat(path).st_blocks > 0
    except FileNotFoundError:
        return False


def _memory_of(machine: QemuMachine) -> tuple[str, bool]:
    """The guest RAM of a running QEMU, as ``MachineConfig`` says it: the file it is
    mapped from and whether shared, or anonymous RAM (restored from a save whose RAM
    travelled in the stream), which has no file."""
    kind = machine.execute("qom-get", {"path": "/objects/ram0", "property": "type"})
    if kind == "memory-backend-ram":
        return ANONYMOUS_RAM, False
    ram = machine.execute("qom-get", {"path": "/objects/ram0", "property": "mem-path"})
    shared = machine.execute("qom-get", {"path": "/objects/ram0", "property": "share"})
    return str(ram), bool(shared)
