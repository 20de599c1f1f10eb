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
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from ...errors import LaunchError, QemuError
from ...host import workdir as workdirs
from ...host.cache import file_id
from ...host.proc import CommandError
from ...host.savedstate import RAM_FILE, ROOT_FILE, STATE_FILE
from ...host.tap import open_tap
from ...model.drives import DriveSpec
from ...model.nics import NicSpec
from .. import VMSpec
from ..overlays import make_overlay, make_root_overlay
from .machine import QemuMachine
from .qmpargs import MachineConfig, layout_key_command

log = logging.getLogger(__name__)


def move_sparse(source: str, destination: Path) -> None:
    """Move a file, leaving its zero blocks out (holes): the guest's RAM is mostly
    zeros (its kernel zeroes what it frees), and a hole costs neither disk nor a read."""
    block = 1 << 16
    zero = bytes(block)
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(block):
            if chunk == zero:
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
        dst.truncate()
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

    # ---- what the VM is

    def _config(self, workdir: str, memory_file: str = "@",
                memory_shared: bool = True) -> MachineConfig:
        return MachineConfig(
            qemu=self.spec.qemu,
            accel=self.spec.accel,
            kernel=str(self.spec.image.kernel),
            initrd=str(self.spec.image.initrd),
            root_overlay=os.path.join(workdir, "root.qcow2"),
            qmp_socket=os.path.join(workdir, "qmp.sock"),
            agent_socket=os.path.join(workdir, "agent.sock"),
            console_log=os.path.join(workdir, "console.log"),
            memory_mb=self.spec.memory_mb,
            max_vcpus=self.spec.max_vcpus,
            tcg_cache_mib=self.spec.tcg_cache_mib,
            memory_file=memory_file,
            memory_shared=memory_shared,
        )

    def layout_key(self) -> str:
        """The QEMU binary and the command line with every per-instance path blanked."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, file_id(self.spec.qemu),
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
        if restore_from is not None:
            # copy-on-write over the saved RAM: nothing to load, and shared pages
            cfg = self._config(workdir, str(restore_from / RAM_FILE), memory_shared=False)
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
                                   owner=self.spec.appliance_id)
        try:
            sock = self.machine.start(timeout=30)
            if restore_from is not None:
                self.machine.restore_state(restore_from / STATE_FILE, timeout=timeout)
        except BaseException:
            self.kill()
            raise
        return sock

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
        overlay = self._make_overlay(index, drive) if drive.throwaway else None
        try:
            machine.attach(index, drive, overlay, timeout=timeout)
        except BaseException:
            self._drop_overlay(index)
            raise

    def detach_disk(self, index: int, timeout: float) -> None:
        self._running().detach(index, timeout=timeout)
        self._drop_overlay(index)

    def attach_vcpu(self, vcpu: int, timeout: float) -> None:
        self._running().attach_vcpu(vcpu, timeout=timeout)

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

    def disk_size(self, index: int, timeout: float) -> int:
        return self._running().disk_size(index, timeout)

    def save(self, directory: Path, timeout: float) -> None:
        """Stop the VM, save its devices' state, copy its root overlay (stopping flushed
        it) and move its RAM file into *directory*; then stop QEMU (its RAM is the
        state now).  If anything fails, the VM runs on as it was."""
        machine = self._running()
        assert self._workdir is not None
        try:
            machine.save_state(directory / STATE_FILE, timeout=timeout)
            shutil.copyfile(os.path.join(self._workdir.path, "root.qcow2"),
                            directory / ROOT_FILE)
            move_sparse(machine.cfg.memory_file, directory / RAM_FILE)
        except BaseException:
            machine.resume()  # a stopped appliance would answer nothing
            raise
        self.kill()

    # ---- throwaway overlays

    def _overlay_path(self, index: int) -> str:
        assert self._workdir is not None
        return os.path.join(self._workdir.path, f"overlay-slot{index}.qcow2")

    def _make_overlay(self, index: int, drive: DriveSpec) -> str:
        path = self._overlay_path(index)
        make_overlay(drive, path)
        return path

    def _drop_overlay(self, index: int) -> None:
        if self._workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._overlay_path(index))
