"""Guest calls about LVM and md RAID.

Paired with the agent's ``volumes`` area.  LVM runs with ``metadata_read_only``
and never writes a guest's LVM metadata.
"""

from __future__ import annotations

from .base import GuestCalls, serialised


class VolumeCalls(GuestCalls):
    """Physical volumes, volume groups, logical volumes and md arrays."""

    @serialised
    def pvs(self) -> list[str]:
        """The LVM physical volumes on the slots (device names), sorted."""
        return sorted(self._out(pv) for pv in self._call("pvs"))

    @serialised
    def vgs(self) -> list[str]:
        """The LVM volume groups on the slots, active or not, sorted."""
        return list(self._call("vgs"))

    @serialised
    def lvs(self) -> list[str]:
        """The LVM logical volumes on the slots as ``/dev/VG/LV``, active or not, sorted."""
        return list(self._call("lvs"))

    @serialised
    def vg_activate(self, activate: bool, volgroups: list[str]) -> None:
        """Activate (or deactivate) the volume groups *volgroups*; an empty list means
        all.  Deactivating a volume group with a mounted LV is refused."""
        self._call("vg_activate", activate=bool(activate), volgroups=list(volgroups))

    @serialised
    def vg_activate_all(self, activate: bool) -> None:
        """Activate (or deactivate) every volume group on the slots."""
        self.vg_activate(activate, [])

    @serialised
    def list_dm_devices(self) -> list[str]:
        """Every device-mapper node in the appliance's ``/dev/mapper``, sorted (after a
        slot's volume groups are deactivated, none of theirs is left)."""
        return list(self._call("list_dm_devices"))

    @serialised
    def list_md_devices(self) -> list[str]:
        """The running md arrays on the slots (``/dev/mdN``, never translated)."""
        return list(self._call("list_md_devices"))

    @serialised
    def md_detail(self, md: str) -> dict[str, str]:
        """What mdadm says of array *md*: level, devices, metadata, uuid, name..."""
        detail = self._call("md_detail", md=self._dev(md))
        return {key: self._out(value) for key, value in detail.items()}
