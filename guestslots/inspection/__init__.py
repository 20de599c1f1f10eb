"""Finding operating systems on the slots' filesystems, as libguestfs finds them
(Linux: its release files and fstab; Windows: its system root and registry).

The parsers are pure (:mod:`.releases`, :mod:`.windows`); :func:`inspect_os` drives
an Appliance through its public calls, mounting each candidate filesystem read-only
in turn.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import GuestslotsError, StateError
from ..model.names import canonical_volume, device_name, is_volume, parse_device
from ..wire import BTRFSVOL
from . import windows
from .binaries import ARCH_BINARIES, PE_HEAD_BYTES, elf_arch, pe_arch
from .packages import Application
from .probing import Guest, Probed
from .releases import RELEASE_FILES, Release, detect, parse_os_release

log = logging.getLogger(__name__)


#: Filesystem types never tried as a root.
_NOT_ROOTS = frozenset({"unknown", "swap", "LVM2_member", "linux_raid_member", "crypto_LUKS"})


@dataclass
class OSInfo:
    """An operating system found on a root filesystem (device names are API names).

    ``type``, ``distro``, ``product_name``, ``major_version``, ``minor_version``,
    ``package_format``, ``package_management``, ``osinfo``, ``product_variant``,
    ``build_id``, ``windows_systemroot``, ``windows_current_control_set``,
    ``windows_software_hive``, ``windows_system_hive`` and ``drive_mappings`` mean
    what libguestfs's ``inspect_get_*`` calls of the same names return (``"unknown"``
    / 0 / empty where it says so); ``name``, ``pretty_name`` and ``version`` are
    os-release's ``NAME``, ``PRETTY_NAME`` and ``VERSION_ID`` (empty without one).
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
    product_variant: str = "unknown"
    build_id: str = ""
    windows_systemroot: str = ""
    windows_current_control_set: str = ""
    windows_software_hive: str = ""
    windows_system_hive: str = ""
    #: Drive letter -> device (Windows: SYSTEM\MountedDevices).
    drive_mappings: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "root": self.root, "type": self.type, "distro": self.distro,
            "product_name": self.product_name, "major_version": self.major_version,
            "minor_version": self.minor_version, "package_format": self.package_format,
            "package_management": self.package_management, "osinfo": self.osinfo,
            "arch": self.arch,
            "hostname": self.hostname, "name": self.name, "pretty_name": self.pretty_name,
            "version": self.version, "mountpoints": dict(self.mountpoints),
            "product_variant": self.product_variant, "build_id": self.build_id,
            "windows_systemroot": self.windows_systemroot,
            "windows_current_control_set": self.windows_current_control_set,
            "windows_software_hive": self.windows_software_hive,
            "windows_system_hive": self.windows_system_hive,
            "drive_mappings": dict(self.drive_mappings),
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
    app = Probed(app)
    filesystems = app.list_filesystems()
    by_uuid: dict[str, str] = {}
    by_label: dict[str, str] = {}
    blkids: dict[str, dict[str, str]] = {}
    for dev, fstype in filesystems.items():
        if fstype == "unknown" or dev.startswith(BTRFSVOL):  # a subvolume: its device says
            continue
        info = blkids[dev] = app.blkid(dev)
        if info.get("UUID"):
            by_uuid[info["UUID"].lower()] = dev
        if info.get("LABEL"):
            by_label[info["LABEL"]] = dev
    found: list[OSInfo] = []
    usrs: list[OSInfo] = []  # filesystems that are some OS's /usr (their fields to merge)
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
                osinfo = _coreos_root(app, dev)
                if osinfo is None:
                    usr = _usr_filesystem(app, dev)
                    if usr is not None:
                        usrs.append(usr)
                        continue
                    osinfo = _windows_root(app, dev, blkids)
                if osinfo is not None:
                    found.append(osinfo)
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
    _merge_usrs(found, usrs)
    return found


def _merge_usrs(roots: list[OSInfo], usrs: list[OSInfo]) -> None:
    """What libguestfs merges from separate /usr filesystems into their roots: a
    CoreOS root takes the newest CoreOS /usr (it has two, A and B); another Linux
    root takes a /usr of its distro (or of none) that its fstab mounts (and, beyond
    libguestfs, a root that knows no distro takes the one its /usr says).  A root's
    own fields win; only what it does not know is filled in."""
    coreos = [r for r in roots if r.distro == "coreos"]
    if len(coreos) > 1:
        raise GuestslotsError("multiple CoreOS root filesystems found: "
                              + ", ".join(r.root for r in coreos))
    coreos_usrs = sorted((u for u in usrs if u.distro == "coreos"),
                         key=lambda u: (u.major_version, u.minor_version), reverse=True)
    if coreos and coreos_usrs:
        _merge(coreos_usrs[0], coreos[0])
    for root in roots:
        if root.distro == "coreos" or root.type != "linux":
            continue
        mounted = set(root.mountpoints.values())
        # libguestfs merges into a root of a known distro only; a merged-/usr root whose
        # os-release links into its separate /usr knows none, and gets the /usr's here
        usr = next((u for u in usrs if u.root in mounted and (
            root.distro == "unknown" or u.distro in (root.distro, "unknown"))), None)
        if usr is not None:
            _merge(usr, root)


