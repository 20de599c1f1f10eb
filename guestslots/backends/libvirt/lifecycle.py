"""A libvirt domain's start (cold or restored), its agent channel, and a detached
domain's adoption and release."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import libvirt
from lxml import etree

from ...errors import LaunchError, QemuError
from ...host import owner
from ...host import workdir as workdirs
from ...host.proc import CommandError
from ...host.savedstate import ROOT_FILE, STATE_FILE
from ...model.runtime import RuntimeRecord
from ..common import connect_agent
from ..overlays import make_root_overlay
from ..workfiles import Generation, overlay_name
from . import bounded, connection
from .domain import DomainCore, open_pidfd, peer_pid
from .domxml import (
    disk_xml,
    domain_xml,
    is_detached,
    live_disk,
    restore_xml,
    slot_alias,
)

log = logging.getLogger(__name__)


class DomainLifecycle(DomainCore):
    """A libvirt domain's start (cold or restored), its agent channel, and a detached"""

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
            saved_root = restore_from / ROOT_FILE
            if self._own_root:  # the saved directory is the caller's, not this VM's
                saved_root = Path(workdir) / f"saved-{ROOT_FILE}"  # (on the image only)
                shutil.copyfile(restore_from / ROOT_FILE, saved_root)
            cfg = replace(cfg, root_backing=((str(saved_root), "qcow2"),
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
                moved, copies = self._bring_overlays(saved)
                try:
                    xml = restore_xml(saved, cfg, moved, copies)
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
            self._pidfd = open_pidfd(self.pid)
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
            self._qemu_pid = peer_pid(sock)
            if self._pidfd is None:
                self._pidfd = open_pidfd(self._qemu_pid)
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
        try:
            return connect_agent(path, timeout)
        except OSError as e:
            raise self.error(f"cannot connect to the agent channel {path}: "
                             f"{e.strerror or e}", cls) from None

    def _held_by_keeper(self, sock: socket.socket) -> None:
        """Keep the work directory for as long as the detached domain's QEMU runs,
        whoever holds the appliance: QEMU is the peer of its agent connection (it
        listens there itself, on the socket libvirt hands it)."""
        assert self._workdir is not None
        self._qemu_pid = peer_pid(sock)
        if self._qemu_pid is None:
            raise self.error(f"the QEMU process of domain {self.domain_name} is not on "
                             "this host: a detached appliance runs at a local libvirt",
                             LaunchError)
        if self._pidfd is None:
            self._pidfd = open_pidfd(self._qemu_pid)
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
        self._generation = Generation.of(record.agent_socket).number  # agent-N: migrated
        self._qemu_pid = peer_pid(sock)
        self._pidfd = open_pidfd(self._qemu_pid)
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
        self._forget_process()
        if self._workdir is not None:
            self._workdir.release()
            self._workdir = None
        self._attached.clear()

    def _bring_overlays(self, saved_xml: str
                        ) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Copy the pending layout's throwaway overlays into this work directory; the
        saved domain's paths of them -> their new paths, and the alias of each slot
        disk the layout has on a copy saved with the disk set -> (the copy, its
        format)."""
        if self._pending is None:
            return {}, {}
        layout, directory = self._pending
        drives = dict(layout.disks)
        moved: dict[str, str] = {}
        copies: dict[str, tuple[str, str]] = {}
        for disk in etree.fromstring(saved_xml.encode()).iterfind("devices/disk"):
            source, alias = disk.find("source"), disk.find("alias")
            if source is None:
                continue
            path = source.get("file", "")
            name = os.path.basename(path)
            for index, drive in layout.disks:
                if drive.throwaway and name == overlay_name(index):
                    shutil.copyfile(directory / name, self._overlay_path(index))
                    moved[path] = self._overlay_path(index)
            for index, drive in drives.items():
                top = drive.chain[-1] if drive.chain else drive.path  # what the guest sees
                if (alias is not None and not drive.throwaway and path != top
                        and alias.get("name") == slot_alias(index, self.spec.appliance_id)):
                    if drive.chain:
                        moved[path] = top
                    else:  # a copy: one file in the image's format, no chain
                        copies[alias.get("name", "")] = (drive.path, drive.format)
        return moved, copies
