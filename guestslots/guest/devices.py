"""Guest calls about block devices: partitions, filesystems, probes, udev links.

Paired with the agent's ``disks`` and ``blkid`` areas.
"""

from __future__ import annotations

from ..errors import DeviceNameError
from ..model.names import split_btrfsvol
from ..wire import LINK_DIR
from .base import GuestCalls, serialised


class DeviceCalls(GuestCalls):
    """Partitions, filesystems and what libblkid says of them."""

    @serialised
    def list_partitions(self) -> list[str]:
        """Every partition of every full slot, in slot then partition order."""
        parts = self._call("list_partitions", disks=self._filled_kernel_disks())
        return [self._out(p) for p in parts]

    @serialised
    def list_filesystems(self) -> dict[str, str]:
        """Device -> filesystem type (``unknown`` when none is recognised), as libguestfs.

        Whole disks that are not partitioned, partitions, running md arrays, then
        active LVs (``/dev/VG/LV``, sorted).  Containers are left out: PVs, RAID
        members, LUKS, MBR extended partitions, Windows LDM and reserved partitions.
        """
        pairs = self._call("list_filesystems", disks=self._filled_kernel_disks())
        return {self._out(dev): fstype for dev, fstype in pairs}

    @serialised
    def blkid(self, device: str) -> dict[str, str]:
        """Everything libblkid says of *device* (TYPE, UUID, LABEL, PTTYPE, PART_ENTRY_*...)."""
        return dict(self._call("blkid", device=self._dev(device)))

    @serialised
    def disks_of(self, device: str) -> list[str]:
        """The slot disks *device* is on: its own disk for a disk or a partition, the
        disks of every member for an LV or md array, the device's for a btrfs
        subvolume (``btrfsvol:...``)."""
        return [self._out(d) for d in self._call("disks_of", device=self._dev(device))]

    def _probe_mountable(self, mountable: str) -> dict[str, str]:
        """:meth:`blkid` of a mountable: a btrfs subvolume (``btrfsvol:DEV/SUB``) is
        its filesystem's, on DEV (as libguestfs's vfs_* calls answer)."""
        volume = split_btrfsvol(mountable)
        return self.blkid(volume[0] if volume else mountable)

    @serialised
    def vfs_type(self, device: str) -> str:
        """The filesystem type on *device* (or a ``btrfsvol:`` mountable), or ``""``."""
        return self._probe_mountable(device).get("TYPE", "")

    @serialised
    def vfs_label(self, device: str) -> str:
        """The filesystem label on *device* (or a ``btrfsvol:`` mountable), or ``""``."""
        return self._probe_mountable(device).get("LABEL", "")

    @serialised
    def vfs_uuid(self, device: str) -> str:
        """The filesystem UUID on *device* (or a ``btrfsvol:`` mountable), or ``""``."""
        return self._probe_mountable(device).get("UUID", "")

    @serialised
    def resolve_link(self, link: str, timeout: float = 10.0) -> str:
        """Wait until the appliance's udev has made *link* and return the device it names.

        *link* is ``/dev/disk/guestslots/<label|slotK>[-partN]``.  Calls never
        need these links (the host translates labels itself, without waiting
        for udev); this is for checking the mapping, and for tools run inside
        the appliance that want stable names.
        """
        prefix = LINK_DIR + "/"
        if not link.startswith(prefix):
            raise DeviceNameError(link, f"not a link under {LINK_DIR}")
        # The agent waits *timeout* for the link; the host waits a little longer for the
        # agent's answer (``wait_for``), so a missing link is the agent's clear error.
        target = self._call("wait_link", wait_for=timeout + 5, name=link.removeprefix(prefix),
                            timeout=timeout)
        return self._out(str(target))
