"""Punching the holes a backup job left allocated (guestslots.host.sparse)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from guestslots.host.sparse import holes, punch_holes

MiB = 1 << 20
FALLOC_FL_ZERO_RANGE = 0x10


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_zero_ranges_left_allocated_are_freed_and_the_data_kept(tmp_path: Path) -> None:
    """As QEMU's backup job leaves a raw copy: data at 4 MiB, the rest zeroed with
    FALLOC_FL_ZERO_RANGE (allocated, reads as zeroes)."""
    path = tmp_path / "copy.img"
    with open(path, "wb") as f:
        f.truncate(32 * MiB)
        f.seek(4 * MiB)
        f.write(b"\x5a" * MiB)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(path, os.O_RDWR)
    try:
        for offset, length in ((0, 4 * MiB), (5 * MiB, 27 * MiB)):
            if libc.fallocate(fd, FALLOC_FL_ZERO_RANGE, offset, length) != 0:
                pytest.skip(f"no FALLOC_FL_ZERO_RANGE on {tmp_path}'s filesystem: "
                            f"{os.strerror(ctypes.get_errno())}")
        assert holes(fd) == [(0, 4 * MiB), (5 * MiB, 27 * MiB)]  # unwritten: holes
    finally:
        os.close(fd)
    assert _allocated(path) >= 32 * MiB
    punch_holes(str(path))
    assert _allocated(path) <= 2 * MiB
    data = path.read_bytes()
    assert len(data) == 32 * MiB
    assert data[4 * MiB:5 * MiB] == b"\x5a" * MiB and data.count(0) == 31 * MiB


def test_a_file_without_holes_or_empty_is_left_alone(tmp_path: Path) -> None:
    full, empty = tmp_path / "full", tmp_path / "empty"
    full.write_bytes(b"x" * MiB)
    empty.write_bytes(b"")
    for path in (full, empty):
        punch_holes(str(path))
    assert full.read_bytes() == b"x" * MiB and _allocated(full) >= MiB
    assert empty.read_bytes() == b""