def _merge(usr: OSInfo, root: OSInfo) -> None:
    """Fill what *root* does not know from *usr* (libguestfs's merge)."""
    for name in ("distro", "product_name", "package_format", "package_management", "arch",
                 "hostname", "name", "pretty_name", "version"):
        if getattr(root, name) in ("", "unknown"):
            setattr(root, name, getattr(usr, name))
    if (root.major_version, root.minor_version) == (0, 0):
        root.major_version, root.minor_version = usr.major_version, usr.minor_version
    for mountpoint, dev in usr.mountpoints.items():
        root.mountpoints.setdefault(mountpoint, dev)
    root.osinfo = Release(root.distro, root.product_name, root.major_version,
                          root.minor_version).osinfo


def _dirs(app: Guest, *paths: str) -> bool:
    return all(app.is_dir(p) for p in paths)


def _coreos_root(app: Guest, dev: str) -> OSInfo | None:
    """A CoreOS root (libguestfs's test): it knows only its hostname; its release is on
    its /usr filesystem, merged in later.  Mounted on / by itself (it has no fstab)."""
    if not (_dirs(app, "/etc", "/root", "/home", "/usr")
            and app.is_file("/etc/coreos/update.conf")):
        return None
    return OSInfo(root=dev, distro="coreos", hostname=_hostname(app), mountpoints={"/": dev})


def _usr_filesystem(app: Guest, dev: str) -> OSInfo | None:
    """A filesystem that is a Linux /usr (bin, local, share, src, no etc/fstab) or a
    CoreOS /usr (bin, share, local, share/coreos): its os-release (lib/os-release, or
    CoreOS's share/coreos/lsb-release) and arch, to merge into its root."""
    coreos = False
    if not (_dirs(app, "/bin", "/local", "/share", "/src")
            and not app.is_file("/etc/fstab")):
        if not _dirs(app, "/bin", "/share", "/local", "/share/coreos"):
            return None
        coreos = True
    files = {}
    if app.is_file("/lib/os-release", followsymlinks=True):
        files["/etc/os-release"] = _head(app, "/lib/os-release", 1 << 16)
    elif coreos and app.is_file("/share/coreos/lsb-release", followsymlinks=True):
        files["/etc/lsb-release"] = _head(app, "/share/coreos/lsb-release", 1 << 16)
    release = detect(files)
    fields = parse_os_release(files.get("/etc/os-release", ""))
    return OSInfo(
        root=dev, distro="coreos" if coreos else release.distro,
        product_name=release.product_name, major_version=release.major,
        minor_version=release.minor, package_format=release.package_format,
        package_management=release.package_management(
            app.is_file("/bin/dnf", followsymlinks=True)),  # its /bin is the OS's /usr/bin
        name=fields.get("NAME", ""), pretty_name=fields.get("PRETTY_NAME", ""),
        version=fields.get("VERSION_ID", ""), arch=_arch(app),
        mountpoints={"/usr": dev} if coreos else {})


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
    """libguestfs's test (/etc, a /bin, a /usr/bin or a /bin -> usr/bin link, even one
    dangling while /usr is a filesystem of its own, and an /etc/fstab or /etc/hosts),
    or an os-release (which is all some minimal images have)."""
    if app.is_file("/etc/os-release", followsymlinks=True):
        return True
    return (app.is_dir("/etc", followsymlinks=True)
            and (app.is_dir("/bin", followsymlinks=True)
                 or app.is_dir("/usr/bin", followsymlinks=True) or _bin_is_usr_bin(app))
            and (app.is_file("/etc/fstab", followsymlinks=True)
                 or app.is_file("/etc/hosts", followsymlinks=True)))


def _bin_is_usr_bin(app: Guest) -> bool:
    try:
        return app.readlink("/bin") == "usr/bin"
    except GuestslotsError:  # not a symlink, or not there
        return False


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


def _node(app: Guest, path: tuple[str, ...]) -> int:
    """The node at *path* under the open hive's root (0: not there)."""
    node = app.hivex_root()
    for name in path:
        node = app.hivex_node_get_child(node, name)
        if not node:
            return 0
    return node


def _values(app: Guest, path: tuple[str, ...]) -> dict[str, windows.Value]:
    node = _node(app, path)
    return app.hivex_node_values_all(node) if node else {}


