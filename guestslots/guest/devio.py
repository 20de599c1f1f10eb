"""Guest calls that read and write block devices as bytes, and ask the kernel about
them, with libguestfs's names: blockdev-getsize64, blockdev-getsz, blockdev-getss,
blockdev-getro, blockdev-setro, blockdev-setrw, blockdev-flushbufs,
blockdev-rereadpt, pread-device, pwrite-device.

Paired with the agent's ``devio`` area.  Only slot devices are reached (a slot disk,
a partition, an LV or md array on slots); writing wants a writable slot.
"""

from __future__ import annotations

import io

from .base import GuestCalls, serialised


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
