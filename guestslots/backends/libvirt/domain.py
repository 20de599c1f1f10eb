"""The libvirt backend's domain: what the VM is (its XML configuration, name, layout
key, metadata), whether it runs, how it died, and stopping it.  The backend is split by
area, each a class deriving from the one before: :class:`DomainCore` (here) <-
:mod:`.lifecycle` (start, restore, adopt, release) <- :mod:`.devices` (slots, vCPUs,
NICs) <- :mod:`.jobs` (exports, snapshots) <- :mod:`.saving` <- :mod:`.migration` <-
:class:`~guestslots.backends.libvirt.LibvirtBackend`."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import select
import socket
import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import libvirt

from ...errors import GuestslotsError, LaunchError, QemuError
from ...host import workdir as workdirs
from ...host.cache import file_id
from ...host.owner import Owner
from ...host.qemuversion import reported_version
from .. import Layout, VMSpec
from ..common import log_tail
from ..workfiles import Generation, overlay_path, root_overlay
from . import bounded, connection
from .domxml import (
    DISKSET_NS,
    DomainConfig,
    diskset_metadata,
    domain_xml,
)
from .errors import monitor_lost

log = logging.getLogger(__name__)

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of Unix socket *sock*."""
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    struct.calcsize("3i")))
    return pid or None


def open_pidfd(pid: int | None) -> int | None:
    """A pidfd on *pid*, or None where there is none to have (remote QEMU, gone)."""
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


