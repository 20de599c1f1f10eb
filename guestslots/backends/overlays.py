"""Overlays of the host's making: the appliance's root overlay, and the throwaway
overlays a read-only or ``overlay=True`` slot's guest writes to.

Both backends put a qcow2 overlay in front of such an image, so that md
superblocks and journal replays never reach the image.
"""

from __future__ import annotations

import json
import os
import stat

from ..errors import DriveError
from ..host.proc import CommandError, run
from ..model.drives import DriveSpec


def make_overlay(drive: DriveSpec, path: str) -> None:
    """Make a throwaway qcow2 at *path* over *drive*'s image.

    ``qemu-img info`` reads only the image itself (it opens no backing file
    without --backing-chain, and :func:`~guestslots.model.drives.make_drive`
    refused headers naming other files), and the overlay is made with -u so
    that nothing else is opened either.
    """
    try:
        if drive.size is not None:
            size = drive.size  # known already (a remote source's probe): no process
        elif drive.format == "raw" and stat.S_ISREG(os.stat(drive.path).st_mode):
            size = os.stat(drive.path).st_size  # a raw file is its own virtual size
        else:
            try:
                size = json.loads(run(["qemu-img", "info", "--output=json", "-f",
                                       drive.format, drive.path]))["virtual-size"]
            except CommandError as e:
                said = e.output.strip().splitlines()[-1:] or [e.reason]
                raise DriveError(drive.path, f"QEMU cannot open it as {drive.format}: "
                                 f"{said[0].removeprefix('qemu-img: ')}") from None
        # the name in the header is never opened (the backends give the backing node);
        # a remote source's is not written: QEMU would take the URL's parts as options
        # beside the node's own
        backing = [] if drive.remote else ["-u", "-F", drive.format, "-b", drive.path]
        run(["qemu-img", "create", "-q", "-f", "qcow2", *backing, path, str(size)])
    except (CommandError, OSError, ValueError, KeyError) as e:
        raise DriveError(drive.path, f"cannot make its throwaway overlay: {e}") from None


def make_root_overlay(path: str, backing: str, backing_format: str) -> None:
    """The appliance's own root overlay at *path*, over the appliance image (a cold
    boot) or a saved state's root (a restore): whatever the guest writes goes here."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", backing, path])
