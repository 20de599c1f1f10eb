"""A libvirt domain's disks as slot sources: listed, and read at one point in time.

A running domain's disk is read through a pull-mode backup (libvirt's
``backupBegin``): libvirt's QEMU exports the disk as it was when the job began
over NBD on a Unix socket, and keeps what the guest overwrites afterwards in a
scratch file until the job ends, so the slot sees one consistent point in time
while the guest goes on writing.  A shut-off domain's disks are opened from their
files, read-only.  libvirt-python and lxml are imported on first use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from .errors import DriveError

#: libvirt's URI when none is named (libguestfs's ``add_domain`` and virsh's default
#: for root).
DEFAULT_URI = "qemu:///system"


@dataclass(frozen=True)
class DomainDisk:
    """One disk of a libvirt domain, as its XML says."""

    #: The guest's device name (``vda``, ``sdb``...), what libvirt's calls name it by.
    target: str
    #: Its file or block device ("" for a network disk or an empty drive).
    source: str
    #: The format libvirt opens it with (``raw``, ``qcow2``...).
    format: str
    #: ``file``, ``block``, ``network``...
    type: str
    readonly: bool


def _where(name: str, uri: str) -> str:
    return f"domain {name} ({uri})"


def _connect(uri: str) -> Any:
    import libvirt

    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise DriveError(f"libvirt {uri}", f"cannot connect: {e.get_error_message()}") from None


def _lookup(conn: Any, name: str, uri: str) -> Any:
    import libvirt

    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        raise DriveError(_where(name, uri), e.get_error_message()) from None


def disks_of(xml: str) -> list[DomainDisk]:
    """The disks (not CD-ROMs or floppies) in domain XML *xml*, in its order."""
    from lxml import etree

    root = etree.fromstring(xml.encode())
    found = []
    for disk in root.iterfind("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        path = ""
        if source is not None:
            path = source.get("file") or source.get("dev") or ""
        driver = disk.find("driver")
        target = disk.find("target")
        found.append(DomainDisk(
            target=(target.get("dev") if target is not None else None) or "",
            source=path,
            format=(driver.get("type") if driver is not None else None) or "raw",
            type=disk.get("type", "file"),
            readonly=disk.find("readonly") is not None))
    return found


def domain_disks(name: str, uri: str = DEFAULT_URI) -> list[DomainDisk]:
    """The disks of libvirt domain *name* at *uri* (target, source, format), in the
    order of its XML: for callers that pick which to plug."""
    conn = _connect(uri)
    try:
        return disks_of(_lookup(conn, name, uri).XMLDesc(0))
    finally:
        conn.close()


def backup_xml(target: str, others: list[str], socket: str, scratch: str) -> str:
    """A pull-mode ``<domainbackup>`` exporting disk *target* (its NBD export is
    named *target*) on Unix socket *socket*, with its scratch file *scratch*; the
    domain's *others* disks are left out."""
    from lxml import etree

    backup = etree.Element("domainbackup", mode="pull")
    etree.SubElement(backup, "server", transport="unix", socket=socket)
    disks = etree.SubElement(backup, "disks")
    disk = etree.SubElement(disks, "disk", name=target, backup="yes", type="file",
                            exportname=target)
    etree.SubElement(disk, "scratch", file=scratch)
    for other in others:
        etree.SubElement(disks, "disk", name=other, backup="no")
    return etree.tostring(backup, encoding="unicode")


class PointInTime:
    """A running domain's disk as it was when :meth:`begin` ran: a pull-mode backup
    job exporting it read-only over NBD, until :meth:`end`."""

    def __init__(self, name: str, disk: str, uri: str = DEFAULT_URI) -> None:
        self.name, self.disk, self.uri = name, disk, uri
        self._conn: Any = None
        self._domain: Any = None
        self._dir: str | None = None

    @property
    def where(self) -> str:
        return f"{_where(self.name, self.uri)}, disk {self.disk}"

    def begin(self) -> str:
        """Start the backup job; the export's source URL (``nbd+unix://``)."""
        import libvirt

        self._conn = _connect(self.uri)
        try:
            self._domain = _lookup(self._conn, self.name, self.uri)
            disks = disks_of(self._domain.XMLDesc(0))
            if self.disk not in [d.target for d in disks]:
                raise DriveError(self.where, "no such disk (it has "
                                 f"{', '.join(d.target for d in disks) or 'none'})")
            # libvirt's QEMU (its own user, at the system daemon) makes the socket and
            # the scratch file here
            self._dir = tempfile.mkdtemp(prefix="guestslots-backup-")
            os.chmod(self._dir, 0o711)
            socket = os.path.join(self._dir, "nbd.sock")
            xml = backup_xml(self.disk, [d.target for d in disks if d.target != self.disk],
                             socket, os.path.join(self._dir, f"{self.disk}.scratch"))
            try:
                self._domain.backupBegin(xml, None, 0)
            except libvirt.libvirtError as e:
                raise DriveError(self.where, "cannot start a point-in-time export: "
                                 f"{e.get_error_message()}") from None
        except BaseException:
            self._close()
            raise
        return f"nbd+unix:///{self.disk}?socket={socket}"

    def end(self) -> None:
        """End the backup job (its export and scratch file go) and forget it."""
        import libvirt

        if self._domain is not None:
            with contextlib.suppress(libvirt.libvirtError):  # the domain may be gone
                self._domain.abortJob()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = self._domain = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def is_running(name: str, uri: str = DEFAULT_URI) -> bool:
    """Whether libvirt domain *name* at *uri* runs now."""
    conn = _connect(uri)
    try:
        return bool(_lookup(conn, name, uri).isActive())
    finally:
        conn.close()
