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
from pathlib import Path

from ...errors import LaunchError, QemuError
from ...host import workdir as workdirs
from ...host.cache import file_id
from ...host.proc import CommandError
from ...host.savedstate import ROOT_FILE, STATE_FILE
from ...model.drives import DriveSpec
from .. import VMSpec, WaitDisk
from ..overlays import make_overlay, make_root_overlay
from .machine import QemuMachine
from .qmpargs import MachineConfig, layout_key_command, warmup_blockdev_args, warmup_device_args

log = logging.getLogger(__name__)


class QemuBackend:
    """One appliance VM run by QEMU."""

    name = "qemu"
    saves_state = True
    #: QEMU saves a running VM and lets it run on.
    save_stops = False

    def __init__(self, spec: VMSpec) -> None:
        self.spec = spec
        self.machine: QemuMachine | None = None
        self._workdir: workdirs.WorkDir | None = None

    # ---- what the VM is

    def _config(self, workdir: str) -> MachineConfig:
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
            tcg_cache_mib=self.spec.tcg_cache_mib,
        )

    def layout_key(self) -> str:
        """The QEMU binary and the command line with every per-instance path blanked."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, file_id(self.spec.qemu),
                             layout_key_command(self._config("/"))]).encode())
        return h.hexdigest()

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
        cfg = self._config(workdir)
        if restore_from is not None:
            backing, backing_format = str(restore_from / ROOT_FILE), "qcow2"
        else:
            backing, backing_format = str(self.spec.image.root), "raw"
        try:
            make_root_overlay(cfg.root_overlay, backing, backing_format)
        except CommandError as e:
            self.kill()
            raise LaunchError(f"cannot create the root overlay: {e}") from None
        self.machine = QemuMachine(cfg, Path(workdir), incoming=restore_from is not None)
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

    def warm_up(self, wait_disk: WaitDisk, timeout: float) -> None:
        machine = self._running()
        machine.attach_args(0, warmup_blockdev_args(0), warmup_device_args(0), timeout=timeout)
        wait_disk(0, True)
        machine.detach(0, timeout=timeout)
        wait_disk(0, False)

    def save(self, directory: Path, timeout: float) -> None:
        """Stop the VM, save its state and copy its root overlay (stopping flushed it),
        then let it run again, whatever happened."""
        machine = self._running()
        assert self._workdir is not None
        try:
            machine.save_state(directory / STATE_FILE, timeout=timeout)
            shutil.copyfile(os.path.join(self._workdir.path, "root.qcow2"),
                            directory / ROOT_FILE)
        finally:
            machine.resume()  # a stopped appliance would answer nothing

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
