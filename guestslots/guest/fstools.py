"""Guest calls that make and look after filesystems, with libguestfs's names and
arguments: mkfs, mkswap, set-label, set-uuid, resize2fs, e2fsck-f, xfs-growfs, fsck,
zerofree, fstrim.

Paired with the agent's ``fstools`` area, which runs each filesystem's own tools.
Only devices of writable slots are changed, and a filesystem is made, checked,
resized or zeroed only while nothing on its device is mounted or in use.
"""

from __future__ import annotations

from .base import GuestCalls, serialised

#: mkfs, resize, fsck and zerofree of a big disk take long under TCG: this many seconds.
LONG_CALL = 3700.0


class FsToolCalls(GuestCalls):
    """Making, labelling, growing and checking filesystems."""

    @serialised
    def mkfs(self, fstype: str, device: str, blocksize: int = 0, features: str = "",
             inode: int = 0, sectorsize: int = 0, label: str = "") -> None:
        """Make a filesystem of *fstype* (ext2, ext3, ext4, xfs, vfat, btrfs) on
        *device*, replacing whatever is there.  *blocksize* in bytes (a power of 2;
        the cluster size for vfat; not for btrfs), *features* for mke2fs ``-O``,
        *inode* size for ext*, *label* as the new filesystem's label.  Refused on a
        read-only slot and while the device, or anything on it, is in use."""
        self._call("mkfs", wait_for=LONG_CALL, fstype=fstype, device=self._dev(device),
                   blocksize=blocksize, features=features, inode=inode,
                   sectorsize=sectorsize, label=label)

    @serialised
    def mkswap(self, device: str, label: str = "", uuid: str = "") -> None:
        """Make a swap area on *device*, with *label* and *uuid* if given."""
        self._call("mkswap", device=self._dev(device), label=label, uuid=uuid)

    @serialised
    def set_label(self, mountable: str, label: str) -> None:
        """Set the label of the filesystem on *mountable* (ext2/3/4 up to 16 bytes, xfs
        12, vfat 11, btrfs, swap).  ext* and btrfs may be mounted; the others not."""
        self._call("set_label", mountable=self._dev(mountable), label=label)

    @serialised
    def set_uuid(self, device: str, uuid: str) -> None:
        """Set the UUID of the (unmounted) filesystem on *device* (ext2/3/4, xfs, btrfs,
        swap)."""
        self._call("set_uuid", device=self._dev(device), uuid=uuid)

    @serialised
    def resize2fs(self, device: str) -> None:
        """Grow or shrink the unmounted ext2/3/4 filesystem on *device* to fill the
        device (resize2fs may ask for :meth:`e2fsck_f` first)."""
        self._call("resize2fs", wait_for=LONG_CALL, device=self._dev(device))

    @serialised
    def resize2fs_size(self, device: str, size: int) -> None:
        """As :meth:`resize2fs`, to *size* bytes."""
        self._call("resize2fs", wait_for=LONG_CALL, device=self._dev(device), size=size)

    @serialised
    def resize2fs_M(self, device: str) -> None:
        """As :meth:`resize2fs`, to the filesystem's smallest size."""
        self._call("resize2fs", wait_for=LONG_CALL, device=self._dev(device), minimum=True)

    @serialised
    def e2fsck_f(self, device: str) -> None:
        """Check the unmounted ext2/3/4 filesystem on *device* even if it looks clean,
        and fix what can be fixed without questions (``e2fsck -p -f``)."""
        self._call("e2fsck_f", wait_for=LONG_CALL, device=self._dev(device))

    @serialised
    def xfs_growfs(self, path: str) -> None:
        """Grow the mounted xfs filesystem at mount point *path* to fill its device."""
        self._call("xfs_growfs", wait_for=LONG_CALL, path=path)

    @serialised
    def fsck(self, fstype: str, device: str, repair: bool = False) -> int:
        """Check the unmounted filesystem of *fstype* on *device* and return the
        checker's exit status (0: clean; for ext*, 4: errors left uncorrected).  Only
        reports unless *repair* is true (then ext*, xfs and vfat are fixed without
        questions, as ``fsck -a``; libguestfs's fsck always repairs)."""
        return int(self._call("fsck", wait_for=LONG_CALL, fstype=fstype,
                              device=self._dev(device), repair=repair))

    @serialised
    def zerofree(self, device: str) -> None:
        """Write zeroes over the unused blocks of the unmounted ext2/3/4 filesystem on
        *device*, so that the image compresses or sparsifies well."""
        self._call("zerofree", wait_for=LONG_CALL, device=self._dev(device))

    @serialised
    def fstrim(self, mountpoint: str, offset: int = 0, length: int = -1,
               minimumfreeextent: int = 0) -> None:
        """Discard the unused blocks of the filesystem mounted at *mountpoint* (from
        byte *offset*, *length* bytes, -1: to the end; free extents of at least
        *minimumfreeextent* bytes), so that the image can shrink."""
        self._call("fstrim", wait_for=LONG_CALL, mountpoint=mountpoint, offset=offset,
                   length=length, minimumfreeextent=minimumfreeextent)
