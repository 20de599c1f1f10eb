"""Guest calls that read and write block devices as bytes, and ask the kernel about
them, with libguestfs's names: blockdev-getsize64, blockdev-getsz, blockdev-getss,
blockdev-getro, blockdev-setro, blockdev-setrw, blockdev-flushbufs,
blockdev-rereadpt, pread-device, pwrite-device, copy-device-to-device,
copy-device-to-file, copy-file-to-device, copy-file-to-file, zero-device,
is-zero-device, is-zero.

Paired with the agent's ``devio`` area.  Only slot devices are reached (a slot disk,
a partition, an LV or md array on slots); writing wants a writable slot.
"""

from __future__ import annotations

import io

from .base import GuestCalls, serialised

#: Copying, zeroing or reading a whole big disk takes long under TCG: this many seconds.
LONG_CALL = 3700.0


class DeviceIoCalls(GuestCalls):
    """Block devices: their size, sector size and read-only flag, and their bytes."""

    @serialised
    def blockdev_getsize64(self, device: str) -> int:
        """The size of *device* in bytes."""
        return int(self._call("blockdev_getsize64", device=self._dev(device)))

    @serialised
    def blockdev_getsz(self, device: str) -> int:
        """The size of *device* in 512-byte sectors (whatever its sector size)."""
        return self.blockdev_getsize64(device) // 512

    @serialised
    def blockdev_getss(self, device: str) -> int:
        """The logical sector size of *device* in bytes (usually 512)."""
        return int(self._call("blockdev_getss", device=self._dev(device)))

    @serialised
    def blockdev_getro(self, device: str) -> bool:
        """Whether *device* takes no writes: the kernel's read-only flag is set, or
        it is on a slot plugged read-only (libguestfs says False there: its writes
        go to a throwaway overlay; here they are refused)."""
        return bool(self._call("blockdev_getro", device=self._dev(device)))

    @serialised
    def blockdev_setro(self, device: str) -> None:
        """Set the kernel's read-only flag on *device*: writes to it fail (EPERM)."""
        self._call("blockdev_setro", device=self._dev(device), readonly=True)

    @serialised
    def blockdev_setrw(self, device: str) -> None:
        """Clear the kernel's read-only flag on *device* (refused on a slot plugged
        read-only)."""
        self._call("blockdev_setro", device=self._dev(device), readonly=False)

    @serialised
    def blockdev_flushbufs(self, device: str) -> None:
        """Write out and drop the kernel's buffers of *device*."""
        self._call("blockdev_flushbufs", device=self._dev(device))

    @serialised
    def blockdev_rereadpt(self, device: str) -> None:
        """Have the kernel read the partition table of slot disk *device* again, as
        after ``pwrite_device`` wrote one; its partitions must not be in use."""
        self._call("blockdev_rereadpt", device=self._dev(device))

    @serialised
    def pread_device(self, device: str, count: int, offset: int) -> bytes:
        """Up to *count* bytes of *device* from byte *offset* (fewer at its end)."""
        buf = io.BytesIO()
        with self._agent_for("pread_device") as agent:
            agent.download("pread_device", buf, device=self._dev(device), count=int(count),
                           offset=int(offset))
        return buf.getvalue()

    @serialised
    def pwrite_device(self, device: str, content: bytes | str, offset: int) -> int:
        """Write *content* onto *device* at byte *offset*; return the bytes written.
        Writing past its end is an error.  The kernel is not told of a partition table
        written this way: call ``blockdev_rereadpt`` after."""
        data = content.encode() if isinstance(content, str) else content
        with self._agent_for("pwrite_device") as agent:
            return int(agent.upload("pwrite_device", io.BytesIO(data),
                                    device=self._dev(device), offset=int(offset)))

    # ---- copies between devices and files, zeroes

    def _copy(self, call: str, src: str, dest: str, srcoffset: int, destoffset: int,
              size: int | None, sparse: bool, append: bool) -> None:
        device_src, device_dest = call.startswith("copy_device"), call.endswith("to_device")
        self._call(call, wait_for=LONG_CALL,
                   src=self._dev(src) if device_src else src,
                   dest=self._dev(dest) if device_dest else dest,
                   srcoffset=int(srcoffset), destoffset=int(destoffset),
                   size=-1 if size is None else int(size), sparse=bool(sparse),
                   append=bool(append))

    @serialised
    def copy_device_to_device(self, src: str, dest: str, srcoffset: int = 0,
                              destoffset: int = 0, size: int | None = None,
                              sparse: bool = False, append: bool = False) -> None:
        """Copy *size* bytes (None: to the end of *src*) from byte *srcoffset* of
        device *src* to byte *destoffset* of device *dest*, as libguestfs's four
        ``copy_*`` calls do.  The destination device must be on a writable slot with
        nothing on it in use; a file destination is created, or truncated unless
        *append* (then the copy goes at its end), and extended to the end of the copy.
        With *sparse*, blocks of zeroes are not written: the destination must read as
        zeroes there already.  Source and destination may be the same; overlapping
        ranges are not copied correctly."""
        self._copy("copy_device_to_device", src, dest, srcoffset, destoffset, size, sparse,
                   append)

    @serialised
    def copy_device_to_file(self, src: str, dest: str, srcoffset: int = 0,
                            destoffset: int = 0, size: int | None = None,
                            sparse: bool = False, append: bool = False) -> None:
        """Copy from device *src* into file *dest* of the mounted guest filesystem: see
        :meth:`copy_device_to_device`."""
        self._copy("copy_device_to_file", src, dest, srcoffset, destoffset, size, sparse,
                   append)

    @serialised
    def copy_file_to_device(self, src: str, dest: str, srcoffset: int = 0,
                            destoffset: int = 0, size: int | None = None,
                            sparse: bool = False, append: bool = False) -> None:
        """Copy from file *src* of the mounted guest filesystem onto device *dest*: see
        :meth:`copy_device_to_device`."""
        self._copy("copy_file_to_device", src, dest, srcoffset, destoffset, size, sparse,
                   append)

    @serialised
    def copy_file_to_file(self, src: str, dest: str, srcoffset: int = 0,
                          destoffset: int = 0, size: int | None = None,
                          sparse: bool = False, append: bool = False) -> None:
        """Copy blocks between files of the mounted guest filesystem: see
        :meth:`copy_device_to_device` (to copy files, ``cp``)."""
        self._copy("copy_file_to_file", src, dest, srcoffset, destoffset, size, sparse,
                   append)

    @serialised
    def zero_device(self, device: str) -> None:
        """Write zeroes over all of *device* (a writable slot's, nothing on it in use).
        It is discarded first, so the image's blocks are freed (it stays sparse), then
        read, and blocks that are not zero yet are written, as libguestfs does."""
        self._call("zero_device", wait_for=LONG_CALL, device=self._dev(device))

    @serialised
    def is_zero_device(self, device: str) -> bool:
        """Whether all of *device* reads as zero bytes (reads it: long for a big one)."""
        return bool(self._call("is_zero_device", wait_for=LONG_CALL,
                               device=self._dev(device)))

    @serialised
    def is_zero(self, path: str) -> bool:
        """Whether file *path* is empty or all zero bytes."""
        return bool(self._call("is_zero", wait_for=LONG_CALL, path=path))
