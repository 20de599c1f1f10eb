#!/usr/bin/python3 -uIS
"""guestslots appliance agent: PID 1 of the appliance, one long-lived process.

Standard library only (it runs on the appliance's Debian python3).  Under TCG
every spawned process costs 0.1 s or more, so the agent mounts, probes and
reads through syscalls (``ctypes`` for mount(2), umount2(2), libblkid), learns
about hotplugged disks from kernel uevents, and spawns nothing per call.

It speaks :mod:`wire` on the virtio-serial port ``org.guestslots.agent.0``.
Device arguments arrive as kernel names (the host translates); guest paths are
resolved with the mounted filesystem as root (chroot), so nothing a guest
filesystem says (absolute symlinks, ``..``) reaches the appliance's own files.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import os
import re
import select
import socket
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, "/usr/lib/guestslots")
import wire  # type: ignore[import-not-found]  # copied beside the agent in the appliance

PORT_NAME = "org.guestslots.agent.0"
SYSROOT = "/sysroot"
LINK_DIR = "/dev/disk/guestslots"
NETLINK_KOBJECT_UEVENT = 15
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
#: Every guest filesystem is mounted with these: a device node on a hostile image
#: (``b 254 0`` is the appliance's root disk, ``b 8 0`` another slot's disk) must not
#: open the device it names, and nothing on it runs or gains privileges.
MS_GUEST = MS_NOSUID | MS_NODEV | MS_NOEXEC
#: Filesystems whose superblock may say ``errors=panic``: one bad image would take the
#: whole appliance (and every other slot's work) down.  The mount option overrides it.
ERRORS_OPTION_FS = ("ext2", "ext3", "ext4")
MNT_DETACH = 2
BLKFLSBUF = 0x1261
BLKID_FLTR_ONLYIN = 2
#: What a hotplug looks for (anything else needs no tool run).
CONTAINER_TYPES = ("LVM2_member", "linux_raid_member")
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
UDEVD = "/lib/systemd/systemd-udevd"
LVM = "/sbin/lvm"
MDADM = "/sbin/mdadm"
DMSETUP = "/sbin/dmsetup"
BTRFS = "/bin/btrfs"
BTRFS_PROBE_DIR = "/run/guestslots/btrfs"
BTRFSVOL = "btrfsvol:"
MDADM_CONF = "/etc/guestslots/mdadm.conf"
TOOL_TIMEOUT = 60  # seconds: below the host's call timeout, so a stuck tool is reported
# LVM and mdadm run only when a disk holds a PV or a RAID member, or on an LVM or
# md call.  They make their own device nodes (the appliance has no dm/md udev rules).
TOOL_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C",
    "LVM_SYSTEM_DIR": "/etc/guestslots/lvm",
    "LVM_SUPPRESS_FD_WARNINGS": "1",
    "DM_DISABLE_UDEV": "1",
    "MDADM_NO_UDEV": "1",
}

# A disk on the virtio-scsi controller: .../virtioN/hostH/targetH:0:T/H:0:T:0/block/sdX
_DISK_EVENT_RE = re.compile(
    rb"^(add|remove)@/devices/.*/virtio[0-9]+/host[0-9]+/target[0-9]+:0:([0-9]+)/"
    rb"[0-9]+:0:[0-9]+:0/block/(sd[a-z]+)$"
)
_DISK_SYSFS_RE = re.compile(r"/virtio[0-9]+/host[0-9]+/target[0-9]+:0:([0-9]+)/[0-9]+:0:[0-9]+:0/")
_KERNEL_DEV_RE = re.compile(r"^/dev/(sd[a-z]+)([0-9]*)\Z")
_VOLUME_RE = re.compile(r"^(dm-[0-9]+|md[0-9]+)\Z")
# Partition types that hold no filesystem of their own, as libguestfs skips them:
# MBR extended partitions (containers of logical ones), Windows LDM metadata and data,
# Microsoft Reserved, Windows Snapshot (GPT), LDM (MBR 0x42).
_NO_FS_PART_TYPES = frozenset({
    "0x5", "0xf", "0x85",
    "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3",
    "af9b60a0-1431-4f62-bc68-3311714a69ad",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae",
    "caddebf1-4400-4de8-b103-12117dcf3ccf",
    "0x42",
})

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class Fail(Exception):
    """An error to report to the host, with an errno when there is one."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


def log(msg: str) -> None:
    sys.stderr.write(f"guestslots-agent: {msg}\n")


