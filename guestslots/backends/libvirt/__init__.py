"""The libvirt backend: the appliance as a transient libvirt domain.

By default through libvirt's embedded QEMU driver (no daemon, see
:mod:`.connection`); the domain XML is built with lxml from the same
configuration as QEMU's command line (:mod:`.domxml`).  Slots are plugged with
``attachDeviceFlags`` and unplugged with ``detachDeviceFlags``, the removal
confirmed by libvirt's device-removed event, never assumed.

No saved states yet (:attr:`LibvirtBackend.saves_state` is false): libvirt
restores a saved domain only under its saved name and uuid, so one saved state
could run once at a time per driver, and its restore took 4.7 s here against
QEMU's 0.3 s.  Launches boot cold.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import socket
import uuid
from pathlib import Path

from ...host.cache import cache_root

# The embedded driver logs to standard error (where a CLI's one-line errors go) unless
# told otherwise, and libvirt reads this when it is imported: errors go to a file in
# the cache instead (the calls raise them anyway).
cache_root().mkdir(parents=True, exist_ok=True)
os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", f"4:file:{cache_root() / 'libvirt.log'}")

import libvirt

from ...errors import DriveError, LaunchError, QemuError, QemuTimeout
from ...host import workdir as workdirs
from ...host.cache import file_id
from ...host.proc import CommandError
from ...model.drives import DriveSpec
from .. import VMSpec, WaitDisk
from ..overlays import make_overlay, make_root_overlay
from . import connection
from .domxml import DomainConfig, disk_xml, domain_xml, slot_alias

log = logging.getLogger(__name__)

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


class LibvirtBackend:
    """One appliance VM run as a transient libvirt domain."""

    name = "libvirt"
    saves_state = False  # see the module's docstring

    def __init__(self, spec: VMSpec, uri: str = "") -> None:
        self.spec = spec
        self.uri = uri
        self.domain: libvirt.virDomain | None = None
        self.domain_name = f"guestslots-{uuid.uuid4().hex[:12]}"
        self._workdir: workdirs.WorkDir | None = None
        self._conn: libvirt.virConnect | None = None
        #: The <disk> XML of every slot attached, as detach needs it.
        self._attached: dict[int, str] = {}
        #: A pidfd on the local QEMU process (None for a remote URI): readable once
        #: QEMU has exited, whether or not libvirt has told us yet.
        self._pidfd: int | None = None

    # ---- what the VM is

    def _config(self, workdir: str, name: str | None = None) -> DomainConfig:
        return DomainConfig(
            name=name or self.domain_name,
            accel=self.spec.accel,
            emulator=self.spec.qemu,
            kernel=str(self.spec.image.kernel),
            initrd=str(self.spec.image.initrd),
            root_backing=((str(self.spec.image.root), "raw"),),
            root_overlay=os.path.join(workdir, "root.qcow2"),
            agent_socket=os.path.join(workdir, "agent.sock"),
            console_log=os.path.join(workdir, "console.log"),
            memory_mb=self.spec.memory_mb,
            tcg_cache_mib=self.spec.tcg_cache_mib,
        )

    def layout_key(self) -> str:
        """libvirt's version, the emulator, and the domain XML with every per-instance
        name and path blanked."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, libvirt.getVersion(), file_id(self.spec.qemu),
                             domain_xml(self._config("/", name="@"))]).encode())
        return h.hexdigest()

    @property
    def pid(self) -> int | None:
        root = connection.root()
        if self.domain is None or root is None:
            return None
        try:
            return int((Path(root) / "run" / "qemu" / f"{self.domain_name}.pid").read_text())
        except (OSError, ValueError):
            return None

    @property
    def workdir(self) -> str | None:
        return self._workdir.path if self._workdir else None

    # ---- lifecycle

    def start(self, restore_from: Path | None, timeout: float) -> socket.socket:
        if restore_from is not None:
            raise LaunchError("the libvirt backend does not restore saved states yet")
        self._workdir = workdirs.fresh()
        workdir = self._workdir.path
        cfg = self._config(workdir)
        backing, backing_format = cfg.root_backing[0]
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            make_root_overlay(cfg.root_overlay, backing, backing_format)
            listener.bind(cfg.agent_socket)
            listener.listen(1)
            self._conn = connection.connect(self.uri)
            connection.stop(self.domain_name).clear()
            self.domain = self._conn.createXML(domain_xml(cfg), 0)
            self._pidfd = _open_pidfd(self.pid)
            connection.save_capabilities()
            listener.settimeout(timeout)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise self.error("QEMU did not connect the agent channel", LaunchError) from None
            return conn
        except CommandError as e:
            self.kill()
            raise LaunchError(f"cannot create the root overlay: {e}") from None
        except libvirt.libvirtError as e:
            self.kill()
            raise self.error(f"libvirt: {e.get_error_message()} (code {e.get_error_code()})",
                             LaunchError) from None
        except BaseException:
            self.kill()
            raise
        finally:
            listener.close()

    def is_running(self) -> bool:
        if self.domain is None:
            return False
        try:
            return bool(self.domain.isActive())
        except libvirt.libvirtError:
            return False

    def _log_tail(self) -> str:
        parts = []
        root = connection.root()
        if root is not None:
            qemu = _tail(Path(root) / "log" / "qemu" / f"{self.domain_name}.log", 10)
            if qemu:
                parts.append("[qemu] " + qemu.replace("\n", "\n[qemu] "))
        if self._workdir is not None:
            console = _tail(Path(self._workdir.path) / "console.log", 20)
            if console:
                parts.append("[console] " + console.replace("\n", "\n[console] "))
        return "\n".join(parts)

    def death_report(self) -> str:
        """Why the channel died: libvirt's word on how the domain stopped. QEMU's end
        reaches libvirt after the channel's (and later still on a loaded machine), so
        wait for the process itself first (its pidfd), then for libvirt's event."""
        stopped = connection.stop(self.domain_name)
        if self._pidfd is not None:
            exited = bool(select.select([self._pidfd], [], [], 2)[0])
        else:
            exited = stopped.wait(2)
        if exited and stopped.wait(10):
            reason = connection.stop_reasons.get(self.domain_name, "stopped")
            state = f"QEMU exited (libvirt: {reason})"
        elif exited:
            state = "QEMU exited (libvirt: not reported within 10 s)"
        else:
            state = "QEMU is still running"
        return f"{state}\n{self._log_tail()}"

    def error(self, message: str, cls: type[QemuError] = QemuError) -> QemuError:
        return cls(message, log_tail=self._log_tail())

    def shutdown(self, timeout: float) -> None:
        """The guest powers itself off (``on_poweroff`` destroys the domain): wait for
        libvirt to report the domain stopped, then destroy whatever is left."""
        if self.domain is not None:
            connection.stop(self.domain_name).wait(timeout)
        self.kill()

    def kill(self) -> None:
        if self.domain is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.domain.destroy()
            self.domain = None
        connection.forget(self.domain_name)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._workdir is not None:
            self._workdir.remove()

    def _running(self) -> libvirt.virDomain:
        if self.domain is None:
            raise QemuError("the appliance's domain is not running")
        return self.domain

    # ---- slots

    def _overlay_path(self, index: int) -> str:
        assert self._workdir is not None
        return os.path.join(self._workdir.path, f"overlay-slot{index}.qcow2")

    def attach_disk(self, index: int, drive: DriveSpec, timeout: float) -> None:
        domain = self._running()
        overlay = None
        if drive.throwaway:
            overlay = self._overlay_path(index)
            make_overlay(drive, overlay)
        xml = disk_xml(index, drive, overlay)
        try:
            domain.attachDeviceFlags(xml, LIVE)
            self._attached[index] = xml
        except libvirt.libvirtError as e:
            if overlay is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
            if not self.is_running():
                raise self.error(f"the appliance died during the hotplug of slot {index}: "
                                 f"{e.get_error_message()}") from None
            raise DriveError(drive.path, f"libvirt cannot attach it to slot {index}: "
                             f"{e.get_error_message()}") from None

    def detach_disk(self, index: int, timeout: float) -> None:
        domain = self._running()
        alias = slot_alias(index)
        removed = connection.removal(self.domain_name, alias)
        # the whole <disk> as attached: libvirt 9.0 crashes on a <disk> without its
        # <source> and <target>
        xml = self._attached.get(index)
        if xml is None:
            raise QemuError(f"slot {index} has no disk attached by this backend")
        try:
            domain.detachDeviceFlags(xml, LIVE)
        except libvirt.libvirtError as e:
            raise QemuError(f"libvirt cannot detach slot {index}: "
                            f"{e.get_error_message()}") from None
        if not removed.wait(timeout):
            raise QemuTimeout(f"unplug of slot {index}: libvirt did not report the device "
                              f"removed in {timeout:g} s")
        del self._attached[index]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._overlay_path(index))

    def warm_up(self, wait_disk: WaitDisk, timeout: float) -> None:
        raise QemuError("the libvirt backend saves no states, so it needs no warm-up")

    def save(self, directory: Path, timeout: float) -> None:
        raise QemuError("the libvirt backend does not save states yet")


def _open_pidfd(pid: int | None) -> int | None:
    """A pidfd on *pid*, or None where there is none to have (remote QEMU, gone)."""
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None
