"""Making and looking after filesystems on the slots: mkfs, mkswap, labels, UUIDs,
growing, checking, zeroing free space, trimming.

Each runs the filesystem's own tool (mke2fs, mkfs.xfs, e2label, xfs_admin...)
with libguestfs's arguments, on a device of writable slots only (a read-only
slot's writes would land in a throwaway overlay: refused, not lost), and, where
the tool needs the filesystem unmounted, only when nothing on the device is in
use: a mounted filesystem is never made again under its own feet.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os

from .blockdev import canonical, resolve_device, slot_disks_under
from .common import Fail, run_tool, tool
from .mounts import MountCalls, check_unused, guest_mounts, real_mountpoint

EXTFS = ("ext2", "ext3", "ext4")
MKFS_TYPES = (*EXTFS, "xfs", "vfat", "msdos", "fat", "btrfs")
#: FITRIM: _IOWR('X', 121, struct fstrim_range)
FITRIM = 0xC0185879
#: FIFREEZE, FITHAW: _IOWR('X', 119, int), _IOWR('X', 120, int)
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
#: Long jobs (mkfs of a big disk, fsck, zerofree, resize) get longer than a query.
LONG_TOOL_TIMEOUT = 3600


class _FstrimRange(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64),
                ("minlen", ctypes.c_uint64)]


def _power_of_2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class FsToolCalls(MountCalls):
    """mkfs and the filesystem tools libguestfs offers, on writable slots only."""

    def _fstype(self, name: str) -> str:
        fstype = self.blkid.probe(f"/dev/{name}").get("TYPE", "")
        if not fstype:
            raise Fail(f"{canonical(name)}: no filesystem found", errno.EINVAL)
        return fstype

    def call_mkfs(self, fstype: str, device: str, blocksize: int = 0, features: str = "",
                  inode: int = 0, sectorsize: int = 0, label: str = "") -> None:
        """Make a filesystem of *fstype* on *device*, as libguestfs's mkfs."""
        if fstype not in MKFS_TYPES:
            raise Fail(f"{fstype!r}: filesystem types made here: {', '.join(MKFS_TYPES)}",
                       errno.EINVAL)
        name = self.writable_device(device)
        dev = f"/dev/{name}"
        blocksize, inode, sectorsize = int(blocksize), int(inode), int(sectorsize)
        if fstype in EXTFS:
            argv = ["mke2fs", "-t", fstype, "-F"]
        else:
            argv = [f"mkfs.{fstype}"]  # not through mkfs(8): one process less
            if fstype in ("xfs", "btrfs"):
                argv.append("-f")  # overwrite what is there, as mke2fs -F does
        if blocksize:
            if not _power_of_2(blocksize):
                raise Fail("block size must be > 0 and a power of 2", errno.EINVAL)
            if fstype in ("vfat", "msdos", "fat"):
                per_cluster = blocksize // 512
                if not 1 <= per_cluster <= 128:
                    raise Fail(f"unsupported cluster size for {fstype} filesystem "
                               f"(requested cluster size = {blocksize}, sector size = 512)",
                               errno.EINVAL)
                argv += ["-s", str(per_cluster)]
            elif fstype == "btrfs":
                raise Fail("blocksize cannot be set on btrfs filesystems", errno.EINVAL)
            else:
                argv += ["-b", str(blocksize)]
        if features:
            argv += ["-O", features]
        if inode:
            if fstype not in EXTFS:
                raise Fail("inode size (-I) can only be set on ext2/3/4 filesystems",
                           errno.EINVAL)
            if inode <= 0:
                raise Fail("inode size must be larger than zero", errno.EINVAL)
            argv += ["-I", str(inode)]
        if sectorsize:
            raise Fail("sector size (-S) can only be set on ufs filesystems", errno.EINVAL)
        if label:
            argv += ["-n" if fstype in ("vfat", "msdos", "fat") else "-L", label]
        tool(*argv, dev, what=f"mkfs {fstype} {canonical(name)}",
             timeout=LONG_TOOL_TIMEOUT)

    def call_mkswap(self, device: str, label: str = "", uuid: str = "") -> None:
        """Make a swap area on *device*."""
        name = self.writable_device(device)
        argv = ["mkswap", "-f"]
        if label:
            argv += ["-L", label]
        if uuid:
            argv += ["-U", uuid]
        tool(*argv, f"/dev/{name}", what=f"mkswap {canonical(name)}")

    def call_set_label(self, mountable: str, label: str) -> None:
        """Set the label of the filesystem on *mountable*."""
        name = resolve_device(mountable)
        fstype = self._fstype(name)
        # btrfs and ext* change a label while mounted; the others want it unmounted
        self.writable_device(mountable, unused=fstype not in ("btrfs", *EXTFS))
        dev = f"/dev/{name}"
        what = f"set-label {canonical(name)}"
        if fstype in EXTFS:
            if len(label.encode()) > 16:
                raise Fail(f"{fstype} labels are limited to 16 bytes", errno.EINVAL)
            tool("e2label", dev, label, what=what)
        elif fstype == "xfs":
            if len(label.encode()) > 12:
                raise Fail("xfs labels are limited to 12 bytes", errno.EINVAL)
            tool("xfs_admin", "-L", label or "--", dev, what=what)
        elif fstype == "btrfs":
            mounted = [mp for mp, _, n in guest_mounts() if n == name]
            target = real_mountpoint(mounted[0]) if mounted else dev
            tool("btrfs", "filesystem", "label", target, label, what=what)
        elif fstype == "vfat":
            if len(label.encode()) > 11:
                raise Fail("vfat labels are limited to 11 bytes", errno.EINVAL)
            tool("fatlabel", *(["-r"] if not label else []), dev, *([label] if label else []),
                 what=what)
        elif fstype == "swap":
            tool("swaplabel", "-L", label, dev, what=what)
        else:
            raise Fail(f"don't know how to set the label for '{fstype}' filesystems",
                       errno.EOPNOTSUPP)

    def call_set_uuid(self, device: str, uuid: str) -> None:
        """Set the UUID of the filesystem on *device* (unmounted)."""
        name = self.writable_device(device)
        fstype = self._fstype(name)
        dev = f"/dev/{name}"
        what = f"set-uuid {canonical(name)}"
        if fstype in EXTFS:
            tool("tune2fs", "-U", uuid, dev, what=what)
        elif fstype == "xfs":
            tool("xfs_admin", "-U", uuid, dev, what=what)
        elif fstype == "btrfs":
            tool("btrfstune", "-f", "-U", uuid, dev, what=what)
        elif fstype == "swap":
            tool("swaplabel", "-U", uuid, dev, what=what)
        else:
            raise Fail(f"don't know how to set the UUID for '{fstype}' filesystems",
                       errno.EOPNOTSUPP)

    def call_resize2fs(self, device: str, size: int = 0, minimum: bool = False) -> None:
        """Grow or shrink the ext2/3/4 filesystem on *device* (unmounted) to fill it,
        to *size* bytes, or (*minimum*) to its smallest."""
        name = self.writable_device(device)
        argv = ["resize2fs"]
        if minimum:
            argv.append("-M")
        argv.append(f"/dev/{name}")
        if size:
            argv.append(f"{int(size) // 1024}K")
        tool(*argv, what=f"resize2fs {canonical(name)}", timeout=LONG_TOOL_TIMEOUT)

    def call_e2fsck_f(self, device: str) -> None:
        """Check and repair the ext2/3/4 filesystem on *device* even if it seems clean
        (``e2fsck -p -f``), as resize2fs asks first."""
        name = self.writable_device(device)
        proc = run_tool(["e2fsck", "-p", "-f", f"/dev/{name}"], f"e2fsck {canonical(name)}",
                        LONG_TOOL_TIMEOUT)
        if proc.returncode & ~1:  # 1: errors corrected
            said = " ".join(proc.stderr.strip().splitlines()[-3:])
            raise Fail(f"e2fsck {canonical(name)}: {said or proc.returncode}", errno.EIO)

    def call_xfs_growfs(self, path: str) -> None:
        """Grow the mounted xfs filesystem at guest mount point *path* to fill its
        device."""
        for mp, _, name in guest_mounts():
            if mp == path and name is not None:
                if not self.check_writable(name):
                    raise Fail(f"{canonical(name)} is on a slot plugged read-only",
                               errno.EROFS)
                tool("xfs_growfs", "-d", real_mountpoint(mp),
                     what=f"xfs_growfs {path}", timeout=LONG_TOOL_TIMEOUT)
                return
        raise Fail(f"{path}: not a mount point", errno.EINVAL)

    def call_fsck(self, fstype: str, device: str, repair: bool = False) -> int:
        """Check the filesystem of *fstype* on *device* (unmounted); with *repair*, fix
        what can be fixed without questions.  The checker's exit status."""
        name = resolve_device(device)
        if repair:
            self.writable_device(device)
        else:
            check_unused([name])
        dev = f"/dev/{name}"
        if fstype in EXTFS:
            argv = ["e2fsck", "-p" if repair else "-n", dev]
        elif fstype == "xfs":
            argv = ["xfs_repair", *([] if repair else ["-n"]), dev]
        elif fstype in ("vfat", "msdos", "fat"):
            argv = ["fsck.fat", "-a" if repair else "-n", dev]
        elif fstype == "btrfs" and not repair:
            argv = ["btrfs", "check", "--readonly", dev]
        else:
            raise Fail(f"fsck of '{fstype}' filesystems{' with repair' if repair else ''} "
                       "is not offered", errno.EOPNOTSUPP)
        return run_tool(argv, f"fsck {canonical(name)}", LONG_TOOL_TIMEOUT).returncode

    def call_zerofree(self, device: str) -> None:
        """Zero the unused blocks of the ext2/3/4 filesystem on *device* (unmounted), so
        that the image can be sparsified."""
        name = self.writable_device(device)
        tool("zerofree", f"/dev/{name}", what=f"zerofree {canonical(name)}",
             timeout=LONG_TOOL_TIMEOUT)

    def call_fstrim(self, mountpoint: str, offset: int = 0, length: int = -1,
                    minimumfreeextent: int = 0) -> None:
        """Discard the unused blocks of the filesystem mounted at *mountpoint*
        (FITRIM), so that the image can shrink."""
        for mp, _, name in guest_mounts():
            if mp == mountpoint:
                if name is not None and not self.check_writable(name):
                    raise Fail(f"{canonical(name)} is on a slot plugged read-only",
                               errno.EROFS)
                break
        else:
            raise Fail(f"{mountpoint}: not a mount point", errno.EINVAL)
        fd = os.open(real_mountpoint(mountpoint),
                     os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            rng = _FstrimRange(int(offset), (1 << 64) - 1 if int(length) < 0 else int(length),
                               int(minimumfreeextent))
            fcntl.ioctl(fd, FITRIM, rng)
        except OSError as e:
            raise Fail(f"fstrim {mountpoint}: {os.strerror(e.errno or errno.EIO)}",
                       e.errno or errno.EIO) from None
        finally:
            os.close(fd)

    def call_freeze(self, disks: list[str]) -> list[str]:
        """Freeze every writable guest filesystem on slot disks *disks* (kernel names,
        under LVs and arrays too): written out and held still, so that a copy of the
        disks taken now is consistent.  The mount points frozen, for :meth:`call_thaw`
        (one per filesystem).  All or nothing: on a failure the others are thawed."""
        wanted = {d.removeprefix("/dev/") for d in disks}
        frozen: list[str] = []
        seen: set[int] = set()
        try:
            for mp, _, name in guest_mounts():
                if name is None or not (slot_disks_under(name) or set()) & wanted:
                    continue
                real = real_mountpoint(mp)
                fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    st = os.fstatvfs(fd)
                    dev = os.fstat(fd).st_dev
                    if st.f_flag & os.ST_RDONLY or dev in seen:
                        continue  # nothing to write out, or frozen already (btrfs)
                    fcntl.ioctl(fd, FIFREEZE, 0)
                    seen.add(dev)
                    frozen.append(mp)
                finally:
                    os.close(fd)
        except OSError as e:
            self.call_thaw(frozen)
            raise Fail(f"freeze: {os.strerror(e.errno or errno.EIO)}", e.errno or errno.EIO) \
                from None
        return frozen

    def call_thaw(self, mountpoints: list[str]) -> None:
        """Thaw what :meth:`call_freeze` froze (one already thawed is no error)."""
        for mp in mountpoints:
            with contextlib.suppress(OSError):
                fd = os.open(real_mountpoint(mp),
                             os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    fcntl.ioctl(fd, FITHAW, 0)
                finally:
                    os.close(fd)
