"""Guest calls about mounts.

Paired with the agent's ``mounts`` area.  Guest filesystems are mounted
``nodev,nosuid,noexec`` inside the appliance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import DeviceNameError
from ..model.names import canonical_volume, split_btrfsvol
from ..wire import BTRFSVOL
from .base import GuestCalls, serialised


class MountCalls(GuestCalls):
    """Mounting guest filesystems inside the appliance."""

    @serialised
    def mount(self, device: str, mountpoint: str, options: str = "") -> None:
        """Mount *device* read-write on *mountpoint* (``/`` first) inside the appliance.

        Refused for anything on a slot plugged read-only (an LV or array too).
        """
        self._mount(device, mountpoint, False, options)

    @serialised
    def mount_ro(self, device: str, mountpoint: str) -> None:
        """Mount *device* read-only on *mountpoint*."""
        self._mount(device, mountpoint, True)

    @serialised
    def mount_options(self, options: str, device: str, mountpoint: str) -> None:
        """Mount *device* on *mountpoint* with filesystem *options* (read-only if it is on
        a read-only slot)."""
        self._mount(device, mountpoint, None, options)

    def _mount(self, device: str, mountpoint: str, readonly: bool | None,
               options: str = "") -> None:
        """The one way to mount: a ``btrfsvol:`` name is split into its device and
        subvolume here; the appliance decides what a read-only slot allows, as only it
        knows which slot disks lie under an LV or array."""
        btrfsvol = split_btrfsvol(device)
        dev, subvolume = btrfsvol if btrfsvol is not None else (device, "")
        self._call("mount", device=self._dev(dev), mountpoint=mountpoint, readonly=readonly,
                   options=options, subvolume=subvolume)

    @serialised
    def umount(self, mountpoint: str) -> None:
        """Unmount the filesystem mounted on *mountpoint* (or the one from *device*)."""
        if mountpoint.startswith(("/dev/", BTRFSVOL)):
            kernel = canonical_volume(self._dev(mountpoint))
            for dev, mp in self._call("mounts"):
                if dev == kernel:
                    mountpoint = mp
                    break
            else:
                raise DeviceNameError(mountpoint, "is not mounted")
        self._call("umount", mountpoint=mountpoint)

    @serialised
    def umount_all(self) -> None:
        """Unmount everything mounted in the appliance, innermost first, and sync."""
        self._call("umount_all")

    @serialised
    def mounts(self) -> list[str]:
        """The devices mounted, in mount order."""
        return [self._out(dev) for dev, _mp in self._call("mounts")]

    @serialised
    def mountpoints(self) -> dict[str, str]:
        """Device -> mount point of every mount."""
        return {self._out(dev): mp for dev, mp in self._call("mounts")}

    @contextlib.contextmanager
    def mounted(self, device: str, mountpoint: str = "/", readonly: bool = True) -> Iterator[None]:
        """Mount *device* for the duration of a ``with`` block, then unmount it."""
        if readonly:
            self.mount_ro(device, mountpoint)
        else:
            self.mount(device, mountpoint)
        try:
            yield
        finally:
            self.umount(mountpoint)
