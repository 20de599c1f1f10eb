"""Room for copies of slots' disks: what a copy will take, and whether a directory has it.

An export, a migration's copies and a save with the disk set write out what the
guest sees on a slot.  That is not bounded by the image's size on the host: a
hostile qcow2 can map every guest cluster to one host cluster, and a few MiB of
image then show the guest (and a copy) terabytes of data.  So each copy is
measured first, as ``virt-sparsify`` checks its temporary space: ``qemu-img
measure`` of the slot's image chain, opened as QEMU opens it (the formats given,
no backing file or data file that a header names followed, shared with the running
QEMU), and the copies are refused when the directory's filesystem has less room.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ..errors import HostFileError
from ..host.proc import CommandError, run
from ..model.drives import DriveSpec
from .sources import TLS_ID, qemu_img_objects


def chain_options(drive: DriveSpec) -> dict[str, Any]:
    """The block options that open *drive*'s image with its snapshot overlays on top,
    read-only and shared with the QEMU that has it open: each overlay's backing is
    the layer below, given here, and a qcow2 image's own backing is none."""
    file = (drive.remote.qemu_options(tls_creds=TLS_ID if drive.remote.tls else None)
            if drive.remote is not None else {"driver": "file", "filename": drive.path})
    file.pop("read-only", None)
    layer: dict[str, Any] = {"driver": drive.format, "file": file}
    if drive.format == "qcow2":
        layer["backing"] = None
    for overlay in drive.chain:
        layer = {"driver": "qcow2", "file": {"driver": "file", "filename": overlay},
                 "backing": layer}
    return {**layer, "read-only": True, "force-share": True}


def copy_size(drive: DriveSpec, zeroes_allocated: bool = False,
              timeout: float = 60.0) -> int:
    """About how many bytes a copy of what the guest sees on *drive* takes, as
    ``qemu-img measure`` says: what a qcow2 of its data needs (not its virtual size:
    unallocated and zero clusters take nothing; plus a qcow2's tables for the whole
    disk, about 1/8192 of its size).  With *zeroes_allocated*, a raw copy takes its
    whole virtual size: QEMU 7.2's backup job writes the zeroes of a raw copy as
    allocated ranges (``FALLOC_FL_ZERO_RANGE``, measured), which are only freed
    after it ends (:func:`guestslots.host.sparse.punch_holes`)."""
    spec = "json:" + json.dumps(chain_options(drive))
    out = "raw" if zeroes_allocated and drive.format == "raw" else "qcow2"
    objects = qemu_img_objects(drive.remote) if drive.remote is not None else []
    try:
        said = json.loads(run(["qemu-img", "measure", "--output=json", *objects, "-O", out,
                               spec], timeout=timeout))
        return int(said["required"])
    except CommandError as e:
        last = e.output.strip().splitlines()[-1:] or [e.reason]
        raise HostFileError(drive.path, "cannot measure what a copy of it takes: "
                            f"{last[0].removeprefix('qemu-img: ')}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise HostFileError(drive.path, f"qemu-img measure said something unexpected: "
                            f"{e}") from None


def free_bytes(directory: str) -> int:
    """The bytes an unprivileged writer may still use on *directory*'s filesystem."""
    try:
        st = os.statvfs(directory)
    except OSError as e:
        raise HostFileError(directory, e.strerror or str(e)) from None
    return st.f_bavail * st.f_frsize


def shortfall(sizes: Sequence[tuple[int, int]], free: int) -> str:
    """Why copies of the slots (index, bytes) do not fit in *free* bytes, or ""."""
    needed = sum(size for _, size in sizes)
    if needed <= free:
        return ""
    each = ", ".join(f"slot {index} {_mib(size)}" for index, size in sizes)
    return (f"the copies need about {_mib(needed)} ({each}, as the guest sees them) and "
            f"its filesystem has {_mib(free)} free: nothing was copied")


def check_room(directory: str, drives: Sequence[tuple[int, DriveSpec]],
               zeroes_allocated: bool = False, timeout: float = 60.0) -> None:
    """Refuse, with :class:`HostFileError` on *directory*, copies of *drives* (slot
    index, drive) that would not fit in it (*zeroes_allocated*: see
    :func:`copy_size`)."""
    if not drives:
        return
    sizes = [(index, copy_size(drive, zeroes_allocated, timeout)) for index, drive in drives]
    why = shortfall(sizes, free_bytes(directory))
    if why:
        raise HostFileError(directory, why)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB" if size >= 1 << 20 else f"{size} bytes"
