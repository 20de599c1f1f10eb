"""Block devices as bytes, and the kernel's block-device ioctls: libguestfs's
``blockdev-*``, ``pread-device``, ``pwrite-device``, ``download`` / ``upload`` of a
``/dev/...`` path (a device, as libguestfs's daemon reads such a path, not a file in
the guest filesystem), the four ``copy-*-to-*``, ``zero-device``, ``is-zero-device``
and ``is-zero``.

Only slot devices are reached (a slot disk, its partitions, an LV or md array built
on slots), never the appliance's own disk.  Writing wants a writable slot; replacing
a device's contents (``upload``, a copy onto it, ``zero-device``) or re-reading a
table wants nothing on it in use.  Each call is one open and one ioctl, stream or
copy loop: no process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
from collections.abc import Callable
from typing import Any

from .blockdev import canonical, kernel_device, partitions_of, resolve_device
from .common import Fail
from .files import FileCalls
from .mounts import MountCalls, check_unused

#: linux/fs.h: _IO(0x12, 93..97), _IO(0x12, 104), _IOR(0x12, 114, size_t), _IO(0x12, 119)
BLKROSET = 0x125D
BLKROGET = 0x125E
BLKRRPART = 0x125F
BLKFLSBUF = 0x1261
BLKSSZGET = 0x1268
BLKGETSIZE64 = 0x80081272
BLKDISCARD = 0x1277
_DISK_RE = re.compile(r"sd[a-z]+\Z")


def _open(name: str, flags: int) -> int:
    try:
        return os.open(f"/dev/{name}", flags | os.O_CLOEXEC)
    except OSError as e:
        code = e.errno or errno.EIO
        raise Fail(f"{canonical(name)}: {os.strerror(code)}", code) from None


def _ioctl(name: str, request: int, arg: int | bytes = 0) -> bytes | int:
    fd = _open(name, os.O_RDONLY)
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as e:
        code = e.errno or errno.EIO
        raise Fail(f"{canonical(name)}: {os.strerror(code)}", code) from None
    finally:
        os.close(fd)


def _int_ioctl(name: str, request: int, fmt: str) -> int:
    out = _ioctl(name, request, bytes(struct.calcsize(fmt)))
    assert isinstance(out, bytes)
    return int(struct.unpack(fmt, out)[0])


def device_size(name: str) -> int:
    return _int_ioctl(name, BLKGETSIZE64, "Q")


def _offset(value: int, what: str = "offset") -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Fail(f"{what} must be a whole number", errno.EINVAL)
    if value < 0:
        raise Fail(f"{what} must not be negative", errno.EINVAL)
    return value


def _written(name: str) -> None:
    """After bytes were written to slot device *name*: a whole disk's partition table is
    read again, as udev has the kernel do when a disk written to is closed (libguestfs
    then waits for udev), so that a table written as bytes is the table the next call
    sees.  While a partition is in use the kernel refuses (EBUSY) and the old
    partitions stay, as under udev."""
    if not _DISK_RE.match(name):
        return
    with contextlib.suppress(Fail):
        _ioctl(name, BLKRRPART)


class DeviceIoCalls(MountCalls, FileCalls):
    """Block devices read, written and asked about as libguestfs's calls do."""

    def call_blockdev_getsize64(self, device: str) -> int:
        return device_size(resolve_device(device))

    def call_blockdev_getss(self, device: str) -> int:
        return _int_ioctl(resolve_device(device), BLKSSZGET, "i")

    def call_blockdev_getro(self, device: str) -> bool:
        """Whether *device* takes no writes: the kernel's flag, or a slot plugged
        read-only (whose writes would land in a throwaway overlay, and are refused)."""
        name = resolve_device(device)
        return bool(_int_ioctl(name, BLKROGET, "i")) or not self.check_writable(name)

    def call_blockdev_setro(self, device: str, readonly: bool) -> None:
        name = resolve_device(device)
        if not readonly:
            self.require_writable(name, "it cannot be made writable")
        _ioctl(name, BLKROSET, struct.pack("i", 1 if readonly else 0))

    def call_blockdev_flushbufs(self, device: str) -> None:
        _ioctl(resolve_device(device), BLKFLSBUF)

    def call_blockdev_rereadpt(self, device: str) -> None:
        """Have the kernel read the partition table of slot disk *device* again (after
        ``pwrite_device`` or ``upload`` wrote one): its partitions must not be in use."""
        disk, name = kernel_device(device)
        if name != disk:
            raise Fail(f"{device}: a whole disk is needed, not a partition", errno.EINVAL)
        check_unused(partitions_of(disk))
        _ioctl(disk, BLKRRPART)

    def call_pread_device(self, device: str, count: int, offset: int) -> int:
        """Stream up to *count* bytes of *device* from byte *offset* (fewer at its end)."""
        count, offset = _offset(count, "count"), _offset(offset)
        name = resolve_device(device)
        return self.send_file(_open(name, os.O_RDONLY), offset, count)

    def call_pwrite_device(self, device: str, offset: int) -> int:
        """Write the streamed bytes into *device* from byte *offset*; return how many
        were written.  Past the device's end is an error (ENOSPC)."""

        def target() -> str:
            name = resolve_device(device)
            self.require_writable(name)
            return name

        return self._receive_onto(target, offset)

    def _receive_onto(self, target: Callable[[], str], offset: int = 0) -> int:
        """Write the streamed bytes onto the device *target* checks and names, from
        byte *offset*; then tell the kernel (:func:`_written`).  A refusal is made
        while opening, so the stream is still consumed (``receive_into``)."""
        name = ""

        def open_at() -> int:
            nonlocal name
            name = target()
            at = _offset(offset)
            fd = _open(name, os.O_WRONLY)
            try:
                os.lseek(fd, at, os.SEEK_SET)  # any offset: a write past the end fails
            except OSError:
                os.close(fd)
                raise
            return fd

        try:
            return self.receive_into(open_at)
        finally:
            if name:
                _written(name)

    def call_download(self, path: str) -> int:
        if not path.startswith("/dev/"):
            return super().call_download(path)
        name = resolve_device(path)
        size = device_size(name)
        self.send_file(_open(name, os.O_RDONLY))
        return size

    def call_upload(self, path: str, mode: int = 0o644) -> int:
        """A ``/dev/...`` *path*: the bytes go onto that device from its start (a
        writable slot's, nothing on it in use); more than it holds is an error."""
        if not path.startswith("/dev/"):
            return super().call_upload(path, mode)
        return self._receive_onto(lambda: self.writable_device(path))

    # ---- copies between devices and files, zeroes

    def _source(self, kind: str, path: str) -> tuple[int, str]:
        """An open source (a slot device, or a regular file of the guest filesystem)."""
        if kind == "device":
            name = resolve_device(path)
            return _open(name, os.O_RDONLY), canonical(name)
        return self.root.open_regular(path, os.O_RDONLY), path

    def _destination(self, kind: str, path: str, append: bool) -> tuple[int, str, str]:
        """An open destination: (fd, name shown, its kernel name if a device, else "").
        A device must
        be a writable slot's with nothing on it in use; a file is created or truncated
        (with *append*, kept)."""
        if kind == "device":
            if append:
                raise Fail("the append flag cannot be set for devices", errno.EINVAL)
            name = self.writable_device(path)
            return _open(name, os.O_WRONLY), canonical(name), name
        flags = os.O_WRONLY | os.O_CREAT | (0 if append else os.O_TRUNC)
        return self.root.open_regular(path, flags), path, ""

    def _copy(self, kinds: tuple[str, str], src: str, dest: str, srcoffset: int = 0,
              destoffset: int = 0, size: int = -1, sparse: bool = False,
              append: bool = False) -> None:
        """libguestfs's copy-{device,file}-to-{device,file}: *size* bytes (-1: to the
        end of the source) from *srcoffset* of *src* to *destoffset* of *dest*; with
        *sparse*, blocks of zeroes are not written (the destination must read as
        zeroes there already); a file destination is extended to the end of the copy."""
        srcoffset, destoffset = _offset(srcoffset, "srcoffset"), _offset(destoffset, "destoffset")
        if size != -1:
            size = _offset(size, "size")
        src_fd, src_shown = self._source(kinds[0], src)
        try:
            dst_fd, dst_shown, device = self._destination(kinds[1], dest, bool(append))
            try:
                if append:
                    destoffset = os.fstat(dst_fd).st_size
                done = _copy_range(src_fd, dst_fd, srcoffset, destoffset, size, bool(sparse),
                                   src_shown, dst_shown)
                if not device and os.fstat(dst_fd).st_size < destoffset + done:
                    os.ftruncate(dst_fd, destoffset + done)  # sparse blocks at its end
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        if device:
            _written(device)

    def call_copy_device_to_device(self, src: str, dest: str, **options: Any) -> None:
        self._copy(("device", "device"), src, dest, **options)

    def call_copy_device_to_file(self, src: str, dest: str, **options: Any) -> None:
        self._copy(("device", "file"), src, dest, **options)

    def call_copy_file_to_device(self, src: str, dest: str, **options: Any) -> None:
        self._copy(("file", "device"), src, dest, **options)

    def call_copy_file_to_file(self, src: str, dest: str, **options: Any) -> None:
        self._copy(("file", "file"), src, dest, **options)

    def call_zero_device(self, device: str) -> None:
        """Zeroes over all of *device* (a writable slot's, nothing on it in use).  It is
        discarded first (BLKDISCARD: QEMU unmaps the image's blocks, so the image stays
        sparse, and they read as zeroes), then read, and any block that is not zero
        yet is written with zeroes, as libguestfs does (the kernel's own zeroing does
        not unmap here: QEMU's SCSI disk reports no LBPRZ, so it would allocate)."""
        name = self.writable_device(device)
        size = device_size(name)
        fd = _open(name, os.O_WRONLY)
        try:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", 0, size))
            read_fd = _open(name, os.O_RDONLY)
            try:
                zero = bytes(CHUNK)
                for at in range(0, size, CHUNK):
                    chunk = os.pread(read_fd, CHUNK, at)
                    if chunk.count(0) != len(chunk):
                        _write_all(fd, zero[:len(chunk)], at, canonical(name))
            finally:
                os.close(read_fd)
        finally:
            os.close(fd)
        _written(name)

    def call_is_zero_device(self, device: str) -> bool:
        name = resolve_device(device)
        return _all_zero(_open(name, os.O_RDONLY))

    def call_is_zero(self, path: str) -> bool:
        """Whether regular file *path* is empty or all zero bytes (its holes skipped)."""
        return _all_zero(self.root.open_regular(path, os.O_RDONLY), holes=True)


