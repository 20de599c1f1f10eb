"""Guest calls that find operating systems and mount them (see :mod:`guestslots.inspection`).

Inspection drives the appliance through public calls only, from the other areas.
"""

from __future__ import annotations

from .. import inspection
from ..errors import DeviceNameError
from .base import serialised
from .devices import DeviceCalls
from .files import FileCalls
from .mounts import MountCalls


class InspectionCalls(DeviceCalls, MountCalls, FileCalls):
    """Operating-system inspection over the device, mount and file calls."""

    @serialised
    def inspect_os(self) -> list[dict[str, object]]:
        """Find operating systems on the full slots (Linux: /etc/os-release, /etc/fstab).

        Each is a dict: root, name, pretty_name, version, distro, hostname, and
        mountpoints (mount point -> device, from fstab's UUID=, LABEL= and
        device entries).  Nothing may be mounted; nothing is left mounted.
        """
        return [found.as_dict() for found in inspection.inspect_os(self)]

    @serialised
    def mount_os(self, root: str, readonly: bool = True) -> None:
        """Mount the filesystems of the operating system on *root* as its fstab says."""
        for found in inspection.inspect_os(self):
            if found.root == root:
                inspection.mount_mountpoints(self, found.mountpoints, readonly)
                return
        raise DeviceNameError(root, "no operating system was found on it")
