"""Live migration of a libvirt domain to another libvirt on this host (migrate3 with
libvirt's typed parameters), with copies of slots' disks."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

import libvirt
from lxml import etree

from ...errors import QemuError, QemuTimeout
from ...model.drives import DriveSpec
from ...model.migration import MigrationParamError, MigrationParams, MigrationProgress
from ...model.names import index_to_letters
from .. import Layout
from ..workfiles import Generation
from . import bounded, connection
from .domain import open_pidfd, peer_pid
from .domxml import (
    disk_xml,
    migration_xml,
    slot_alias,
)
from .params import LIBVIRT_DEST_XML, LIBVIRT_URI, libvirt_params
from .saving import DomainSaving

log = logging.getLogger(__name__)


class DomainMigration(DomainSaving):
    """Live migration of a libvirt domain to another libvirt on this host (migrate3 with"""

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
        gen = Generation(self._workdir.path, self._generation).next()
        owner = self.spec.appliance_id
        typed, flags = libvirt_params(
            params, [f"sd{index_to_letters(index)}" for index in sorted(copies)],
            f"unix://{gen.nbd_socket}")
        target = self.check_migration(params)
        # libvirt calls a migration of local files "without shared storage" unsafe;
        # on one host both QEMUs use the very files (the locks pass at the switch)
        flags |= libvirt.VIR_MIGRATE_UNSAFE
        self._generation = gen.number
        agent_socket = gen.agent_socket
        base = params.destination_config or domain.XMLDesc(
            libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
        try:
            typed[LIBVIRT_DEST_XML] = migration_xml(
                base, agent_socket, gen.console_log,
                {slot_alias(index, owner): (copy.path, copy.format)
                 for index, copy in copies.items()},
                connection.dac_label(params.destination_uri))
        except (ValueError, etree.XMLSyntaxError) as e:
            raise MigrationParamError("destination_config", f"not an appliance's domain "
                                      f"XML: {e}") from None
        typed.setdefault(LIBVIRT_URI, f"unix://{gen.migrate_socket}")
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
        self._forget_process()
        self._agent_socket = agent_socket
        if self.spec.detached:
            self._held_by_keeper(sock)
        else:
            self._qemu_pid = peer_pid(sock)
            self._pidfd = open_pidfd(self._qemu_pid)
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
