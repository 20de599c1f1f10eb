"""What every area of the agent shares: constants, errors, libc, running a tool.

Names the host must agree on (the port, the link directory, ``btrfsvol:``, dm-name
splitting) come from :mod:`wire`, imported by both sides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import stat
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import wire  # type: ignore[import-not-found]  # beside the agent in the appliance

AGENT_PORT: str = wire.AGENT_PORT
LINK_DIR: str = wire.LINK_DIR
BTRFSVOL: str = wire.BTRFSVOL
split_dm_name: Callable[[str], list[str]] = wire.split_dm_name


SYSROOT = "/sysroot"


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


MDADM_CONF: str = wire.MDADM_CONF


TOOL_TIMEOUT = 60  # seconds: below the host's call timeout, so a stuck tool is reported


# LVM and mdadm run only when a disk holds a PV or a RAID member, or on an LVM or
# md call.  They make their own device nodes (the appliance has no dm/md udev rules).
TOOL_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C",
    "LVM_SYSTEM_DIR": wire.LVM_SYSTEM_DIR,
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


#: umount2: do not follow a symlink in the last component of the path.
UMOUNT_NOFOLLOW = 8


SYS_OPENAT2 = 437  # x86_64
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def open_in_root(root: str, path: str, flags: int) -> int:
    """Open *path* with directory *root* as its root, as the kernel resolves it
    (``openat2`` with ``RESOLVE_IN_ROOT``): absolute symlinks and ``..`` stay inside
    *root*, no ``/proc`` magic link is followed, and a rename racing the lookup makes
    it fail instead of escaping.  A descriptor (``O_CLOEXEC``)."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd),
                          check_path(path).encode(), how, ctypes.c_size_t(len(how)))
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{path}: {os.strerror(e)}")
        return int(fd)
    finally:
        os.close(dirfd)


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


def _sysfs_read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def run_tool(argv: list[str], what: str, timeout: float = TOOL_TIMEOUT,
             input: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool with the tools' environment and a time limit, its output captured as
    text, stdin empty unless *input* is given (*kwargs*: more of subprocess.run's, such
    as ``stdin``, ``cwd``, ``pass_fds``, ``env``).  The finished process, whatever its
    exit status; Fail (naming it by *what*) only when it does not end in time."""
    kwargs.setdefault("env", TOOL_ENV)
    if input is None:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    try:
        # errors="replace": a guest's file names in a tool's output are any bytes
        return subprocess.run(argv, input=input, capture_output=True, text=True,
                              errors="replace", timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise Fail(f"{what}: no answer in {timeout:g} s", errno.ETIMEDOUT) from None


def tool(*argv: str, what: str = "", timeout: float = TOOL_TIMEOUT,
         input: str | None = None) -> str:
    """Run a tool (LVM, mdadm, parted, mkfs...); its output, or Fail with what it said
    (*what* names it in the message: the program and its first argument by default)."""
    what = what or " ".join([os.path.basename(argv[0]), *argv[1:2]])
    proc = run_tool(list(argv), what, timeout, input)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        usage = next((i for i, line in enumerate(lines) if line.startswith("Usage:")), None)
        lines = lines[:usage] if usage else lines  # what went wrong, not the usage text
        errors = [line for line in lines if line.startswith("Error:")]
        lines = errors or lines  # parted: its errors, not its warnings about udev
        said = " ".join(line.strip() for line in lines[-3:])
        raise Fail(f"{what}: {said or 'failed'}", errno.EIO)
    return proc.stdout


def file_kind(mode: int) -> str:
    """What a file of *mode* is, in words."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "of an unknown type"


def open_regular_here(path: str, flags: int, mode: int = 0o644) -> int:
    """Open regular file *path* (the caller is inside the guest root); anything else is
    refused.  Opened non-blocking, so that a guest's FIFO cannot wedge the agent (a
    FIFO opened for writing would wait for a reader forever), and checked with fstat
    before a byte is read or written: a guest's FIFO, socket or device node is never
    used (mounts are nodev as well)."""
    try:
        fd = os.open(check_path(path), flags | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError:
        # EACCES (a device node on a nodev mount), ENXIO (a FIFO opened for writing
        # with no reader)...: say what the file is, when that is why
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


def check_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise Fail(f"{path!r}: path must be absolute", errno.EINVAL)
    if "\0" in path:
        raise Fail("path contains a NUL byte", errno.EINVAL)
    return path
