"""The libvirt backend: the appliance as a transient libvirt domain.

By default through libvirt's embedded QEMU driver (no daemon, see
:mod:`.connection`); the domain XML is built with lxml from the same
configuration as QEMU's command line (:mod:`.domxml`).  Slots are plugged with
``attachDeviceFlags`` and unplugged with ``detachDeviceFlags``, the removal
confirmed by libvirt's device-removed event, never assumed.

Saved states through libvirt's own ``saveFlags`` / ``restoreFlags``, kept and
verified by :mod:`guestslots.host.savedstate` like the QEMU backend's.  libvirt
restores a state only under the name and uuid it was saved with, so domains are
named ``guestslots-LAYOUT-N`` with the first N free at the connection: the N-th
appliance of a layout running at once boots cold once, and restores its own
state from then on.  libvirt's save stops the domain, so the launch that saved
restores what it saved (which proves the state before any other launch uses it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import select
import shutil
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ...host.cache import cache_root

# The embedded driver logs to standard error (where a CLI's one-line errors go) unless
# told otherwise, and libvirt reads this when it is imported: errors go to a file in
# the cache instead (the calls raise them anyway).
cache_root().mkdir(parents=True, exist_ok=True)
os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", f"4:file:{cache_root() / 'libvirt.log'}")

import libvirt
from lxml import etree

from ...errors import DriveError, GuestslotsError, LaunchError, QemuError, QemuTimeout
from ...host import owner
from ...host import workdir as workdirs
from ...host.cache import file_id
from ...host.owner import Owner
from ...host.proc import CommandError
from ...host.savedstate import ROOT_FILE, STATE_FILE
from ...model.cpus import LIBVIRT_UNSUPPORTED, VcpuError
from ...model.drives import DriveSpec
from ...model.migration import (
    LIBVIRT_DEST_XML,
    LIBVIRT_URI,
    MigrationParamError,
    MigrationParams,
    MigrationProgress,
    libvirt_params,
)
from ...model.names import index_to_letters
from ...model.nics import NicError, NicSpec
from ...model.runtime import RuntimeRecord
from ...model.snapshots import SnapshotError
from .. import Layout, VMSpec
from ..overlays import make_overlay, make_root_overlay
from . import bounded, connection
from .domxml import (
    DISKSET_NS,
    DomainConfig,
    backup_xml,
    disk_xml,
    diskset_metadata,
    domain_xml,
    interface_xml,
    is_detached,
    live_disk,
    live_interface,
    migration_xml,
    nic_alias,
    nic_slots_in_use,
    restore_xml,
    slot_alias,
    snapshot_xml,
)
from .errors import monitor_lost

log = logging.getLogger(__name__)

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


class LibvirtBackend:
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
            root_overlay=os.path.join(workdir, "root.qcow2"),
            agent_socket=os.path.join(workdir, "agent.sock"),
            console_log=os.path.join(workdir, "console.log"),
            memory_mb=self.spec.memory_mb,
            tcg_cache_mib=self.spec.tcg_cache_mib,
            detached=self.spec.detached,
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
        """libvirt's version, the emulator, and the domain XML with every per-instance
        name and path blanked."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, libvirt.getVersion(), file_id(self.spec.qemu),
                             domain_xml(self._config("/", name="@"))]).encode())
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

    # ---- lifecycle

    def start(self, restore_from: Path | None, timeout: float) -> socket.socket:
        """Start the domain: created from its XML, or restored from the state saved in
        *restore_from* (under its saved name, with this launch's paths); return the
        agent channel once QEMU has connected it."""
        conn = self._connect()
        self._workdir = workdirs.fresh()
        workdir = self._workdir.path
        cfg = self._config(workdir, owner=owner.current())
        if restore_from is not None:
            cfg = replace(cfg, root_backing=((str(restore_from / ROOT_FILE), "qcow2"),
                                             *cfg.root_backing))
        backing, backing_format = cfg.root_backing[0]
        listener = None if self.spec.detached else socket.socket(socket.AF_UNIX,
                                                                 socket.SOCK_STREAM)
        try:
            make_root_overlay(cfg.root_overlay, backing, backing_format)
            if listener is not None:
                listener.bind(cfg.agent_socket)
                listener.listen(1)
            connection.stop(self.domain_name).clear()
            if restore_from is None:
                self.domain = conn.createXML(domain_xml(cfg), 0)
            else:
                state = str(restore_from / STATE_FILE)
                saved = conn.saveImageGetXMLDesc(state, 0)
                moved = self._bring_overlays(saved)
                try:
                    xml = restore_xml(saved, cfg, moved)
                except ValueError as e:
                    raise LaunchError(f"the saved state {state} is not this appliance's: "
                                      f"{e}") from None
                conn.restoreFlags(state, xml, libvirt.VIR_DOMAIN_SAVE_RUNNING)
                self.domain = conn.lookupByName(self.domain_name)
                if self._pending is not None:
                    for index, drive in self._pending[0].disks:
                        self._attached[index] = disk_xml(
                            index, drive, self._overlay_path(index) if drive.throwaway
                            else None, owner=self.spec.appliance_id)
                    self._pending = None
            self._pidfd = _open_pidfd(self.pid)
            connection.save_capabilities()
            self._agent_socket = cfg.agent_socket
            if listener is None:
                sock = self._connect_agent(cfg.agent_socket, timeout, LaunchError)
                self._held_by_keeper(sock)
                return sock
            listener.settimeout(timeout)
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                raise self.error("QEMU did not connect the agent channel", LaunchError) from None
            self._qemu_pid = _peer_pid(sock)
            if self._pidfd is None:
                self._pidfd = _open_pidfd(self._qemu_pid)
            return sock
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
            if listener is not None:
                listener.close()

    def _connect_agent(self, path: str, timeout: float,
                       cls: type[QemuError] = QemuError) -> socket.socket:
        """Connect to the agent socket a detached appliance's QEMU listens on (one
        process at a time: QEMU serves one connection)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise self.error(f"cannot connect to the agent channel {path}: "
                             f"{e.strerror or e}", cls) from None
        sock.settimeout(None)
        return sock

    def _held_by_keeper(self, sock: socket.socket) -> None:
        """Keep the work directory for as long as the detached domain's QEMU runs,
        whoever holds the appliance: QEMU is the peer of its agent connection (it
        listens there itself, on the socket libvirt hands it)."""
        assert self._workdir is not None
        self._qemu_pid = _peer_pid(sock)
        if self._qemu_pid is None:
            raise self.error(f"the QEMU process of domain {self.domain_name} is not on "
                             "this host: a detached appliance runs at a local libvirt",
                             LaunchError)
        if self._pidfd is None:
            self._pidfd = _open_pidfd(self._qemu_pid)
        try:
            self._workdir.keep_while(self._qemu_pid)
        except OSError as e:
            raise self.error(str(e), LaunchError) from None

    def adopt(self, record: RuntimeRecord, timeout: float) -> tuple[socket.socket, str]:
        """Take over the detached appliance of runtime record *record*: its domain at
        its libvirt, its work directory, and the agent socket its QEMU listens on;
        the slots' disks are read from the live domain.  Returns the agent channel and
        the accelerator; :class:`LaunchError` if it cannot be had (and nothing of it
        is kept)."""
        where = f"appliance {record.id}"
        if not record.domain or not record.agent_socket:
            raise LaunchError(f"{where}: its record names no libvirt domain and agent "
                              "socket (not a detached libvirt appliance)")
        self.uri = record.uri
        conn = self._connect()
        try:
            domain = bounded.call(lambda: conn.lookupByName(record.domain), timeout,
                                  f"looking up domain {record.domain}")
            live = bounded.call(lambda: domain.XMLDesc(0), timeout,
                                f"reading domain {record.domain}")
        except libvirt.libvirtError as e:
            raise LaunchError(f"{where}: libvirt at {record.uri} has no running domain "
                              f"{record.domain}: {e.get_error_message()}") from None
        if not is_detached(live):
            raise LaunchError(f"{where}: domain {record.domain} at {record.uri} is not a "
                              "detached appliance's")
        try:
            workdir = workdirs.WorkDir.join(record.workdir)
        except OSError as e:
            raise LaunchError(f"{where}: its work directory {record.workdir} cannot be "
                              f"held: {e.strerror or e}") from None
        try:
            sock = self._connect_agent(record.agent_socket, timeout, LaunchError)
        except BaseException:
            workdir.release()
            raise
        self._workdir, self.domain, self._domain_name = workdir, domain, record.domain
        connection.stop(record.domain).clear()  # its stop is awaited at shutdown
        self._agent_socket = record.agent_socket
        gen = Path(record.agent_socket).stem.partition("-")[2]  # agent, or agent-N (migrated)
        self._generation = int(gen) if gen.isdigit() else 0
        self._qemu_pid = _peer_pid(sock)
        self._pidfd = _open_pidfd(self._qemu_pid)
        for slot in record.slots:
            disk = live_disk(live, slot_alias(slot.index, self.spec.appliance_id))
            if disk is not None:
                self._attached[slot.index] = disk
        kvm = etree.fromstring(live.encode()).get("type") == "kvm"
        self.spec = replace(self.spec, accel="kvm" if kvm else "tcg")
        return sock, self.spec.accel

    def release(self) -> None:
        """Let go of a detached appliance: its domain runs on at its libvirt (the keeper
        holds its work directory), for the next process."""
        if self._domain_name:
            connection.forget(self._domain_name)
            connection.release_name(self._domain_name)
        self.domain = None
        self._qemu_pid = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._workdir is not None:
            self._workdir.release()
            self._workdir = None
        self._attached.clear()

    def _bring_overlays(self, saved_xml: str) -> dict[str, str]:
        """Copy the pending layout's throwaway overlays into this work directory; the
        saved domain's paths of them -> their new paths, and of each slot image the
        layout has elsewhere (a copy saved with the disk set) -> where it is."""
        if self._pending is None:
            return {}
        layout, directory = self._pending
        drives = dict(layout.disks)
        moved = {}
        for disk in etree.fromstring(saved_xml.encode()).iterfind("devices/disk"):
            source, alias = disk.find("source"), disk.find("alias")
            if source is None:
                continue
            path = source.get("file", "")
            name = os.path.basename(path)
            for index, drive in layout.disks:
                if drive.throwaway and name == f"overlay-slot{index}.qcow2":
                    shutil.copyfile(directory / name, self._overlay_path(index))
                    moved[path] = self._overlay_path(index)
            for index, drive in drives.items():
                top = drive.chain[-1] if drive.chain else drive.path  # what the guest sees
                if (alias is not None and not drive.throwaway and path != top
                        and alias.get("name") == slot_alias(index, self.spec.appliance_id)):
                    moved[path] = top
        return moved

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
            self._qemu_pid = None
        if self._domain_name:
            connection.forget(self._domain_name)
            connection.release_name(self._domain_name)
            self._domain_name = ""
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
        """Plug *drive* at SCSI target *index*.  Past *timeout* (QEMU stopped or stuck;
        libvirt itself would wait forever) :class:`QemuTimeout`, and the slot is
        cleaned before its next use, whatever libvirt did meanwhile."""
        domain = self._running()
        what = f"hotplug of slot {index} ({drive.path})"
        if index in self._unsure:
            self._clean_slot(index, timeout, what)
        overlay = None
        if drive.throwaway:
            overlay = self._overlay_path(index)
            make_overlay(drive, overlay)
        xml = disk_xml(index, drive, overlay, owner=self.spec.appliance_id)
        try:
            self._guarded(index, lambda: domain.attachDeviceFlags(xml, LIVE), timeout, what)
            self._attached[index] = xml
        except BaseException as e:
            if overlay is not None and index not in self._unsure:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
            if not isinstance(e, libvirt.libvirtError):
                raise
            if self._lost(e):
                raise self.error(f"the appliance died during the hotplug of slot {index}: "
                                 f"{e.get_error_message()}") from None
            raise DriveError(drive.path, f"libvirt cannot attach it to slot {index}: "
                             f"{e.get_error_message()}") from None

    def attach_vcpu(self, vcpu: int, timeout: float) -> None:
        raise VcpuError(vcpu, LIBVIRT_UNSUPPORTED)

    def detach_vcpu(self, vcpu: int, timeout: float) -> None:
        raise VcpuError(vcpu, LIBVIRT_UNSUPPORTED)

    # ---- NICs

    def _live_xml(self, timeout: float, what: str) -> str:
        domain = self._running()
        return str(bounded.call(lambda: domain.XMLDesc(0), timeout, what, self._log_tail()))

    def nic_slots_in_use(self, timeout: float) -> frozenset[int]:
        return nic_slots_in_use(self._live_xml(timeout, "reading the domain XML"),
                                self.spec.appliance_id)

    def attach_nic(self, slot: int, nic: NicSpec, timeout: float) -> None:
        """Plug NIC slot *slot* as an ``<interface>`` (see :func:`.domxml.interface_xml`)."""
        domain = self._running()
        xml = interface_xml(slot, nic, owner=self.spec.appliance_id)
        what = f"hotplug of NIC slot {slot}"
        try:
            bounded.call(lambda: domain.attachDeviceFlags(xml, LIVE), timeout, what,
                         self._log_tail())
        except libvirt.libvirtError as e:
            raise NicError(slot, f"libvirt cannot plug it: {e.get_error_message()}") from None

    def detach_nic(self, slot: int, timeout: float) -> None:
        """Unplug NIC slot *slot*, confirmed by libvirt's device-removed event."""
        domain = self._running()
        what = f"unplug of NIC slot {slot}"
        alias = nic_alias(slot, self.spec.appliance_id)
        xml = live_interface(self._live_xml(timeout, what), alias)
        if xml is None:
            raise QemuError(f"NIC slot {slot}: the domain has no interface {alias}")
        removed = connection.removal(self.domain_name, alias)
        try:
            bounded.call(lambda: domain.detachDeviceFlags(xml, LIVE), timeout, what,
                         self._log_tail())
        except libvirt.libvirtError as e:
            raise QemuError(f"libvirt cannot unplug NIC slot {slot}: "
                            f"{e.get_error_message()}") from None
        if not removed.wait(timeout):
            raise QemuTimeout(f"{what}: libvirt did not report the device removed in "
                              f"{timeout:g} s", log_tail=self._log_tail())

    def clean_slot(self, index: int, timeout: float) -> bool:
        if index not in self._unsure:
            return False
        self._clean_slot(index, timeout, f"cleaning slot {index}")
        return True

    def detach_disk(self, index: int, timeout: float) -> None:
        """Unplug slot *index*, confirmed by libvirt's device-removed event."""
        self._running()
        what = f"unplug of slot {index}"
        if index in self._unsure:
            self._clean_slot(index, timeout, what)
            return
        # the whole <disk> as attached: libvirt 9.0 crashes on a <disk> without its
        # <source> and <target>
        xml = self._attached.get(index)
        if xml is None:
            raise QemuError(f"slot {index} has no disk attached by this backend")
        self._detach(index, xml, timeout, what)

    def _detach(self, index: int, xml: str, timeout: float, what: str) -> None:
        domain = self._running()
        removed = connection.removal(self.domain_name, slot_alias(index, self.spec.appliance_id))
        try:
            self._guarded(index, lambda: domain.detachDeviceFlags(xml, LIVE), timeout, what)
        except libvirt.libvirtError as e:
            raise QemuError(f"libvirt cannot detach slot {index}: "
                            f"{e.get_error_message()}") from None
        if not removed.wait(timeout):
            self._unsure[index] = None
            raise QemuTimeout(f"{what}: libvirt did not report the device removed in "
                              f"{timeout:g} s", log_tail=self._log_tail())
        self._attached.pop(index, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._overlay_path(index))

    def _guarded(self, index: int, fn: Callable[[], object], timeout: float,
                 what: str) -> None:
        """Run a slot operation with a deadline; if it is abandoned, remember that the
        slot is unsure (libvirt may still carry it out when QEMU answers)."""
        future = bounded.start(fn, what)
        try:
            bounded.wait(future, timeout, what, self._log_tail())
        except QemuTimeout:
            self._unsure[index] = future
            raise

    def _clean_slot(self, index: int, timeout: float, what: str) -> None:
        """Remove whatever an abandoned attach or detach of slot *index* left: wait for
        that call to end (QEMU may still be stuck: then QemuTimeout again), then
        detach the disk libvirt shows at the slot's alias, if any."""
        domain = self._running()
        abandoned = self._unsure.get(index)
        if abandoned is not None:
            with contextlib.suppress(libvirt.libvirtError):
                bounded.wait(abandoned, timeout, what, self._log_tail())
        live = bounded.call(lambda: domain.XMLDesc(0), timeout, what, self._log_tail())
        xml = live_disk(live, slot_alias(index, self.spec.appliance_id))
        self._unsure.pop(index, None)
        if xml is not None:
            self._detach(index, xml, timeout, what)
        else:
            self._attached.pop(index, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._overlay_path(index))

    def export_disks(self, exports: list[tuple[int, str, str]], started: Callable[[], None],
                     progress: Callable[[int, int], None] | None, timeout: float) -> None:
        """libvirt's push-mode backup (``backupBegin``, one transaction in QEMU) into the
        existing target files; its end is libvirt's job-completed event, its progress
        the job's statistics meanwhile."""
        domain = self._running()
        wanted = {f"sd{index_to_letters(index)}" for index, _, _ in exports}
        live = etree.fromstring(domain.XMLDesc(0))
        others = [str(target.get("dev")) for target in live.iterfind("devices/disk/target")
                  if target.get("dev") not in wanted]
        ended, stats = connection.job_end(self.domain_name)
        try:
            domain.backupBegin(backup_xml(exports, others), None,
                               libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL)
        except libvirt.libvirtError as e:
            raise GuestslotsError(f"export: libvirt refused the backup: "
                                  f"{e.get_error_message()}") from None
        finally:
            started()
        deadline = time.monotonic() + timeout
        while not ended.wait(min(0.5, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    domain.abortJob()
                ended.wait(10)
                raise self.error(f"export did not finish in {timeout:g} s: aborted",
                                 QemuTimeout)
            if progress is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    job = domain.jobStats(0)
                    progress(int(job.get("data_processed", 0)), int(job.get("data_total", 0)))
        # libvirt reports the job completed before it has closed the target files:
        # wait (bounded) until the domain has no job any more, the files let go
        settle = time.monotonic() + 30
        while domain.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
            if time.monotonic() >= settle:
                raise self.error("export: libvirt's backup job did not end in 30 s "
                                 "after it completed", QemuTimeout)
            ended.clear()
            ended.wait(0.05)
        if stats.get("type") not in (None, libvirt.VIR_DOMAIN_JOB_COMPLETED):
            raise self.error(f"export failed: {stats.get('errmsg', stats)}")
        if progress is not None:
            total = stats.get("data_total") or stats.get("disk_total") or 0
            progress(int(str(total)), int(str(total)))

    def disk_size(self, index: int, timeout: float) -> int:
        return int(self._running().blockInfo(f"sd{index_to_letters(index)}")[0])

    def snapshot_disks(self, overlays: list[tuple[int, str]], timeout: float) -> None:
        """libvirt's disk-only external snapshot of exactly those slots (index, overlay
        file made by the caller, reused), all at one instant, no snapshot metadata
        kept (the runtime record keeps the chain); the other disks ``snapshot='no'``.
        On failure nothing changes (``ATOMIC``)."""
        domain = self._running()
        wanted = {f"sd{index_to_letters(index)}" for index, _ in overlays}
        live = etree.fromstring(domain.XMLDesc(0))
        others = [str(target.get("dev")) for target in live.iterfind("devices/disk/target")
                  if target.get("dev") not in wanted]
        xml = snapshot_xml(f"guestslots-{int(time.time() * 1000)}", overlays, others)
        flags = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
        try:
            bounded.call(lambda: domain.snapshotCreateXML(xml, flags), timeout,
                         "the snapshot of slots " + ", ".join(str(i) for i, _ in overlays),
                         self._log_tail())
        except libvirt.libvirtError as e:
            raise SnapshotError(f"snapshot: libvirt refused it: {e.get_error_message()}"
                                ) from None
        now = domain.XMLDesc(0)
        for index, _ in overlays:  # the disks as they are now, for their unplug
            disk = live_disk(now, slot_alias(index, self.spec.appliance_id))
            if disk is not None:
                self._attached[index] = disk

    def save(self, directory: Path, timeout: float) -> None:
        """Save the domain's state (libvirt's save stops it) and its root overlay into
        *directory*.  The domain is gone afterwards: :meth:`start` from the state."""
        self.save_appliance(directory, Layout(), timeout)

    def save_appliance(self, directory: Path, layout: Layout, timeout: float,
                       exports: Sequence[tuple[int, str, str]] = ()) -> None:
        """:meth:`save`, plus the throwaway overlay of each slot of *layout* that has
        one (the saved XML names its path here: :meth:`start` moves it).  With
        *exports* (slot, target file made by the caller, its format), the domain is
        paused first and those slots' disks are copied into the targets (a backup
        job), so the copies match the saved memory."""
        domain = self._running()
        assert self._workdir is not None
        state = str(directory / STATE_FILE)
        if exports:
            try:
                bounded.call(domain.suspend, 30, "pausing the appliance", self._log_tail())
                self.export_disks(list(exports), lambda: None, None, timeout)
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError, GuestslotsError):
                    bounded.call(domain.resume, 30, "resuming the appliance")
                raise
        try:
            bounded.call(lambda: domain.saveFlags(state, None, 0), timeout,
                         "saving the appliance state", self._log_tail())
        except libvirt.libvirtError as e:
            raise self.error(f"libvirt cannot save the appliance: {e.get_error_message()}"
                             ) from None
        finally:
            self.domain = None
            self._qemu_pid = None
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        shutil.copyfile(os.path.join(self._workdir.path, "root.qcow2"), directory / ROOT_FILE)
        for index, drive in layout.disks:
            if drive.throwaway:
                shutil.copyfile(self._overlay_path(index),
                                directory / f"overlay-slot{index}.qcow2")
        self._workdir.remove()
        self._workdir = None

    def claim_domain_name(self, name: str) -> None:
        """Run under *name* (a saved appliance's own): it restores under no other."""
        if self._domain_name == name:
            return
        if not connection.claim_name(self._connect(), name):
            raise LaunchError(f"the saved appliance's domain {name} is running: stop it "
                              "first")
        if self._domain_name:
            connection.release_name(self._domain_name)
        self._domain_name = name

    def restore_layout(self, layout: Layout, directory: Path) -> None:
        """Make the next :meth:`start` (from *directory*, saved by
        :meth:`save_appliance`) bring *layout*'s overlays along and know its disks."""
        self._pending = (layout, directory)

    # ---- live migration

    def check_migration(self, params: MigrationParams) -> libvirt.virConnect:
        """Refuse (before anything is made or moves) a destination the appliance cannot
        go to: none, the libvirt it runs in, an embedded driver, one that does not
        answer, or one on another host (the agent channel is a Unix socket here);
        the connection to it otherwise."""
        libvirt_params(params)  # names the missing destination_uri, and the like
        here = self.uri or connection.uri()
        if params.destination_uri == here:
            raise MigrationParamError("destination_uri", f"{here} is the libvirt the "
                                      "appliance runs in: name another")
        if connection.embedded(params.destination_uri):
            raise MigrationParamError("destination_uri", "libvirt's embedded driver "
                                      "cannot take a migrating domain (libvirt 9.0: no "
                                      "autodestroy there): name a libvirt daemon's URI")
        try:
            target = connection.connect(params.destination_uri)
            host = target.getHostname()
        except libvirt.libvirtError as e:
            raise MigrationParamError("destination_uri", f"cannot connect to "
                                      f"{params.destination_uri}: "
                                      f"{e.get_error_message()}") from None
        if host != socket.gethostname():
            raise MigrationParamError("destination_uri", f"{params.destination_uri} runs "
                                      f"on {host}, not on this host ({socket.gethostname()}"
                                      "): the appliance's agent channel is a Unix socket "
                                      "here")
        return target

    def migrate(self, layout: Layout, params: MigrationParams,
                progress: Callable[[MigrationProgress], None] | None,
                timeout: float, copies: Mapping[int, DriveSpec] | None = None,
                ) -> tuple[socket.socket, MigrationProgress]:
        """Move the domain, live, to the libvirt at ``params.destination_uri`` with
        libvirt's typed parameters (``migrate3``; this process holds both
        connections).  That libvirt must run its QEMU on this host: the agent channel
        is a Unix socket here.  The destination's definition is the domain's
        migratable XML (or ``destination_config``) with a new agent socket and
        console file: the new QEMU connects its channel to a new listener while the
        old one runs.  *progress* gets libvirt's job statistics about four times a
        second.  The slots in *copies* are copied, live, into their copies (new, empty
        image files of the disks' sizes, made by the caller), which the destination
        XML names: libvirt's storage migration (``migrate_disks``, over NBD on a Unix
        socket in the work directory), and the new QEMU runs on them.  Returns the
        new channel and the finished job's statistics; from then on the domain, its
        events and its process are the destination's.  On failure libvirt ends the
        job and the domain runs on here.  (*layout*: libvirt carries the definition
        itself.)"""
        domain = self._running()
        assert self._workdir is not None
        copies = dict(copies or {})
        gen, workdir = self._generation + 1, self._workdir.path
        owner = self.spec.appliance_id
        typed, flags = libvirt_params(
            params, [f"sd{index_to_letters(index)}" for index in sorted(copies)],
            f"unix://{workdir}/nbd-{gen}.sock")
        target = self.check_migration(params)
        # libvirt calls a migration of local files "without shared storage" unsafe;
        # on one host both QEMUs use the very files (the locks pass at the switch)
        flags |= libvirt.VIR_MIGRATE_UNSAFE
        self._generation = gen
        agent_socket = os.path.join(workdir, f"agent-{gen}.sock")
        base = params.destination_config or domain.XMLDesc(
            libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
        try:
            typed[LIBVIRT_DEST_XML] = migration_xml(
                base, agent_socket, os.path.join(workdir, f"console-{gen}.log"),
                {slot_alias(index, owner): (copy.path, copy.format)
                 for index, copy in copies.items()})
        except (ValueError, etree.XMLSyntaxError) as e:
            raise MigrationParamError("destination_config", f"not an appliance's domain "
                                      f"XML: {e}") from None
        typed.setdefault(LIBVIRT_URI, f"unix://{workdir}/migrate-{gen}.sock")
        what = f"migration of {self.domain_name} to {params.destination_uri}"
        listener = None if self.spec.detached else socket.socket(socket.AF_UNIX,
                                                                 socket.SOCK_STREAM)
        try:
            if listener is not None:
                listener.bind(agent_socket)
                listener.listen(1)
            done, stats = connection.job_end(self.domain_name)
            moved = self._migrate3(domain, target, typed, flags, progress, timeout, what)
            done.wait(5)  # libvirt's statistics of the finished job
            # the domain runs over there now, whatever happens to the channel
            connection.forget(self.domain_name)
            connection.stop(moved.name()).clear()  # its stop is awaited at shutdown
            self.domain, self._conn, self.uri = moved, target, params.destination_uri
            for index, copy in copies.items():
                self._attached[index] = disk_xml(index, copy, owner=owner)
            if moved.name() != self._domain_name:
                connection.release_name(self._domain_name)
                self._domain_name = moved.name()
            if listener is None:
                sock = self._connect_agent(agent_socket, 30)
            else:
                listener.settimeout(30)
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    raise self.error(f"{what}: the new QEMU did not connect the agent "
                                     "channel") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(agent_socket)
            raise
        finally:
            if listener is not None:
                listener.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._agent_socket = agent_socket
        if self.spec.detached:
            self._held_by_keeper(sock)
        else:
            self._qemu_pid = _peer_pid(sock)
            self._pidfd = _open_pidfd(self._qemu_pid)
        return sock, MigrationProgress.from_libvirt(stats, "completed")

    def _migrate3(self, domain: libvirt.virDomain, target: libvirt.virConnect,
                  typed: dict[str, object], flags: int,
                  progress: Callable[[MigrationProgress], None] | None, timeout: float,
                  what: str) -> libvirt.virDomain:
        """``migrate3``, reporting *progress*; past *timeout* the job is aborted (the
        domain runs on here) and :class:`QemuTimeout` raised."""
        future = bounded.start(lambda: domain.migrate3(target, typed, flags), what)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(timeout=0.25)
            except concurrent.futures.TimeoutError:
                pass
            except libvirt.libvirtError as e:
                if self._lost(e):
                    raise self.error(f"{what}: the appliance died: "
                                     f"{e.get_error_message()}") from None
                raise QemuError(f"{what} failed, the appliance runs on here: "
                                f"{e.get_error_message()}") from None
            if time.monotonic() > deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    domain.abortJob()
                with contextlib.suppress(Exception):
                    # libvirt ends the job and resumes the source, unless the migration
                    # finished before the abort reached it: then it is done
                    return future.result(timeout=30)
                raise QemuTimeout(f"{what}: not done in {timeout:g} s, abandoned; the "
                                  "appliance runs on here", log_tail=self._log_tail())
            if progress is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    stats = domain.jobStats()
                    copying = stats.get("disk_processed", 0) < stats.get("disk_total", 0)
                    progress(MigrationProgress.from_libvirt(
                        stats, "copying-disks" if copying else "active"))


def _peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of Unix socket *sock*."""
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    struct.calcsize("3i")))
    return pid or None


def _open_pidfd(pid: int | None) -> int | None:
    """A pidfd on *pid*, or None where there is none to have (remote QEMU, gone)."""
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None