def _systemroot(app: Guest) -> str | None:
    """%SYSTEMROOT% as libguestfs finds it: the first of its places that has
    system32, system32/config and system32/cmd.exe (in any case), else the first
    that boot.ini names and has them."""
    top = {name.casefold() for name in app.ls("/")}
    for candidate in windows.SYSTEMROOT_PATHS:
        if candidate[1:] in top and _is_systemroot(app, candidate):
            return app.case_sensitive_path(candidate)
    if "boot.ini" in top:
        boot_ini = app.case_sensitive_path("/boot.ini")
        if app.is_file(boot_ini, followsymlinks=True):
            # a hostile boot.ini may list thousands: each costs a few calls
            named = windows.boot_ini_systemroots(_head(app, boot_ini, 1 << 16))
            for candidate in named[:windows.MAX_BOOT_INI_ROOTS]:
                try:
                    if _is_systemroot(app, candidate):
                        return app.case_sensitive_path(candidate)
                except GuestslotsError:  # a name the guest cannot have ('..', NUL...)
                    continue
    return None


def _is_systemroot(app: Guest, root: str) -> bool:
    root = app.case_sensitive_path(root)
    return (app.is_dir(app.case_sensitive_path(f"{root}/system32"), followsymlinks=True)
            and app.is_dir(app.case_sensitive_path(f"{root}/system32/config"),
                           followsymlinks=True)
            and app.is_file(app.case_sensitive_path(f"{root}/system32/cmd.exe"),
                            followsymlinks=True))


def _windows_root(app: Guest, dev: str, blkids: Mapping[str, Mapping[str, str]]
                  ) -> OSInfo | None:
    """The Windows whose system root is on the filesystem mounted on / (*dev*)."""
    root = _systemroot(app)
    if root is None:
        return None
    found = OSInfo(root=dev, type="windows", distro="windows", windows_systemroot=root,
                   mountpoints={"/": dev})
    cmd = app.case_sensitive_path(f"{root}/system32/cmd.exe")
    found.arch = pe_arch(app.pread(cmd, PE_HEAD_BYTES, 0)) or "unknown"
    software = app.case_sensitive_path(f"{root}/system32/config/software")
    system = app.case_sensitive_path(f"{root}/system32/config/system")
    found.windows_software_hive = software if app.is_file(software) else ""
    found.windows_system_hive = system if app.is_file(system) else ""
    if found.windows_software_hive and found.windows_system_hive:
        try:
            _read_software(app, software, found)
            _read_system(app, system, found, blkids)
        except GuestslotsError as e:  # a damaged hive: the OS is there, its details not
            log.warning("%s: Windows registry not read: %s", dev, e)
    found.osinfo = windows.osinfo(found.major_version, found.minor_version,
                                  found.product_variant, found.product_name, found.build_id)
    return found


def _read_software(app: Guest, hive: str, found: OSInfo) -> None:
    app.hivex_open(hive)
    try:
        values = _values(app, windows.CURRENT_VERSION)
    finally:
        app.hivex_close()
    found.product_name = windows.reg_string(values.get("ProductName")) or "unknown"
    found.major_version, found.minor_version = windows.version_of(values)
    found.product_variant = windows.reg_string(values.get("InstallationType")) or "unknown"
    found.build_id = windows.reg_string(values.get("CurrentBuildNumber")) or ""


def _read_system(app: Guest, hive: str, found: OSInfo,
                 blkids: Mapping[str, Mapping[str, str]]) -> None:
    app.hivex_open(hive)
    try:
        devices = _values(app, windows.MOUNTED_DEVICES)
        control_set = windows.control_set(_values(app, windows.SELECT))
        parameters = _values(app, (control_set, *windows.TCPIP_PARAMETERS)) \
            if control_set else {}
    finally:
        app.hivex_close()
    partitions: dict[tuple[str, int], str] = {}
    for dev, info in blkids.items():
        key = windows.partition_key(info)
        if key is not None:
            partitions.setdefault(key, dev)
    for name, value in devices.items():
        mapped = windows.mounted_device(name, value)
        if mapped is not None and (mapped[1], mapped[2]) in partitions:
            found.drive_mappings[mapped[0]] = partitions[(mapped[1], mapped[2])]
    found.windows_current_control_set = control_set or ""
    found.hostname = windows.reg_string(parameters.get("Hostname")) or ""


def windows_applications(app: Guest, found: OSInfo) -> list[Application]:
    """The applications in a Windows guest's uninstall keys (native, then 32-bit), as
    libguestfs lists them (the OS's filesystem must be mounted)."""
    if not found.windows_software_hive:
        return []
    apps = []
    app.hivex_open(found.windows_software_hive)
    try:
        for path in windows.UNINSTALL_KEYS:
            node = _node(app, path)
            children = app.hivex_node_children_named(node) if node else {}
            for name, child in list(children.items())[:windows.MAX_APPLICATIONS]:
                apps.append(windows.application(name, app.hivex_node_values_all(child)))
    finally:
        app.hivex_close()
    return sorted(apps, key=lambda a: a.name)


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