class DomainCore:
    """One appliance VM run as a transient libvirt domain.

    A detached one (``VMSpec.detached``, at a libvirt daemon) outlives its caller:
    QEMU listens on the agent socket, so any process can take it over
    (:meth:`adopt`), and a keeper process holds its work directory while QEMU runs
    (:meth:`.WorkDir.keep_while`).
    """

    name = "libvirt"
    saves_state = True
    #: libvirt's save stops the domain: a launch that saved restores what it saved.
    save_stops = True

    def __init__(self, spec: VMSpec, uri: str = "") -> None:
        self.spec = spec
        self.uri = uri
        self.domain: libvirt.virDomain | None = None
        #: Reserved on first use (:meth:`_name`): a saved state restores only under
        #: the name it was saved with.
        self._domain_name = ""
        self._workdir: workdirs.WorkDir | None = None
        self._conn: libvirt.virConnect | None = None
        #: The <disk> XML of every slot attached, as detach needs it.
        self._attached: dict[int, str] = {}
        #: Slots whose last attach or detach was abandoned (QEMU did not answer in
        #: time), with that call (None: it returned, its event did not come): libvirt
        #: may still carry it out, so the slot is cleaned before its next use, once
        #: the call has ended.
        self._unsure: dict[int, concurrent.futures.Future[object] | None] = {}
        #: A pidfd on the local QEMU process (None for a remote URI): readable once
        #: QEMU has exited, whether or not libvirt has told us yet.
        self._pidfd: int | None = None
        #: A saved appliance's layout and directory, for the next :meth:`start`.
        self._pending: tuple[Layout, Path] | None = None
        #: The domain whose metadata was last given the disk set, and that element.
        self._diskset_written: tuple[libvirt.virDomain, str] | None = None
        #: QEMU's pid as its agent connection says (SO_PEERCRED): any local libvirt's.
        self._qemu_pid: int | None = None
        #: Migrations so far: each new QEMU gets its own agent socket and console.
        self._generation = 0
        #: The agent socket of the running QEMU (a new one after each migration).
        self._agent_socket = ""
        #: A restore copies the saved root disk into the work directory (a live save
        #: restores at once from a directory that is not this VM's to keep).
        self._own_root = False

    # ---- what the VM is

    def _config(self, workdir: str, name: str | None = None,
                owner: Owner | None = None) -> DomainConfig:
        return DomainConfig(
            name=name or self.domain_name,
            owner=owner,
            accel=self.spec.accel,
            emulator=self.spec.qemu,
            kernel=str(self.spec.image.kernel),
            initrd=str(self.spec.image.initrd),
            root_backing=((str(self.spec.image.root), "raw"),),
            root_overlay=root_overlay(workdir),
            agent_socket=Generation(workdir).agent_socket,
            console_log=Generation(workdir).console_log,
            memory_mb=self.spec.memory_mb,
            tcg_cache_mib=self.spec.tcg_cache_mib,
            max_vcpus=self.spec.max_vcpus,
            detached=self.spec.detached,
            dac_label=connection.dac_label(self.uri),
        )

    def _connect(self) -> libvirt.virConnect:
        if self._conn is None:
            try:
                self._conn = connection.connect(self.uri)
            except libvirt.libvirtError as e:
                raise LaunchError(f"libvirt: cannot connect to {self.uri or connection.uri()}: "
                                  f"{e.get_error_message()} (code {e.get_error_code()})"
                                  ) from None
        return self._conn

    def _layout(self) -> str:
        """libvirt's version, the emulator and the version it reports, and the domain
        XML with every per-instance name and path blanked, and without the DAC label
        (the host's choice per daemon: a state saved at one daemon restores at
        another)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, libvirt.getVersion(), file_id(self.spec.qemu),
                             reported_version(self.spec.qemu),
                             domain_xml(replace(self._config("/", name="@"),
                                                dac_label=""))]).encode())
        return h.hexdigest()

    @property
    def domain_name(self) -> str:
        """``guestslots-LAYOUT-N``: the first N free at the connection (the N-th
        appliance of a layout running at once has the N-th saved state)."""
        if not self._domain_name:
            self._domain_name = connection.reserve_name(
                self._connect(), f"guestslots-{self._layout()[:10]}")
        return self._domain_name

    def layout_key(self) -> str:
        """The layout (:meth:`_layout`) and the domain's name, which libvirt restores a
        saved state under."""
        return hashlib.sha256(f"{self._layout()}/{self.domain_name}".encode()).hexdigest()

    def note_disk_set(self, indices: Sequence[int], timeout: float) -> None:
        """Keep the disk set in the domain's ``<metadata>`` too (namespace
        :data:`.DISKSET_NS`: ``virsh metadata DOMAIN urn:guestslots:diskset:1``), so
        libvirt's tools and a saved or migrated domain carry it; written only when it
        changed (or the domain is a new one)."""
        domain = self.domain
        if domain is None:
            return
        xml = diskset_metadata(indices)
        written = self._diskset_written
        if written is not None and written[0] is domain and written[1] == xml:
            return
        try:
            bounded.call(lambda: domain.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, "guestslots-diskset",
                DISKSET_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE), timeout,
                "libvirt setMetadata (the disk set)", self._log_tail())
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return  # gone: its death is reported by the call that finds it
            raise GuestslotsError(f"libvirt setMetadata: {e}") from None
        self._diskset_written = (domain, xml)

    def runtime_info(self) -> dict[str, str]:
        return {"uri": self.uri or connection.uri(), "domain": self.domain_name
                if self.domain is not None else "", "agent_socket": self._agent_socket}

    @property
    def pid(self) -> int | None:
        """QEMU's pid: the peer of its agent connection, or the embedded driver's pid
        file before that connection."""
        root = connection.root()
        if self.domain is None:
            return None
        if self._qemu_pid is not None:
            return self._qemu_pid
        if root is None:
            return None
        try:
            return int((Path(root) / "run" / "qemu" / f"{self.domain_name}.pid").read_text())
        except (OSError, ValueError):
            return None

    @property
    def workdir(self) -> str | None:
        return self._workdir.path if self._workdir else None

    def _overlay_path(self, index: int) -> str:
        assert self._workdir is not None
        return overlay_path(self._workdir.path, index)

    def _forget_process(self) -> None:
        """Let go of the pidfd on the QEMU process this domain had (it ended, or the
        domain moved to another process)."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def is_running(self) -> bool:
        """Whether QEMU runs: its process (its pidfd; libvirt learns of its end later),
        then libvirt's word."""
        if self.domain is None:
            return False
        if self._pidfd is not None and select.select([self._pidfd], [], [], 0)[0]:
            return False
        try:
            return bool(self.domain.isActive())
        except libvirt.libvirtError:
            return False

    def _lost(self, error: libvirt.libvirtError) -> bool:
        """Whether *error* says QEMU is gone rather than that it refused the request.
        libvirt may report the monitor's end (``Unable to read from monitor``) before
        it marks the domain stopped, so the process itself (its pidfd) is asked; as it
        closes its sockets just before it exits, an error about the monitor waits (up
        to 5 s) for that exit."""
        if not self.is_running():
            return True
        if not monitor_lost(error.get_error_domain(), error.get_error_code(),
                            error.get_error_message() or ""):
            return False
        if self._pidfd is not None:
            select.select([self._pidfd], [], [], 5)
        return True

    def _log_tail(self) -> str:
        parts = []
        root = connection.root()
        if root is not None:
            qemu = log_tail(Path(root) / "log" / "qemu" / f"{self.domain_name}.log", 10)
            if qemu:
                parts.append("[qemu] " + qemu.replace("\n", "\n[qemu] "))
        if self._workdir is not None:
            console = log_tail(Path(Generation(self._workdir.path,
                                               self._generation).console_log), 20)
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
            self._qemu_pid = None
        if self._domain_name:
            connection.forget(self._domain_name)
            connection.release_name(self._domain_name)
            self._domain_name = ""
        self._forget_process()
        if self._workdir is not None:
            self._workdir.remove()

    def _running(self) -> libvirt.virDomain:
        if self.domain is None:
            raise QemuError("the appliance's domain is not running")
        return self.domain