def _check_libc(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise Fail(f"{what}: {os.strerror(e)}", e)


# ---------------------------------------------------------------- boot


def early_setup() -> None:
    """What an init does, by syscalls: mount the API filesystems, start udevd."""
    for src, target, fstype in (
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
    ):
        os.makedirs(target, exist_ok=True)
        if not os.path.ismount(target):
            rc = libc.mount(src.encode(), target.encode(), fstype.encode(), 0, None)
            if rc != 0:
                log(f"mount {target}: {os.strerror(ctypes.get_errno())}")
    os.makedirs(SYSROOT, exist_ok=True)
    for d in ("/run/udev", "/run/lock/lvm", "/run/lvm", "/run/mdadm"):
        os.makedirs(d, exist_ok=True)
    with contextlib.suppress(OSError), open("/proc/sys/kernel/modprobe", "w") as f:
        f.write("/sbin/modprobe")
    if os.path.exists(UDEVD):
        # The one process spawned at boot: it makes /dev/disk/guestslots/* links.
        os.spawnv(os.P_WAIT, UDEVD, [UDEVD, "--daemon"])


def find_port() -> str:
    for vport in os.listdir("/sys/class/virtio-ports"):
        try:
            with open(f"/sys/class/virtio-ports/{vport}/name") as f:
                if f.read().strip() == PORT_NAME:
                    return f"/dev/{vport}"
        except OSError:
            continue
    raise Fail(f"virtio-serial port {PORT_NAME} not found")


# ---------------------------------------------------------------- disks


def _sysfs_read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def scan_disks() -> dict[int, str]:
    """SCSI target -> kernel name of every slot disk present now (from sysfs)."""
    found: dict[int, str] = {}
    for name in os.listdir("/sys/block"):
        if not name.startswith("sd"):
            continue
        m = _DISK_SYSFS_RE.search(os.path.realpath(f"/sys/block/{name}"))
        if m:
            found[int(m.group(1))] = name
    return found


class Disks:
    """Which slot disks the kernel has, kept current from its uevents."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 4 * 1024 * 1024)  # SO_RCVBUFFORCE
        self.sock.bind((0, 1))
        self.sock.setblocking(False)
        self.present = scan_disks()

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # events lost: sysfs is the truth
                    self.present = scan_disks()
                    continue
                raise
            header = data.split(b"\0", 1)[0]
            m = _DISK_EVENT_RE.match(header)
            if not m:
                continue
            target, name = int(m.group(2)), m.group(3).decode()
            if m.group(1) == b"add":
                self.present[target] = name
            elif self.present.get(target) == name:
                del self.present[target]

    def wait(self, target: int, plugged: bool, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while True:
            self.drain()
            name = self.present.get(target)
            if (name is not None) == plugged:
                return name
            left = deadline - time.monotonic()
            if left <= 0:
                state = "appear" if plugged else "go away"
                raise Fail(
                    f"disk at SCSI target {target} did not {state} in {timeout:g} s",
                    errno.ETIMEDOUT,
                )
            poller.poll(left * 1000)


def kernel_device(dev: str) -> tuple[str, str]:
    """Check a device argument: (disk name, device name) of a slot disk or its partition."""
    m = _KERNEL_DEV_RE.match(dev)
    if not m:
        raise Fail(f"{dev}: not a slot device", errno.EINVAL)
    disk, part = m.group(1), m.group(2)
    if not _DISK_SYSFS_RE.search(os.path.realpath(f"/sys/block/{disk}")):
        raise Fail(f"{dev}: not a slot device", errno.ENODEV)
    name = disk + part
    if part and not os.path.exists(f"/sys/block/{disk}/{name}"):
        raise Fail(f"{dev}: no such partition", errno.ENOENT)
    return disk, name


def partitions_of(disk: str) -> list[str]:
    parts = []
    for entry in os.listdir(f"/sys/block/{disk}"):
        if entry.startswith(disk) and os.path.exists(f"/sys/block/{disk}/{entry}/partition"):
            parts.append((int(_sysfs_read(f"/sys/block/{disk}/{entry}/partition")), entry))
    return [name for _, name in sorted(parts)]


# ---------------------------------------------------------------- stacked devices (LVM, md)


def _sysfs_list(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def holders(name: str) -> list[str]:
    """The devices stacked directly on block device *name* (dm, md)."""
    return _sysfs_list(f"/sys/class/block/{name}/holders")


def slaves(name: str) -> list[str]:
    return _sysfs_list(f"/sys/class/block/{name}/slaves")


def stacked_on(names: list[str]) -> list[str]:
    """Every device stacked on *names*, transitively, each after those stacked on it."""
    order: list[str] = []

    def visit(name: str) -> None:
        for holder in holders(name):
            visit(holder)
            if holder not in order:
                order.append(holder)

    for name in names:
        visit(name)
    return order


def block_name(path: str) -> str | None:
    """The kernel name of the block device at *path* (symlinks followed), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    real = os.path.realpath(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    return os.path.basename(real) if os.path.exists(real) else None


def disk_sysfs(name: str) -> str:
    """The sysfs directory of the whole disk under block device *name* (a disk or a
    partition)."""
    path = os.path.realpath(f"/sys/class/block/{name}")
    return os.path.dirname(path) if os.path.exists(f"{path}/partition") else path


def slot_disks_under(name: str) -> set[str] | None:
    """The slot disks that block device *name* is made of (itself or its disk, for a slot
    disk or partition; its members, for a dm/md device); None if anything under it is
    not a slot disk (the appliance's own root disk)."""
    if _VOLUME_RE.match(name):
        below = [slot_disks_under(b) for b in slaves(name)]
        if not below or any(b is None for b in below):
            return None
        return set().union(*[b for b in below if b is not None])
    if not name.startswith("sd"):
        return None
    disk = disk_sysfs(name)
    return {os.path.basename(disk)} if _DISK_SYSFS_RE.search(disk + "/") else None


def is_slot_backed(name: str) -> bool:
    """Whether *name* is a slot disk, its partition, or a dm/md device built only on those."""
    return slot_disks_under(name) is not None


def dm_name(name: str) -> str:
    return _sysfs_read(f"/sys/block/{name}/dm/name")


def split_dm_name(mangled: str) -> list[str]:
    """LVM's dm name ``VG-LV`` split in its parts (``--`` is a ``-`` inside a name)."""
    parts, cur, i = [], "", 0
    while i < len(mangled):
        if mangled[i] == "-":
            if mangled[i + 1 : i + 2] == "-":
                cur += "-"
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += mangled[i]
        i += 1
    parts.append(cur)
    return parts


def lvm_uuid(name: str) -> str | None:
    """The LVM uuid (``LVM-`` + VG uuid + LV uuid...) of dm device *name*, if LVM made it."""
    try:
        uuid = _sysfs_read(f"/sys/block/{name}/dm/uuid")
    except OSError:
        return None
    return uuid if uuid.startswith("LVM-") else None


def public_lv(name: str) -> tuple[str, str] | None:
    """(VG, LV) when dm device *name* is an LV a user sees (not a hidden sub-LV)."""
    uuid = lvm_uuid(name)
    if uuid is None or len(uuid) != 4 + 64:
        return None
    parts = split_dm_name(dm_name(name))
    return (parts[0], parts[1]) if len(parts) == 2 else None


def dashed_uuid(uuid: str) -> str:
    """LVM's printed form of a 32-character uuid (6-4-4-4-4-4-6)."""
    out, at = [], 0
    for n in (6, 4, 4, 4, 4, 4, 6):
        out.append(uuid[at : at + n])
        at += n
    return "-".join(out)


def md_running(name: str) -> bool:
    try:
        state = _sysfs_read(f"/sys/block/{name}/md/array_state")
    except OSError:
        return False
    return state not in ("clear", "inactive")


def canonical(name: str) -> str:
    """The API name of a kernel block device: ``/dev/VG/LV`` for an LV, as libguestfs."""
    if name.startswith("dm-"):
        lv = public_lv(name)
        return f"/dev/{lv[0]}/{lv[1]}" if lv else f"/dev/mapper/{dm_name(name)}"
    return f"/dev/{name}"


def active_lvs() -> list[tuple[str, str]]:
    """(API name, kernel name) of every active LV on the slots, sorted by API name."""
    found = []
    for name in _sysfs_list("/sys/block"):
        if name.startswith("dm-") and public_lv(name) and is_slot_backed(name):
            found.append((canonical(name), name))
    return sorted(found)


def running_arrays() -> list[str]:
    """Kernel names of the running md arrays on the slots, in numeric order."""
    found = [
        n for n in _sysfs_list("/sys/block")
        if n.startswith("md") and _VOLUME_RE.match(n) and md_running(n) and is_slot_backed(n)
    ]
    return sorted(found, key=lambda n: int(n[2:]))


def resolve_device(dev: Any) -> str:
    """Check a device argument; return its kernel name.  A slot disk or partition,
    or an LV (``/dev/VG/LV``, ``/dev/mapper/...``) or md array built on slots only."""
    if not isinstance(dev, str) or "\0" in dev:
        raise Fail(f"{dev!r}: not a device name", errno.EINVAL)
    if _KERNEL_DEV_RE.match(dev):
        return kernel_device(dev)[1]
    name = block_name(dev) if os.path.realpath(dev).startswith("/dev/") else None
    if name is None or not _VOLUME_RE.match(name) or not is_slot_backed(name):
        raise Fail(f"{dev}: not a slot device, LV or md array", errno.ENODEV)
    if name.startswith("md") and not md_running(name):
        raise Fail(f"{dev}: the array is not running", errno.ENODEV)
    return name


def diskseq(name: str) -> str:
    """The kernel's sequence number of the disk under *name*: new at every attach."""
    return _sysfs_read(f"{disk_sysfs(name)}/diskseq")


def tool(*argv: str) -> str:
    """Run an LVM or mdadm command; its output, or Fail with what it said."""
    import subprocess

    try:
        proc = subprocess.run(
            argv, env=TOOL_ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=TOOL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        what = " ".join(argv[:2])
        raise Fail(f"{what}: no answer in {TOOL_TIMEOUT} s", errno.ETIMEDOUT) from None
    if proc.returncode != 0:
        said = " ".join(line.strip() for line in proc.stderr.strip().splitlines()[-3:])
        raise Fail(f"{os.path.basename(argv[0])} {argv[1]}: {said or 'failed'}", errno.EIO)
    return proc.stdout


def lvm_report(command: str, fields: str, *args: str) -> list[dict[str, str]]:
    import json

    out = json.loads(tool(LVM, command, "--reportformat", "json", "-o", fields, *args))
    rows: list[dict[str, str]] = []
    for report in out.get("report", []):
        for kind in ("pv", "vg", "lv"):
            rows.extend(report.get(kind, []))
    return rows


# ---------------------------------------------------------------- libblkid


class Blkid:
    """Filesystem and partition-table probing through libblkid (no process)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("blkid") or "libblkid.so.1")
        lib.blkid_new_probe_from_filename.restype = ctypes.c_void_p
        lib.blkid_new_probe_from_filename.argtypes = [ctypes.c_char_p]
        for fn in (
            "blkid_probe_enable_superblocks",
            "blkid_probe_enable_partitions",
            "blkid_probe_set_superblocks_flags",
            "blkid_probe_set_partitions_flags",
        ):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.blkid_do_safeprobe.argtypes = [ctypes.c_void_p]
        lib.blkid_probe_numof_values.argtypes = [ctypes.c_void_p]
        lib.blkid_probe_get_value.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.blkid_free_probe.argtypes = [ctypes.c_void_p]
        lib.blkid_probe_filter_superblocks_type.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        self.lib = lib

    def probe(self, dev: str, only: tuple[str, ...] = ()) -> dict[str, str]:
        """What libblkid finds on *dev*; with *only*, just those superblock types are
        looked for (and no partition table): much cheaper under TCG."""
        lib = self.lib
        pr = lib.blkid_new_probe_from_filename(dev.encode())
        if not pr:
            e = ctypes.get_errno() or errno.EIO
            raise Fail(f"{dev}: cannot probe: {os.strerror(e)}", e)
        try:
            lib.blkid_probe_enable_superblocks(pr, 1)
            # LABEL | UUID | TYPE | SECTYPE | USAGE | VERSION
            lib.blkid_probe_set_superblocks_flags(
                pr, (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8)
            )
            if only:
                names = (ctypes.c_char_p * (len(only) + 1))(*[t.encode() for t in only], None)
                lib.blkid_probe_filter_superblocks_type(pr, BLKID_FLTR_ONLYIN, names)
            else:
                lib.blkid_probe_enable_partitions(pr, 1)
                lib.blkid_probe_set_partitions_flags(pr, 1 << 2)  # ENTRY_DETAILS: PART_ENTRY_*
            rc = lib.blkid_do_safeprobe(pr)
            if rc < 0:
                return {"AMBIVALENT": "1"} if rc == -2 else {}
            values: dict[str, str] = {}
            name, data = ctypes.c_char_p(), ctypes.c_char_p()
            size = ctypes.c_size_t()
            for i in range(lib.blkid_probe_numof_values(pr)):
                if (
                    lib.blkid_probe_get_value(
                        pr, i, ctypes.byref(name), ctypes.byref(data), ctypes.byref(size)
                    )
                    == 0
                ):
                    key = (name.value or b"").decode()
                    values[key] = (data.value or b"").decode("utf-8", "replace")
            return values
        finally:
            lib.blkid_free_probe(pr)


# ---------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount point, source, root within the filesystem, fstype) of every mount, in
    mount order."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            result.append(
                (_unescape(fields[4]), _unescape(fields[sep + 2]), _unescape(fields[3]),
                 fields[sep + 1])
            )
    return result


def api_mountpoint(real: str) -> str | None:
    if real == SYSROOT:
        return "/"
    if real.startswith(SYSROOT + "/"):
        return real[len(SYSROOT) :]
    return None


def guest_mounts() -> list[tuple[str, str, str | None]]:
    """(API mount point, API name of what is mounted, kernel name of its device) of the
    mounts under /sysroot.  The device comes from the source, not the mount's device
    number (btrfs mounts have an anonymous one); a btrfs subvolume is named
    ``btrfsvol:DEVICE/PATH``, as list_filesystems names it."""
    out = []
    for real, source, root, fstype in mountinfo():
        api = api_mountpoint(real)
        if api is None:
            continue
        name = block_name(source) if source.startswith("/dev/") else None
        shown = canonical(name) if name is not None else source
        if fstype == "btrfs" and root != "/":
            shown = f"{BTRFSVOL}{shown}/{root.strip('/')}"
        out.append((api, shown, name))
    return out


def file_kind(mode: int) -> str:
    """What a file of *mode* is, in words."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "of an unknown type"


def check_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise Fail(f"{path!r}: path must be absolute", errno.EINVAL)
    if "\0" in path:
        raise Fail("path contains a NUL byte", errno.EINVAL)
    return path


class Sysroot:
    """Run file operations with the mounted guest filesystem as root (chroot in/out)."""

    def __init__(self) -> None:
        self.real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        if not os.path.ismount(SYSROOT):
            raise Fail("no filesystem is mounted on /: call mount first", errno.ENOENT)
        os.chroot(SYSROOT)
        os.chdir("/")
        try:
            yield
        finally:
            os.fchdir(self.real_root)
            os.chroot(".")
            os.chdir("/")

    def open_regular(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open regular file *path* in the guest filesystem; anything else is refused.

        Opened non-blocking, so that a FIFO cannot wedge the agent, and checked
        with fstat before a byte is read or written: a guest's FIFO, socket or
        device node is never read from (mounts are nodev as well).
        """
        with self.inside():
            try:
                fd = os.open(check_path(path), flags | os.O_CLOEXEC | os.O_NONBLOCK, mode)
            except OSError:
                # EACCES (a device node on a nodev mount), ENXIO (a FIFO opened for
                # writing with no reader)...: say what the file is, when that is why
                try:
                    mode_found = os.stat(path).st_mode
                except OSError:
                    mode_found = stat.S_IFREG
                if not stat.S_ISREG(mode_found):
                    raise Fail(f"{path}: not a regular file ({file_kind(mode_found)})",
                               errno.EINVAL) from None
                raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise Fail(f"{path}: not a regular file ({file_kind(st.st_mode)})", errno.EINVAL)
        os.set_blocking(fd, True)
        return fd


# ---------------------------------------------------------------- the agent


class Agent:
    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_CLOEXEC)
        self.disks = Disks()
        # udevd's own netlink group: a message there means udevd finished an event.
        self.udev_events = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT
        )
        self.udev_events.bind((0, 2))
        self.udev_events.setblocking(False)
        self.blkid = Blkid()
        self.root = Sysroot()
        self.subvolumes: dict[str, list[str]] = {}
        #: The disks of read-only slots, as name@diskseq (a name is reused, a seq is not).
        self.readonly_disks: set[str] = set()
        self.powering_off = False
        #: Requests that arrived while a download was streaming, served after it.
        self.queued: collections.deque[tuple[int, bytes]] = collections.deque()
        self.calls: dict[str, Callable[..., Any]] = {
            name[5:]: getattr(self, name) for name in dir(self) if name.startswith("call_")
        }

    # ---- channel

    def send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def send_message(self, obj: dict[str, Any]) -> None:
        self.send(wire.encode_message(obj))

    def read_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(self.fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def read_frame(self) -> tuple[int, bytes] | None:
        if self.queued:
            return self.queued.popleft()
        return self.read_channel_frame()

    def read_channel_frame(self) -> tuple[int, bytes] | None:
        header = self.read_exact(wire.HEADER.size)
        if header is None:
            return None
        kind, length = wire.decode_header(header)
        payload = self.read_exact(length) if length else b""
        if payload is None:
            return None
        return kind, payload

    def wait_for_host(self) -> None:
        """The host went away (read() gave EOF): wait until it is back, then announce."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            events = poller.poll(1000)
            if events and not events[0][1] & select.POLLHUP:
                break
            time.sleep(0.05)  # POLLHUP is reported continuously while the host is away
        self.hello()

    def hello(self) -> None:
        self.send_message(
            {"event": "hello", "version": wire.PROTOCOL_VERSION, "kernel": os.uname().release}
        )

    def serve(self) -> None:
        self.hello()
        while True:
            frame = self.read_frame()
            if frame is None:
                self.wait_for_host()
                continue
            kind, payload = frame
            if kind != wire.MSG:
                continue  # a stray chunk of a cancelled transfer
            self.handle(wire.decode_message(payload))
            if self.powering_off:
                libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)

    def handle(self, msg: dict[str, Any]) -> None:
        call_id = msg.get("id")
        name = msg.get("call")
        args = msg.get("args") or {}
        fn = self.calls.get(str(name))
        try:
            if fn is None:
                raise Fail(f"unknown call {name!r}", errno.ENOSYS)
            result = fn(**args)
            reply: dict[str, Any] = {"id": call_id, "ok": result}
        except Fail as e:
            reply = {"id": call_id, "error": {"type": "Fail", "message": str(e), "errno": e.errno}}
        except OSError as e:
            where = f": {e.filename}" if e.filename is not None else ""
            reply = {
                "id": call_id,
                "error": {
                    "type": "OSError",
                    "errno": e.errno or 0,
                    "message": f"{e.strerror or e}{where}",
                },
            }
        except Exception as e:
            log(traceback.format_exc())
            reply = {
                "id": call_id,
                "error": {"type": type(e).__name__, "message": str(e), "errno": 0},
            }
        self.send_message(reply)

    # ---- streams

    def send_file(self, fd: int) -> None:
        """Stream an open file as D frames then E; stop early if the host cancels."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        try:
            while True:
                chunk = os.read(fd, wire.CHUNK)
                if not chunk:
                    break
                self.send(wire.encode(wire.DATA, chunk))
                if poller.poll(0):
                    frame = self.read_channel_frame()
                    if frame is not None and frame[0] == wire.CANCEL:
                        self.send(wire.encode(wire.END))
                        raise Fail("cancelled by the host", errno.ECANCELED)
                    if frame is not None and frame[0] == wire.MSG:
                        self.queued.append(frame)  # a request: never dropped, served next
            self.send(wire.encode(wire.END))
        finally:
            os.close(fd)

    def receive_file(self, fd: int | None) -> int:
        """Write D frames to *fd* until E; return the byte count.  C cancels."""
        total = 0
        error: OSError | None = None
        try:
            while True:
                frame = self.read_frame()
                if frame is None:
                    raise Fail("host went away during upload", errno.EPIPE)
                kind, payload = frame
                if kind == wire.END:
                    break
                if kind == wire.CANCEL:
                    raise Fail("cancelled by the host", errno.ECANCELED)
                if kind == wire.DATA and fd is not None and error is None:
                    try:
                        view = memoryview(payload)
                        while view:
                            view = view[os.write(fd, view) :]
                        total += len(payload)
                    except OSError as e:
                        error = e  # keep reading to the end of the stream
        finally:
            if fd is not None:
                os.close(fd)
        if error is not None:
            raise error
        return total

    # ---- calls: disks

    def call_ping(self) -> str:
        return "pong"

    def call_wait_disk(
        self, target: int, plugged: bool = True, timeout: float = 30.0
    ) -> str | None:
        return self.disks.wait(int(target), bool(plugged), float(timeout))

    def call_wait_link(self, name: str, timeout: float = 10.0) -> str:
        """Wait until udev has made /dev/disk/guestslots/NAME; return its target device."""
        if "/" in name or name in ("", ".", ".."):
            raise Fail(f"{name!r}: not a link name", errno.EINVAL)
        link = f"{LINK_DIR}/{name}"
        deadline = time.monotonic() + float(timeout)
        poller = select.poll()
        poller.register(self.udev_events, select.POLLIN)
        while True:
            while True:  # each processed udev event is a reason to look again
                try:
                    self.udev_events.recv(65536)
                except BlockingIOError:
                    break
                except OSError as e:  # overflowed while nobody waited: harmless here
                    if e.errno != errno.ENOBUFS:
                        raise
            if os.path.islink(link):
                return os.path.realpath(link)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{link} did not appear in {float(timeout):g} s", errno.ETIMEDOUT)
            poller.poll(left * 1000)

    def call_list_partitions(self, disks: list[str]) -> list[str]:
        out: list[str] = []
        for dev in disks:
            disk, _ = kernel_device(dev)
            out.extend(f"/dev/{p}" for p in partitions_of(disk))
        return out

    def fs_entries(self, name: str, api: str) -> list[list[str]]:
        """[api, type] pairs for list_filesystems, from one probe: none for containers
        (PVs, RAID members, LUKS, MBR extended and Windows LDM/reserved partitions); a
        btrfs adds its subvolumes other than the default one."""
        found = self.blkid.probe(f"/dev/{name}")
        fstype = found.get("TYPE", "")
        if found.get("PART_ENTRY_TYPE", "").lower() in _NO_FS_PART_TYPES:
            return []
        if fstype.endswith("_member") or fstype == "crypto_LUKS":
            return []
        entries = [[api, fstype or "unknown"]]
        if fstype == "btrfs":
            entries += [[f"{BTRFSVOL}{api}/{path}", "btrfs"]
                        for path in self.btrfs_subvolumes(name)]
        return entries

    def btrfs_subvolumes(self, name: str) -> list[str]:
        """Paths of the subvolumes of the btrfs on *name*, in id order, less the default
        one (mounting the device gives that one), as libguestfs lists them.  Cached
        for as long as the same disk is attached (no call makes subvolumes)."""
        key = f"{name}@{diskseq(name)}"
        if key not in self.subvolumes:
            self.subvolumes[key] = self.list_subvolumes(name)
        return self.subvolumes[key]

    def list_subvolumes(self, name: str) -> list[str]:
        os.makedirs(BTRFS_PROBE_DIR, exist_ok=True)
        rc = libc.mount(f"/dev/{name}".encode(), BTRFS_PROBE_DIR.encode(), b"btrfs",
                        MS_RDONLY | MS_GUEST, b"subvolid=5")
        _check_libc(rc, f"mount /dev/{name} (btrfs, to list its subvolumes)")
        try:
            listing = tool(BTRFS, "subvolume", "list", BTRFS_PROBE_DIR)
            default = tool(BTRFS, "subvolume", "get-default", BTRFS_PROBE_DIR)
        finally:
            libc.umount2(BTRFS_PROBE_DIR.encode(), MNT_DETACH)
        default_id = int(default.split()[1])  # "ID 5 (FS_TREE)" or "ID 256 gen ... path x"
        paths = []
        for line in listing.splitlines():
            m = re.match(r"ID ([0-9]+) gen [0-9]+ top level [0-9]+ path (.+)$", line)
            if m and int(m.group(1)) != default_id:
                paths.append(m.group(2))
        return paths

    def call_list_filesystems(self, disks: list[str]) -> list[list[str]]:
        """As libguestfs lists them: unpartitioned disks, then partitions (both in the
        order of *disks*), then md arrays, then LVs (see :meth:`fs_entries`)."""
        whole: list[list[str]] = []
        parts: list[list[str]] = []
        for dev in disks:
            disk, _ = kernel_device(dev)
            partitions = partitions_of(disk)
            if not partitions:
                whole += self.fs_entries(disk, f"/dev/{disk}")
            for name in partitions:
                parts += self.fs_entries(name, f"/dev/{name}")
        arrays = [
            e for md in running_arrays() if not partitions_of(md)
            for e in self.fs_entries(md, f"/dev/{md}")
        ]
        lvs = [e for api, name in active_lvs() for e in self.fs_entries(name, api)]
        return whole + parts + arrays + lvs

    def call_blkid(self, device: str) -> dict[str, str]:
        return self.blkid.probe(f"/dev/{resolve_device(device)}")

    # ---- calls: LVM and md

    def call_disk_plugged(
        self, target: int, readonly: bool, activate: bool = True, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait for the disk at SCSI *target*, then :meth:`scan_volumes` it (one round
        trip): its kernel name, and what the scan did (a scan failure is a warning:
        the disk itself is usable).  A *readonly* slot's disk is writable here (its
        writes go to a throwaway overlay), so read-write mounts of anything on it
        are refused here (:meth:`check_writable`)."""
        name = self.disks.wait(int(target), True, float(timeout))
        assert name is not None
        if readonly:
            self.readonly_disks.add(f"{name}@{diskseq(name)}")
        try:
            found = self.scan_volumes(name, bool(activate))
        except (Fail, OSError) as e:
            found = {"warnings": [f"/dev/{name}: looking for PVs and RAID members failed: {e}"]}
        return {"name": name, **found}

    def scan_volumes(self, disk: str, activate: bool) -> dict[str, list[str]]:
        """After a hotplug: assemble the md arrays whose members are now all present,
        and (with *activate*) activate the complete volume groups that have a PV on
        *disk* or on a new array.  Runs nothing unless a PV or member is there."""
        names = partitions_of(disk) or [disk]
        kinds = {
            n: self.blkid.probe(f"/dev/{n}", only=CONTAINER_TYPES).get("TYPE", "")
            for n in names
        }
        result: dict[str, list[str]] = {
            "arrays": [], "activated": [], "incomplete": [], "warnings": []}
        pvs = [n for n, t in kinds.items() if t == "LVM2_member"]
        members = [n for n, t in kinds.items() if t == "linux_raid_member"]
        if members:
            before = set(running_arrays())
            for n in members:
                try:
                    tool(MDADM, "--incremental", f"--config={MDADM_CONF}", f"/dev/{n}")
                except Fail as e:
                    result["warnings"].append(f"/dev/{n}: {e}")
            for md in running_arrays():
                if md not in before:
                    result["arrays"].append(f"/dev/{md}")
                    if self.blkid.probe(f"/dev/{md}", only=CONTAINER_TYPES).get("TYPE") == \
                            "LVM2_member":
                        pvs.append(md)
        if pvs and activate:
            try:
                found = self.activate_vgs([f"/dev/{n}" for n in pvs])
            except Fail as e:
                found = {"warnings": [f"volume groups were not activated: {e}"]}
            for key, values in found.items():
                result[key].extend(values)
        return result

    def activate_vgs(self, pv_paths: list[str]) -> dict[str, list[str]]:
        """Activate every complete VG with a PV among *pv_paths*, in one LVM run: the
        VGs activated, those still incomplete, and warnings.  A second run (a report)
        only explains PVs that ended up with nothing active on them."""
        before = {api for api, _ in active_lvs()}
        warnings = []
        select = " || ".join(f"pv_name={p}" for p in pv_paths)
        try:
            tool(LVM, "vgchange", "-ay", "--select", f"({select}) && vg_missing_pv_count=0")
        except Fail as e:
            warnings.append(f"volume groups were not activated: {e}")
        activated = {api.split("/")[2] for api, _ in active_lvs() if api not in before}
        idle = [p for p in pv_paths if not holders(p.removeprefix("/dev/"))]
        incomplete: set[str] = set()
        if idle:
            for row in lvm_report("pvs", "pv_name,vg_name,vg_missing_pv_count"):
                if row.get("pv_name") in idle and row.get("vg_name") and \
                        int(row.get("vg_missing_pv_count") or 0):
                    incomplete.add(row["vg_name"])
        return {"activated": sorted(activated), "incomplete": sorted(incomplete),
                "warnings": warnings}

    def call_pvs(self) -> list[str]:
        """The physical volumes on the slots (kernel names: the host sorts its own)."""
        return [r["pv_name"] for r in lvm_report("pvs", "pv_name") if r.get("pv_name")]

    def call_vgs(self) -> list[str]:
        """The volume groups on the slots, sorted."""
        return sorted({r["vg_name"] for r in lvm_report("vgs", "vg_name") if r.get("vg_name")})

    def call_lvs(self) -> list[str]:
        """The logical volumes a user sees, as /dev/VG/LV, active or not, sorted."""
        rows = lvm_report(
            "lvs", "vg_name,lv_name", "-S", "lv_role=public && lv_skip_activation!=yes"
        )
        return sorted(f"/dev/{r['vg_name']}/{r['lv_name']}" for r in rows)

    def call_vg_activate(self, activate: bool, volgroups: list[str]) -> None:
        """Activate or deactivate the named volume groups (all of them when empty)."""
        for vg in volgroups:
            if not re.fullmatch(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*", str(vg)):
                raise Fail(f"{vg!r}: not a volume group name", errno.EINVAL)
        if not activate:
            mounted = {name for _api, _src, name in guest_mounts()}
            for api, name in active_lvs():
                vg = api.split("/")[2]
                if (not volgroups or vg in volgroups) and name in mounted:
                    raise Fail(f"{api} is mounted: unmount it first", errno.EBUSY)
        tool(LVM, "vgchange", "-ay" if activate else "-an", *volgroups)

    def call_list_dm_devices(self) -> list[str]:
        """Every device-mapper node in /dev/mapper (LVs included), sorted."""
        return [f"/dev/mapper/{n}" for n in _sysfs_list("/dev/mapper") if n != "control"]

    def call_list_md_devices(self) -> list[str]:
        """The running md arrays built on the slots."""
        return [f"/dev/{md}" for md in running_arrays()]

    def call_md_detail(self, md: str) -> dict[str, str]:
        """What mdadm says of an array (level, devices, metadata, uuid, name...)."""
        name = resolve_device(md)
        if not name.startswith("md"):
            raise Fail(f"{md}: not an md array", errno.EINVAL)
        out: dict[str, str] = {}
        per_member: dict[str, dict[str, str]] = {}
        for line in tool(MDADM, "-D", "--export", f"/dev/{name}").splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key = key.removeprefix("MD_").lower()
            m = re.fullmatch(r"device_(.+)_(role|dev)", key)
            if m is None:
                out[key] = value
            else:  # mdadm's per-member keys embed kernel names: give device names instead
                per_member.setdefault(m.group(1), {})[m.group(2)] = value
        def role(member: dict[str, str]) -> int:  # active roles first, then spares...
            return int(member["role"]) if member.get("role", "").isdigit() else 1 << 30

        out["members"] = " ".join(
            m["dev"] for m in sorted(per_member.values(), key=role) if "dev" in m)
        return out

    # ---- calls: unplugging

    def users_of(self, disk: str) -> list[str]:
        """Why *disk* cannot go now: mounts on it or on what is stacked on it, running
        arrays it is a member of, active volume groups it holds a PV of."""
        names = [disk, *partitions_of(disk)]
        stack = stacked_on(names)
        users = [
            f"{src} is mounted on {mp}"
            for mp, src, name in guest_mounts()
            if name in names or name in stack
        ]
        for n in names:
            seen_vgs: set[str] = set()
            for h in holders(n):
                if h.startswith("md"):
                    if md_running(h):
                        users.append(f"/dev/{n} is a member of running RAID array /dev/{h}")
                    continue
                uuid = lvm_uuid(h)
                if uuid is None:
                    users.append(f"/dev/{n} is held by {canonical(h)}")
                    continue
                if uuid[4:36] in seen_vgs:
                    continue
                seen_vgs.add(uuid[4:36])
                lvs = [api for api, lv in active_lvs() if (lvm_uuid(lv) or "")[4:36] == uuid[4:36]]
                vg = split_dm_name(dm_name(h))[0]
                users.append(
                    f"/dev/{n} is a physical volume of active volume group {vg} "
                    f"({', '.join(lvs)})"
                )
        return users

    def teardown_stack(self, names: list[str]) -> None:
        """Unmount and deactivate everything stacked on *names*: whole volume groups
        (their LVs elsewhere too), md arrays, other dm devices; topmost first."""
        stack = stacked_on(names)
        vg_uuids = {u[4:36] for u in (lvm_uuid(d) for d in stack) if u}
        whole_vgs = [
            n for n in _sysfs_list("/sys/block")
            if n.startswith("dm-") and (lvm_uuid(n) or "")[4:36] in vg_uuids
        ]
        victims = set(names) | set(stack) | set(whole_vgs) | set(stacked_on(whole_vgs))
        ours = [mp for mp, _src, name in guest_mounts() if name in victims]
        doomed = [
            mp for mp, _src, _name in guest_mounts()
            if any(mp == o or mp.startswith(o.rstrip("/") + "/") for o in ours)
        ]
        for mp in reversed(doomed):  # deepest first
            _check_libc(libc.umount2(self.real_mountpoint(mp).encode(), 0), f"umount {mp}")
        sequence: list[str] = []
        for dev in stacked_on(whole_vgs) + whole_vgs + stack:
            if dev not in sequence:
                sequence.append(dev)
        for dev in sequence:
            if not os.path.exists(f"/sys/class/block/{dev}"):
                continue  # went with its volume group
            uuid = lvm_uuid(dev)
            if uuid is not None:
                tool(LVM, "vgchange", "-an", "--select", f"vg_uuid={dashed_uuid(uuid[4:36])}")
            elif dev.startswith("dm-"):
                tool(DMSETUP, "remove", dm_name(dev))
            elif dev.startswith("md"):
                tool(MDADM, "--stop", f"/dev/{dev}")

    def release_inactive_arrays(self, names: list[str]) -> None:
        """Take *names* out of md arrays that are not running (assembled partly)."""
        for n in names:
            for h in holders(n):
                if h.startswith("md") and not md_running(h):
                    with open(f"/sys/block/{h}/md/dev-{n}/state", "w") as f:
                        f.write("remove")
                    if not slaves(h):  # an empty array: gone too
                        with open(f"/sys/block/{h}/md/array_state", "w") as f:
                            f.write("clear")

    def call_prepare_unplug(self, device: str, force: bool = False) -> list[str]:
        """Make a disk safe to remove: nothing mounted or stacked on it, everything
        written.  Returns what uses it (and does nothing) unless *force*."""
        disk, _ = kernel_device(device)
        users = self.users_of(disk)
        if users and not force:
            return users
        names = [disk, *partitions_of(disk)]
        if users:
            self.teardown_stack(names)
        self.release_inactive_arrays(names)
        os.sync()
        fd = os.open(f"/dev/{disk}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            fcntl.ioctl(fd, BLKFLSBUF)
        finally:
            os.close(fd)
        left = self.users_of(disk) or [
            f"/dev/{n} is held by {canonical(h)}" for n in names for h in holders(n)
        ]
        if left:
            raise Fail(f"/dev/{disk} is still in use: {', '.join(left)}", errno.EBUSY)
        return []

    # ---- calls: mounts

    @staticmethod
    def real_mountpoint(api: str) -> str:
        return SYSROOT if api == "/" else SYSROOT + api

    def check_writable(self, name: str) -> bool:
        """Whether block device *name* is on writable slots only (False: some slot disk
        under it, even under an LV or array, was plugged read-only)."""
        return not any(f"{d}@{diskseq(d)}" in self.readonly_disks
                       for d in slot_disks_under(name) or ())

    def call_mount(
        self,
        device: str,
        mountpoint: str,
        readonly: bool | None = False,
        options: str = "",
        fstype: str = "",
        subvolume: str = "",
    ) -> None:
        """Mount *device* (its btrfs *subvolume*, if given) on *mountpoint*.  *readonly*
        None: read-only if it is on a read-only slot; False: refused if it is."""
        name = resolve_device(device)
        check_path(mountpoint)
        if not readonly and not self.check_writable(name):
            if readonly is False:
                raise Fail(f"{canonical(name)} is on a slot plugged read-only: use mount_ro, or "
                           "hotplug it with readonly=False", errno.EROFS)
            readonly = True
        if subvolume:
            options = ",".join(o for o in (options, f"subvol={subvolume}") if o)
            fstype = fstype or "btrfs"
        if not fstype:
            fstype = self.blkid.probe(f"/dev/{name}").get("TYPE", "")
            if not fstype:
                raise Fail(f"/dev/{name}: no filesystem found", errno.EINVAL)
        if fstype in ERRORS_OPTION_FS and not any(
                o.startswith("errors=") for o in options.split(",")):
            options = ",".join(o for o in (options, "errors=remount-ro") if o)
        flags = (MS_RDONLY if readonly else 0) | MS_GUEST
        fd = None
        if mountpoint == "/":
            if os.path.ismount(SYSROOT):
                raise Fail("a filesystem is already mounted on /", errno.EBUSY)
            target = SYSROOT
        else:
            # Resolve the mount point inside the guest filesystem, then mount on
            # the resolved directory: a guest symlink cannot redirect the mount.
            with self.root.inside():
                fd = os.open(mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            target = f"/proc/self/fd/{fd}"
        try:
            rc = libc.mount(
                f"/dev/{name}".encode(),
                target.encode(),
                fstype.encode(),
                flags,
                options.encode() if options else None,
            )
            _check_libc(rc, f"mount /dev/{name} on {mountpoint} ({fstype})")
        finally:
            if fd is not None:
                os.close(fd)

    def call_umount(self, mountpoint: str) -> None:
        check_path(mountpoint)
        mp = os.path.normpath(mountpoint)
        for api, _src, _dev in reversed(guest_mounts()):
            if api == mp:
                _check_libc(
                    libc.umount2(self.real_mountpoint(api).encode(), 0), f"umount {mountpoint}"
                )
                return
        raise Fail(f"{mountpoint}: not a mount point", errno.EINVAL)

    def call_umount_all(self) -> None:
        for api, _src, _dev in reversed(guest_mounts()):
            _check_libc(libc.umount2(self.real_mountpoint(api).encode(), 0), f"umount {api}")
        os.sync()

    def call_mounts(self) -> list[list[str]]:
        return [[src, api] for api, src, _name in guest_mounts()]

    # ---- calls: files (guest paths, resolved with the guest filesystem as root)

    def call_ls(self, path: str) -> list[str]:
        with self.root.inside():
            return sorted(os.listdir(check_path(path)))

    def call_stat(self, path: str, follow: bool = True) -> dict[str, int]:
        with self.root.inside():
            st = os.stat(check_path(path), follow_symlinks=follow)
        return {
            "mode": st.st_mode,
            "ino": st.st_ino,
            "dev": st.st_dev,
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "size": st.st_size,
            "atime": st.st_atime_ns,
            "mtime": st.st_mtime_ns,
            "ctime": st.st_ctime_ns,
        }

    def call_exists(self, path: str) -> bool:
        with self.root.inside():
            return os.path.lexists(check_path(path))

    def call_is_file(self, path: str, follow: bool = False) -> bool:
        with self.root.inside():
            try:
                st = os.stat(check_path(path), follow_symlinks=follow)
            except FileNotFoundError:
                return False
        return stat.S_ISREG(st.st_mode)

    def call_is_dir(self, path: str, follow: bool = False) -> bool:
        with self.root.inside():
            try:
                st = os.stat(check_path(path), follow_symlinks=follow)
            except FileNotFoundError:
                return False
        return stat.S_ISDIR(st.st_mode)

    def call_readlink(self, path: str) -> str:
        with self.root.inside():
            return os.readlink(check_path(path))

    def call_mkdir(self, path: str, parents: bool = False, mode: int = 0o755) -> None:
        with self.root.inside():
            if parents:
                os.makedirs(check_path(path), mode, exist_ok=True)
            else:
                os.mkdir(check_path(path), mode)

    def call_rm(self, path: str) -> None:
        with self.root.inside():
            os.unlink(check_path(path))

    def call_rmdir(self, path: str) -> None:
        with self.root.inside():
            os.rmdir(check_path(path))

    def call_download(self, path: str) -> int:
        fd = self.root.open_regular(path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        self.send_file(fd)
        return size

    def call_upload(self, path: str, mode: int = 0o644) -> int:
        try:
            fd: int | None = self.root.open_regular(
                path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        except (OSError, Fail) as e:
            self.receive_file(None)  # consume the stream, then report why
            raise e
        return self.receive_file(fd)

    def call_checksum(self, csumtype: str, path: str) -> str:
        if csumtype not in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
            raise Fail(f"unknown checksum type {csumtype!r}", errno.EINVAL)
        h = hashlib.new(csumtype)
        fd = self.root.open_regular(path, os.O_RDONLY)
        try:
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        finally:
            os.close(fd)
        return h.hexdigest()

    def call_statvfs(self, path: str) -> dict[str, int]:
        with self.root.inside():
            st = os.statvfs(check_path(path))
        return {
            "bsize": st.f_bsize,
            "frsize": st.f_frsize,
            "blocks": st.f_blocks,
            "bfree": st.f_bfree,
            "bavail": st.f_bavail,
            "files": st.f_files,
            "ffree": st.f_ffree,
            "favail": st.f_favail,
            "flag": st.f_flag,
            "namemax": st.f_namemax,
        }

    def call_sync(self) -> None:
        os.sync()

    def call_shutdown(self) -> None:
        with contextlib.suppress(Fail, OSError):
            self.call_umount_all()
        os.sync()
        self.powering_off = True


def main() -> None:
    if os.getpid() == 1:
        early_setup()
    Agent(find_port()).serve()


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        log(traceback.format_exc())
        if os.getpid() == 1:
            os.sync()
            libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)
        raise
