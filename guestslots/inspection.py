"""Finding operating systems on the slots' filesystems (Linux: os-release and fstab).

The parsers are pure; :func:`inspect_os` drives an Appliance through its public
calls, mounting each candidate filesystem read-only in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .binaries import ARCH_BINARIES, elf_arch
from .errors import GuestslotsError, StateError
from .model.names import canonical_volume, device_name, is_volume, parse_device
from .releases import RELEASE_FILES, detect, parse_os_release
from .wire import BTRFSVOL


class Guest(Protocol):
    """The public calls inspection uses (an :class:`~guestslots.appliance.Appliance`)."""

    def mounts(self) -> list[str]: ...
    def list_filesystems(self) -> dict[str, str]: ...
    def blkid(self, device: str) -> dict[str, str]: ...
    def mount(self, device: str, mountpoint: str, options: str = "") -> None: ...
    def mount_ro(self, device: str, mountpoint: str) -> None: ...
    def umount_all(self) -> None: ...
    def is_file(self, path: str, followsymlinks: bool = False) -> bool: ...
    def is_dir(self, path: str, followsymlinks: bool = False) -> bool: ...
    def cat(self, path: str) -> str: ...
    def pread(self, path: str, count: int, offset: int) -> bytes: ...

#: Filesystem types never tried as a root.
_NOT_ROOTS = frozenset({"unknown", "swap", "LVM2_member", "linux_raid_member", "crypto_LUKS"})


@dataclass
class OSInfo:
    """An operating system found on a root filesystem (device names are API names).

    ``type``, ``distro``, ``product_name``, ``major_version``, ``minor_version``,
    ``package_format``, ``package_management`` and ``osinfo`` mean what libguestfs's
    ``inspect_get_*`` calls of the same names return (``"unknown"`` / 0 where it
    says so); ``name``, ``pretty_name`` and ``version`` are os-release's ``NAME``,
    ``PRETTY_NAME`` and ``VERSION_ID`` (empty without one).
    """

    root: str
    name: str = ""
    pretty_name: str = ""
    version: str = ""
    distro: str = "unknown"
    hostname: str = ""
    type: str = "linux"
    product_name: str = "unknown"
    major_version: int = 0
    minor_version: int = 0
    package_format: str = "unknown"
    package_management: str = "unknown"
    osinfo: str = "unknown"
    arch: str = "unknown"
    #: Mount point -> device, from the root's /etc/fstab (the root itself as "/").
    mountpoints: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "root": self.root, "type": self.type, "distro": self.distro,
            "product_name": self.product_name, "major_version": self.major_version,
            "minor_version": self.minor_version, "package_format": self.package_format,
            "package_management": self.package_management, "osinfo": self.osinfo,
            "arch": self.arch,
            "hostname": self.hostname, "name": self.name, "pretty_name": self.pretty_name,
            "version": self.version, "mountpoints": dict(self.mountpoints),
        }


@dataclass(frozen=True)
class FstabEntry:
    """One fstab line that mounts a filesystem."""

    spec: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...] = ()

    @property
    def btrfs_subvolume(self) -> str | None:
        """The ``subvol=`` of a btrfs entry (without leading ``/``), if it names one."""
        if self.fstype != "btrfs":
            return None
        for option in self.options:
            if option.startswith("subvol="):
                return option.removeprefix("subvol=").strip("/") or None
        return None


def parse_fstab(text: str) -> list[FstabEntry]:
    """The entries of an fstab that mount a filesystem (no swap, proc, tmpfs...)."""
    entries = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 3:
            continue
        spec, mountpoint, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        if fstype in ("swap", "proc", "sysfs", "tmpfs", "devpts", "none") or not \
                mountpoint.startswith("/"):
            continue
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ()
        entries.append(FstabEntry(spec, mountpoint, fstype, options))
    return entries


def resolve_spec(spec: str, by_uuid: dict[str, str], by_label: dict[str, str],
                 devices: set[str]) -> str | None:
    """The API device an fstab *spec* names: UUID=, LABEL=, a /dev/[svh]dXN name, or an
    LV (``/dev/VG/LV``, ``/dev/mapper/VG-LV``) or md array."""
    if spec.startswith("UUID="):
        return by_uuid.get(spec[5:].strip('"').lower())
    if spec.startswith("LABEL="):
        return by_label.get(spec[6:].strip('"'))
    if spec.startswith("/dev/disk/by-uuid/"):
        return by_uuid.get(spec.rsplit("/", 1)[1].lower())
    if spec.startswith("/dev/disk/by-label/"):
        return by_label.get(spec.rsplit("/", 1)[1])
    if is_volume(spec):  # an LV or md array: named as list_filesystems names it
        name = canonical_volume(spec)
        return name if name in devices else None
    try:
        ref = parse_device(spec)
    except GuestslotsError:
        return None
    if ref.index is None:
        return None
    name = device_name(ref.index, ref.partition)
    return name if name in devices else None


def inspect_os(app: Guest) -> list[OSInfo]:
    """Find the operating systems on every full slot (nothing may be mounted)."""
    if app.mounts():
        raise StateError("inspect_os", "with nothing mounted", "with filesystems mounted")
    filesystems = app.list_filesystems()
    by_uuid: dict[str, str] = {}
    by_label: dict[str, str] = {}
    for dev, fstype in filesystems.items():
        if fstype == "unknown" or dev.startswith(BTRFSVOL):  # a subvolume: its device says
            continue
        info = app.blkid(dev)
        if info.get("UUID"):
            by_uuid[info["UUID"].lower()] = dev
        if info.get("LABEL"):
            by_label[info["LABEL"]] = dev
    found = []
    for dev, fstype in filesystems.items():
        if fstype in _NOT_ROOTS:
            continue
        try:
            app.mount_ro(dev, "/")
        except GuestslotsError:
            continue
        try:
            osinfo = _linux_root(app, dev)
            if osinfo is None:
                continue
            osinfo.hostname = _hostname(app)
            osinfo.arch = _arch(app)
            osinfo.mountpoints["/"] = dev
            if app.is_file("/etc/fstab", followsymlinks=True):
                for entry in parse_fstab(_head(app, "/etc/fstab", 1 << 20)):
                    target = resolve_spec(entry.spec, by_uuid, by_label, set(filesystems))
                    subvolume = entry.btrfs_subvolume
                    if target is not None and subvolume is not None:
                        # listed as btrfsvol:DEVICE/PATH unless it is the default one
                        named = f"{BTRFSVOL}{target}/{subvolume}"
                        target = named if named in filesystems else target
                    if target is not None and entry.mountpoint != "/":
                        osinfo.mountpoints[entry.mountpoint] = target
            found.append(osinfo)
        finally:
            app.umount_all()
    return found


def _head(app: Guest, path: str, limit: int) -> str:
    """The start of a guest's text file, at most *limit* bytes (a hostile guest's file
    may be endless)."""
    return app.pread(path, limit, 0).decode(errors="replace")


def _hostname(app: Guest) -> str:
    """As libguestfs looks: /etc/HOSTNAME, /etc/hostname (first line), then
    /etc/sysconfig/network's HOSTNAME=."""
    for path in ("/etc/HOSTNAME", "/etc/hostname"):
        if app.is_file(path, followsymlinks=True):
            lines = _head(app, path, 4096).strip().splitlines()
            if lines and lines[0].strip():
                return lines[0].strip()
    if app.is_file("/etc/sysconfig/network", followsymlinks=True):
        return parse_os_release(_head(app, "/etc/sysconfig/network", 1 << 16)).get(
            "HOSTNAME", "")
    return ""


