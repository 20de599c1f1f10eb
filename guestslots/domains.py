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
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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

    from .backends.libvirt.connection import target

    try:
        return libvirt.open(target(uri))
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


def dac_owner(xml: str) -> tuple[int, int] | None:
    """The uid and gid a running domain's QEMU runs as, from its live XML's DAC
    security label (``+64055:+108``); None when it has none (QEMU runs as the
    daemon's user: the embedded driver's, a session daemon's)."""
    from lxml import etree

    root = etree.fromstring(xml.encode())
    for label in root.iterfind("seclabel[@model='dac']/label"):
        uid, _, gid = (label.text or "").partition(":")
        try:
            return int(uid.lstrip("+")), int(gid.lstrip("+"))
        except ValueError:
            return None
    return None


def in_target_order(disks: list[DomainDisk]) -> list[DomainDisk]:
    """*disks* by target name as the guest orders them (``vdb`` before ``vdaa``)."""
    return sorted(disks, key=lambda d: (len(d.target), d.target))


def domain_disks(name: str, uri: str = DEFAULT_URI) -> list[DomainDisk]:
    """The disks of libvirt domain *name* at *uri* (target, source, format), in the
    order of its XML: for callers that pick which to plug."""
    conn = _connect(uri)
    try:
        return disks_of(_lookup(conn, name, uri).XMLDesc(0))
    finally:
        conn.close()


def backup_xml(targets: list[str], others: list[str], socket: str, scratch_dir: str) -> str:
    """A pull-mode ``<domainbackup>`` exporting disks *targets* (each export named as
    its disk) on Unix socket *socket*, each with a scratch file in *scratch_dir*; the
    domain's *others* disks are left out."""
    from lxml import etree

    backup = etree.Element("domainbackup", mode="pull")
    etree.SubElement(backup, "server", transport="unix", socket=socket)
    disks = etree.SubElement(backup, "disks")
    for target in targets:
        disk = etree.SubElement(disks, "disk", name=target, backup="yes", type="file",
                                exportname=target)
        etree.SubElement(disk, "scratch", file=os.path.join(scratch_dir, f"{target}.scratch"))
    for other in others:
        etree.SubElement(disks, "disk", name=other, backup="no")
    return etree.tostring(backup, encoding="unicode")


class PointInTime:
    """A running domain's disks as they were when :meth:`begin` ran: a pull-mode
    backup job exporting them read-only over NBD, until :meth:`end`."""

    def __init__(self, name: str, targets: list[str], uri: str = DEFAULT_URI) -> None:
        self.name, self.targets, self.uri = name, list(targets), uri
        self._conn: Any = None
        self._domain: Any = None
        self._dir: str | None = None

    @property
    def where(self) -> str:
        return f"{_where(self.name, self.uri)}, disk {', '.join(self.targets)}"

    def begin(self) -> dict[str, str]:
        """Start the backup job; each disk's export as a source URL (``nbd+unix://``)."""
        import libvirt

        self._conn = _connect(self.uri)
        try:
            self._domain = _lookup(self._conn, self.name, self.uri)
            live = self._domain.XMLDesc(0)
            disks = [d.target for d in disks_of(live)]
            missing = [t for t in self.targets if t not in disks]
            if missing:
                raise DriveError(self.where, f"no such disk {', '.join(missing)} (it has "
                                 f"{', '.join(disks) or 'none'})")
            # libvirt's QEMU makes the socket here: at the system daemon it runs as its
            # own user (the domain's DAC label), who must own the directory
            self._dir = tempfile.mkdtemp(prefix=JOB_PREFIX)
            qemu_user = dac_owner(live)
            if qemu_user is not None and qemu_user != (os.getuid(), os.getgid()):
                try:
                    os.chown(self._dir, *qemu_user)
                except PermissionError:
                    raise DriveError(self.where, f"its QEMU runs as uid:gid "
                                     f"{qemu_user[0]}:{qemu_user[1]}, which cannot write "
                                     "a directory of this caller's: plug it as root") from None
            socket = os.path.join(self._dir, "nbd.sock")
            xml = backup_xml(self.targets, [d for d in disks if d not in self.targets],
                             socket, self._dir)
            _write_job(self._dir, self.name, self.uri, socket)
            try:
                self._domain.backupBegin(xml, None, 0)
            except libvirt.libvirtError as e:
                raise DriveError(self.where, "cannot start a point-in-time export: "
                                 f"{e.get_error_message()}") from None
        except BaseException:
            self._close()
            raise
        return {t: f"nbd+unix:///{t}?socket={socket}" for t in self.targets}

    def end(self, timeout: float = 30.0) -> None:
        """End the backup job (its exports and scratch files go) and forget it; returns
        once libvirt no longer shows the job (cancelling its block jobs is
        asynchronous: a job of several disks can outlive ``abortJob`` by a moment)."""
        import libvirt

        if self._domain is not None:
            with contextlib.suppress(libvirt.libvirtError):  # the domain may be gone
                self._domain.abortJob()
                deadline = time.monotonic() + timeout
                while self._domain.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                    if time.monotonic() > deadline:
                        raise DriveError(self.where, f"its backup job still runs {timeout:g} "
                                         "s after it was aborted")
                    time.sleep(0.01)  # libvirt's job state, polled: no event here
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = self._domain = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


