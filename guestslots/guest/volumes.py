"""Guest calls about LVM and md RAID.

Paired with the agent's ``volumes`` area, and ``makevol`` for the calls that make and
remove volumes and arrays.  LVM runs with ``metadata_read_only`` and never writes a
guest's LVM metadata, except in those calls, and only on writable slots.
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

    @serialised
    def pvcreate(self, device: str) -> None:
        """Make *device* (a partition, disk or md array of writable slots, not in use) an
        LVM physical volume; whatever it held is gone."""
        self._call("pvcreate", device=self._dev(device))

    @serialised
    def vgcreate(self, volgroup: str, physvols: list[str]) -> None:
        """Make volume group *volgroup* of the physical volumes *physvols*."""
        self._call("vgcreate", volgroup=volgroup, physvols=[self._dev(p) for p in physvols])

    @serialised
    def lvcreate(self, logvol: str, volgroup: str, mbytes: int) -> None:
        """Make logical volume *logvol* of *mbytes* MiB in *volgroup*: ``/dev/VG/LV``,
        active when the call returns."""
        self._call("lvcreate", logvol=logvol, volgroup=volgroup, mbytes=mbytes)

    @serialised
    def lvcreate_free(self, logvol: str, volgroup: str, percent: int) -> None:
        """Make logical volume *logvol* in *volgroup* of *percent* % of its free space."""
        self._call("lvcreate", logvol=logvol, volgroup=volgroup, percent=percent)

    @serialised
    def lvresize(self, device: str, mbytes: int) -> None:
        """Grow or shrink logical volume *device* to *mbytes* MiB; the filesystem on it
        is not resized (shrinking an LV cuts its filesystem)."""
        self._call("lvresize", device=device, mbytes=mbytes)

    @serialised
    def lvremove(self, device: str) -> None:
        """Remove logical volume *device* (``/dev/VG/LV``), or all of ``/dev/VG``'s
        (refused while one is mounted)."""
        self._call("lvremove", device=device)

    @serialised
    def vgremove(self, vgname: str) -> None:
        """Remove volume group *vgname* with its logical volumes (refused while one is
        mounted)."""
        self._call("vgremove", vgname=vgname)

    @serialised
    def pvremove(self, device: str) -> None:
        """Wipe the LVM physical volume label from *device* (in no volume group)."""
        self._call("pvremove", device=self._dev(device))

    @serialised
    def md_create(self, name: str, devices: list[str], missingbitmap: int = 0,
                  nrdevices: int = 0, spare: int = 0, chunk: int = 0,
                  level: str = "raid1") -> None:
        """Make md RAID array *name* (``/dev/md/NAME``) of *devices* and start it.
        *level*: raid0, raid1 (the default), raid4, raid5, raid6, raid10, linear...;
        *nrdevices* active devices and *spare* spares (by default all active); a set
        bit *i* of *missingbitmap* makes position *i* "missing" (a degraded array);
        *chunk* in bytes.  The array is listed by :meth:`list_md_devices`."""
        self._call("md_create", name=name, devices=[self._dev(d) for d in devices],
                   missingbitmap=missingbitmap, nrdevices=nrdevices, spare=spare,
                   chunk=chunk, level=level)

    @serialised
    def md_stop(self, md: str) -> None:
        """Stop md array *md* (refused while anything on it is mounted or in use)."""
        self._call("md_stop", md=self._dev(md))