CHUNK = 1 << 20


def _write_all(fd: int, data: bytes, at: int, shown: str) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.pwrite(fd, view, at)
        except OSError as e:
            code = e.errno or errno.EIO
            raise Fail(f"{shown}: write: {os.strerror(code)}", code) from None
        view, at = view[n:], at + n


def _copy_range(src_fd: int, dst_fd: int, srcoffset: int, destoffset: int, size: int,
                sparse: bool, src_shown: str, dst_shown: str) -> int:
    """Copy as :meth:`DeviceIoCalls._copy` says; return the bytes copied."""
    done = 0
    while size < 0 or done < size:
        want = CHUNK if size < 0 else min(CHUNK, size - done)
        chunk = os.pread(src_fd, want, srcoffset + done)
        if not chunk:
            if size < 0:
                break
            raise Fail(f"{src_shown}: input too short", errno.EINVAL)
        if not (sparse and chunk.count(0) == len(chunk)):
            _write_all(dst_fd, chunk, destoffset + done, dst_shown)
        done += len(chunk)
    return done


def _all_zero(fd: int, holes: bool = False) -> bool:
    """Whether open *fd* reads as zeroes to its end (then closed); with *holes*, a
    regular file's holes are skipped (SEEK_DATA)."""
    try:
        at = 0
        while True:
            if holes:
                try:
                    at = os.lseek(fd, at, os.SEEK_DATA)
                except OSError as e:
                    if e.errno == errno.ENXIO:  # no data from here on
                        return True
                    raise
            chunk = os.pread(fd, CHUNK, at)
            if not chunk:
                return True
            if chunk.count(0) != len(chunk):
                return False
            at += len(chunk)
    finally:
        os.close(fd)
