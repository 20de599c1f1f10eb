"""Making a copied image file sparse again, without reading it.

QEMU 7.2's backup job (an export, a save with the disk set, libvirt's push-mode
backup) writes the zero ranges of a raw copy with ``FALLOC_FL_ZERO_RANGE``, which
keeps them allocated: a 512 MiB raw disk holding 1 MiB of data was copied into
512 MiB of disk (measured here, ext4).  Such ranges read as holes to
``SEEK_HOLE`` (unwritten extents), so they are found and deallocated afterwards,
with no byte of the file read.
"""

from __future__ import annotations

import ctypes
import errno
import os

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def holes(fd: int) -> list[tuple[int, int]]:
    """(offset, length) of each range of open file *fd* that reads as a hole."""
    size = os.fstat(fd).st_size
    found: list[tuple[int, int]] = []
    at = 0
    while at < size:
        hole = os.lseek(fd, at, os.SEEK_HOLE)
        if hole >= size:
            break
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:  # no data after it: a hole to the end
                raise
            data = size
        found.append((hole, data - hole))
        at = data
    return found


def punch_holes(path: str) -> None:
    """Deallocate every range of file *path* that reads as a hole (keeping its size).
    A filesystem that cannot punch holes leaves the file as it is."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        for offset, length in holes(fd):
            if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                               length) != 0:
                code = ctypes.get_errno()
                if code in (errno.EOPNOTSUPP, errno.ENOSYS):
                    return
                raise OSError(code, f"punching a hole in {path}: {os.strerror(code)}")
    finally:
        os.close(fd)
