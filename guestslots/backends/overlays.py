"""Overlays of the host's making: the appliance's root overlay, and the throwaway
overlays a read-only or ``overlay=True`` slot's guest writes to.

Both backends put a qcow2 overlay in front of such an image, so that md
superblocks and journal replays never reach the image.
"""

from __future__ import annotations

import json
import os

from ..errors import DriveError
from ..host.proc import CommandError, run
from ..model.drives import DriveSpec, qcow2_size


def virtual_size(drive: DriveSpec) -> int:
    """The size in bytes the guest sees of *drive*'s image, found without a process:
    known already (a remote source's probe), a raw file's or block device's own
    size, or the virtual size in a qcow2 header (:func:`make_drive` read that header
    and refused one naming other files; only a size QEMU accepted when it opened
    the image is usable).  :class:`DriveError` if it cannot be read."""
    if drive.size is not None:
        return drive.size
    try:
        fd = os.open(drive.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if drive.format == "raw":
                return os.lseek(fd, 0, os.SEEK_END)  # a file's size, or a device's
            size = qcow2_size(os.pread(fd, 32, 0))
        finally:
            os.close(fd)
    except OSError as e:
        raise DriveError(drive.path, f"cannot be read: {e.strerror}") from None
    if size is None:
        raise DriveError(drive.path, "its qcow2 header is cut short")
    return size


def overlay_backing(drive: DriveSpec) -> tuple[str, str] | None:
    """The backing name and format a throwaway overlay's header gives for *drive*
    (never opened: the backends give the backing node), or None for a remote source:
    QEMU would take a URL's parts as options beside the node's own."""
    return None if drive.remote else (drive.path, drive.format)


def make_overlay(drive: DriveSpec, path: str) -> None:
    """Make a throwaway qcow2 at *path* over *drive*'s image with ``qemu-img
    create -u`` (nothing else is opened); the QEMU backend has QEMU make its own
    (``blockdev-create``: no process)."""
    if drive.format == "raw" or drive.size is not None:
        size = virtual_size(drive)
    else:  # qemu-img checks the header first, as QEMU does when it opens the image
        try:
            size = json.loads(run(["qemu-img", "info", "--output=json", "-f", drive.format,
                                   drive.path]))["virtual-size"]
        except CommandError as e:
            said = e.output.strip().splitlines()[-1:] or [e.reason]
            raise DriveError(drive.path, f"QEMU cannot open it as {drive.format}: "
                             f"{said[0].removeprefix('qemu-img: ')}") from None
        except (ValueError, KeyError) as e:
            raise DriveError(drive.path, f"qemu-img info said something unexpected: {e}") \
                from None
    backing = overlay_backing(drive)
    named = ["-u", "-F", backing[1], "-b", backing[0]] if backing else []
    try:
        run(["qemu-img", "create", "-q", "-f", "qcow2", *named, path, str(size)])
    except (CommandError, OSError) as e:
        raise DriveError(drive.path, f"cannot make its throwaway overlay: {e}") from None


def make_root_overlay(path: str, backing: str, backing_format: str) -> None:
    """The appliance's own root overlay at *path*, over the appliance image (a cold
    boot) or a saved state's root (a restore): whatever the guest writes goes here."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", backing, path])