def _arch(app: Guest) -> str:
    """The architecture of the first of libguestfs's system binaries that is ELF."""
    for path in ARCH_BINARIES:
        if app.is_file(path, followsymlinks=True):
            arch = elf_arch(app.pread(path, 64, 0))
            if arch is not None:
                return arch
    return "unknown"


def _is_linux_root(app: Guest) -> bool:
    """libguestfs's test (/etc, a /bin or /usr/bin, and an /etc/fstab or /etc/hosts),
    or an os-release (which is all some minimal images have)."""
    if app.is_file("/etc/os-release", followsymlinks=True):
        return True
    return (app.is_dir("/etc", followsymlinks=True)
            and (app.is_dir("/bin", followsymlinks=True)
                 or app.is_dir("/usr/bin", followsymlinks=True))
            and (app.is_file("/etc/fstab", followsymlinks=True)
                 or app.is_file("/etc/hosts", followsymlinks=True)))


def _linux_root(app: Guest, dev: str) -> OSInfo | None:
    """The Linux whose root is mounted on / (*dev*), or None if it is not one."""
    if not _is_linux_root(app):
        return None
    files = {path: _head(app, path, 1 << 16) for path in RELEASE_FILES
             if app.is_file(path, followsymlinks=True)}
    found = detect(files)
    fields = parse_os_release(files.get("/etc/os-release", ""))
    return OSInfo(
        root=dev, name=fields.get("NAME", ""), pretty_name=fields.get("PRETTY_NAME", ""),
        version=fields.get("VERSION_ID", ""), distro=found.distro,
        product_name=found.product_name, major_version=found.major,
        minor_version=found.minor, package_format=found.package_format,
        package_management=found.package_management(
            app.is_file("/usr/bin/dnf", followsymlinks=True)),
        osinfo=found.osinfo,
    )


def mount_mountpoints(app: Guest, mountpoints: dict[str, str], readonly: bool = True) -> None:
    """Mount *mountpoints* (mount point -> device), parents before children."""
    for mountpoint in sorted(mountpoints, key=len):
        if readonly:
            app.mount_ro(mountpoints[mountpoint], mountpoint)
        else:
            app.mount(mountpoints[mountpoint], mountpoint)


def mount_image(app: Guest, readonly: bool = True, plain_filesystem: bool = False) -> None:
    """Mount the one operating system found, as its fstab says (one inspection).

    With *plain_filesystem*, an image without an operating system but with
    exactly one mountable filesystem gets that filesystem mounted on ``/``.
    """
    found = inspect_os(app)
    if len(found) > 1:
        roots = ", ".join(f.root for f in found)
        raise GuestslotsError(f"several operating systems ({roots}): choose with -m DEVICE")
    if found:
        mount_mountpoints(app, found[0].mountpoints, readonly)
        return
    candidates = [d for d, t in app.list_filesystems().items() if t not in _NOT_ROOTS]
    if not plain_filesystem or len(candidates) != 1:
        raise GuestslotsError(
            f"no operating system found ({len(candidates)} filesystem(s)): choose with -m DEVICE")
    mount_mountpoints(app, {"/": candidates[0]}, readonly)
