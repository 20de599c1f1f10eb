"""Filesystem and partition-table probing through libblkid (no process)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from .common import (
    BLKID_FLTR_ONLYIN,
    Fail,
)


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
        self.found: dict[str, dict[str, str]] = {}

    def forget(self) -> None:
        """Forget what full probes found (see ``channel.KEEPS_PROBES``)."""
        self.found.clear()

    def probe(self, dev: str, only: tuple[str, ...] = (), kept: bool = False) -> dict[str, str]:
        """What libblkid finds on *dev*; with *only*, just those superblock types are
        looked for (and no partition table): much cheaper under TCG.  With *kept*, a
        full probe's result is kept and given again until :meth:`forget`."""
        if kept and not only and dev in self.found:
            return dict(self.found[dev])
        values = self._probe(dev, only)
        if kept and not only:
            self.found[dev] = dict(values)
        return values

    def _probe(self, dev: str, only: tuple[str, ...]) -> dict[str, str]:
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