#: Each job's directory holds this record: which domain, at which URI, whose job.
JOB_FILE = "job.json"
JOB_PREFIX = "guestslots-backup-"


def _write_job(directory: str, name: str, uri: str, socket: str) -> None:
    from .host import owner

    fd = os.open(os.path.join(directory, JOB_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"domain": name, "uri": uri, "socket": socket,
                   "owner": dataclasses.asdict(owner.current())}, f)


def collect_jobs(say: Callable[[str], None], parent: str | None = None) -> None:
    """End the point-in-time exports whose caller died (``guestslots gc``): each job
    directory whose owner is gone, its backup job (if the domain's job is still the
    one that exports on its socket) and the directory itself."""
    from .host.owner import Owner

    for directory in Path(parent or tempfile.gettempdir()).glob(f"{JOB_PREFIX}*"):
        record = directory / JOB_FILE
        if directory.is_symlink() or record.is_symlink() or not record.is_file() \
                or record.stat().st_uid != os.getuid():
            continue  # not a job of this user's (anyone may make a directory in /tmp)
        try:
            job = json.loads(record.read_text())
            if Owner(**job["owner"]).alive() is not False:
                continue
            _end_if_ours(str(job["domain"]), str(job["uri"]), str(job["socket"]))
        except (OSError, ValueError, KeyError, TypeError, DriveError) as e:
            say(f"{directory}: not cleaned: {e}")
            continue
        shutil.rmtree(directory, ignore_errors=True)
        say(f"ended the point-in-time export of domain {job['domain']} ({job['uri']}) "
            f"and removed {directory} (its owner died)")


def _end_if_ours(name: str, uri: str, socket: str) -> None:
    """End domain *name*'s backup job if it is the one exporting on *socket*."""
    import libvirt

    conn = _connect(uri)
    try:
        try:
            domain = conn.lookupByName(name)
            described = domain.backupGetXMLDesc(0)
        except libvirt.libvirtError:
            return  # the domain or its job is gone already
        if socket in described:
            domain.abortJob()
    finally:
        conn.close()


class Shared:
    """Calls :meth:`PointInTime.end` when the last of *count* slots using it empties."""

    def __init__(self, export: PointInTime, count: int) -> None:
        self._export, self._left = export, count

    def release(self) -> None:
        """One slot emptied."""
        self._left -= 1
        if self._left <= 0:
            self._export.end()

    def expect(self, count: int) -> None:
        """Only *count* slots use it after all (the others failed to plug): end it now
        if none does."""
        self._left = count
        if count <= 0:
            self._export.end()


def is_running(name: str, uri: str = DEFAULT_URI) -> bool:
    """Whether libvirt domain *name* at *uri* runs now."""
    conn = _connect(uri)
    try:
        return bool(_lookup(conn, name, uri).isActive())
    finally:
        conn.close()
