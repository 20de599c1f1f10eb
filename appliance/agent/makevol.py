"""Making and removing LVM volumes and md arrays on the slots: pvcreate, vgcreate,
lvcreate, lvresize, lvremove, vgremove, pvremove, md-create, md-stop.

LVM runs with ``metadata_read_only`` (see ``lvm.conf``): only these calls lift it,
for one command, and only after every PV the command writes is found on writable
slots (a read-only slot's writes would go to a throwaway overlay: refused, not
lost).  Whatever a call would remove or make again must not be mounted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import socket
import time

from .blockdev import block_name, canonical, resolve_device
from .common import LVM, MDADM, MDADM_CONF, NETLINK_KOBJECT_UEVENT, Fail, tool
from .mounts import MountCalls, check_unused, guest_mounts
from .volumes import lvm_report

#: What lifts ``metadata_read_only`` for one LVM command.
WRITE_METADATA = ("--config", "global/metadata_read_only=0")
_NAME_RE = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}\Z")
#: How long md-stop waits for the kernel to delete the stopped array's device.
MD_GONE_TIMEOUT = 5.0
MD_LEVELS = ("linear", "raid0", "0", "stripe", "raid1", "1", "mirror", "raid4", "4",
             "raid5", "5", "raid6", "6", "raid10", "10")


def _name(what: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise Fail(f"{name!r}: not a valid {what} name", errno.EINVAL)
    return name


def _lvm_write(*args: str, what: str) -> str:
    return tool(LVM, args[0], *WRITE_METADATA, *args[1:], what=what)


class VolumeMakeCalls(MountCalls):
    """LVM and md creation and removal, on writable slots only."""

    def _require_writable_meta(self, name: str) -> None:
        self.require_writable(name, "its LVM or RAID metadata is not written")

    def _vg_pvs(self, vg: str) -> list[str]:
        """Kernel names of the PVs of volume group *vg* (which must exist)."""
        rows = [r for r in lvm_report("pvs", "pv_name,vg_name") if r.get("vg_name") == vg]
        if not rows and vg not in {r.get("vg_name") for r in lvm_report("vgs", "vg_name")}:
            raise Fail(f"{vg}: no such volume group", errno.ENOENT)
        names = []
        for row in rows:
            name = block_name(row["pv_name"])
            if name is None:
                raise Fail(f"{vg}: PV {row['pv_name']} is missing", errno.ENODEV)
            names.append(name)
        return names

    def _writable_vg(self, vg: str) -> None:
        for pv in self._vg_pvs(vg):
            self._require_writable_meta(pv)

    def _lv(self, device: str) -> tuple[str, str]:
        """(VG, LV) of ``/dev/VG/LV``."""
        parts = device.split("/") if isinstance(device, str) else []
        if len(parts) != 4 or parts[:2] != ["", "dev"]:
            raise Fail(f"{device}: not a logical volume (/dev/VG/LV)", errno.EINVAL)
        return _name("volume group", parts[2]), _name("logical volume", parts[3])

    def _check_lvs_unmounted(self, vg: str, lv: str | None = None) -> None:
        prefix = f"/dev/{vg}/" if lv is None else f"/dev/{vg}/{lv}"
        busy = [f"{src} is mounted on {mp}" for mp, src, _ in guest_mounts()
                if (src.startswith(prefix) if lv is None else src == prefix)]
        if busy:
            raise Fail(f"in use: {'; '.join(busy)}", errno.EBUSY)

    def call_pvcreate(self, device: str) -> None:
        """Make *device* an LVM physical volume (whatever it held is gone)."""
        name = resolve_device(device)
        self._require_writable_meta(name)
        check_unused([name])
        _lvm_write("pvcreate", "-ff", "-y", f"/dev/{name}", what=f"pvcreate {canonical(name)}")

    def call_vgcreate(self, volgroup: str, physvols: list[str]) -> None:
        """Make volume group *volgroup* of physical volumes *physvols*."""
        _name("volume group", volgroup)
        if not physvols:
            raise Fail("vgcreate: no physical volumes given", errno.EINVAL)
        names = [resolve_device(pv) for pv in physvols]
        for name in names:
            self._require_writable_meta(name)
        _lvm_write("vgcreate", "-y", volgroup, *(f"/dev/{n}" for n in names),
                   what=f"vgcreate {volgroup}")

    def call_lvcreate(self, logvol: str, volgroup: str, mbytes: int = 0,
                      percent: int = 0) -> None:
        """Make logical volume *logvol* of *mbytes* MiB (or *percent* of the free space)
        in *volgroup*; it is active when the call returns."""
        _name("logical volume", logvol)
        _name("volume group", volgroup)
        self._writable_vg(volgroup)
        size = ["-l", f"{int(percent)}%FREE"] if percent else ["-L", f"{int(mbytes)}m"]
        if not percent and int(mbytes) <= 0:
            raise Fail("lvcreate: the size must be > 0 MiB", errno.EINVAL)
        _lvm_write("lvcreate", "-y", "-W", "y", *size, "-n", logvol, volgroup,
                   what=f"lvcreate /dev/{volgroup}/{logvol}")

    def call_lvresize(self, device: str, mbytes: int) -> None:
        """Grow or shrink logical volume *device* to *mbytes* MiB (its filesystem is
        not resized: shrinking cuts it)."""
        vg, lv = self._lv(device)
        self._writable_vg(vg)
        _lvm_write("lvresize", "--force", "-L", f"{int(mbytes)}m", f"{vg}/{lv}",
                   what=f"lvresize {device}")

    def call_lvremove(self, device: str) -> None:
        """Remove logical volume *device* (``/dev/VG/LV``), or every LV of volume group
        ``/dev/VG``."""
        parts = device.split("/") if isinstance(device, str) else []
        if len(parts) == 3 and parts[:2] == ["", "dev"]:
            vg, lv = _name("volume group", parts[2]), None
        else:
            vg, lv = self._lv(device)
        self._writable_vg(vg)
        self._check_lvs_unmounted(vg, lv)
        _lvm_write("lvremove", "-f", vg if lv is None else f"{vg}/{lv}",
                   what=f"lvremove {device}")

    def call_vgremove(self, vgname: str) -> None:
        """Remove volume group *vgname* and every LV in it."""
        _name("volume group", vgname)
        self._writable_vg(vgname)
        self._check_lvs_unmounted(vgname)
        _lvm_write("vgremove", "-f", vgname, what=f"vgremove {vgname}")

    def call_pvremove(self, device: str) -> None:
        """Wipe the LVM label from *device* (it must be in no volume group)."""
        name = resolve_device(device)
        self._require_writable_meta(name)
        check_unused([name])
        _lvm_write("pvremove", "-ff", "-y", f"/dev/{name}", what=f"pvremove {canonical(name)}")

    def call_md_create(self, name: str, devices: list[str], missingbitmap: int = 0,
                       nrdevices: int = 0, spare: int = 0, chunk: int = 0,
                       level: str = "raid1") -> None:
        """Make md array *name* (``/dev/md/NAME``) of *devices* and start it (its node
        is there when this returns)."""
        _name("array", name)
        if level not in MD_LEVELS:
            raise Fail(f"{level!r}: not an md level ({', '.join(MD_LEVELS)})", errno.EINVAL)
        names = [resolve_device(d) for d in devices]
        for n in names:
            self._require_writable_meta(n)
        check_unused(names)
        # as libguestfs: a set bit i of missingbitmap puts "missing" at position i;
        # devices plus missing ones make nrdevices active ones and the spares
        missing, spare = int(missingbitmap), int(spare)
        slots = len(names) + bin(missing).count("1")
        nrdevices = int(nrdevices) or slots - spare
        if nrdevices + spare != slots or nrdevices <= 0 or spare < 0 or missing >> slots:
            raise Fail(f"md-create: {len(names)} devices and {bin(missing).count('1')} "
                       f"missing do not make {nrdevices} devices and {spare} spares",
                       errno.EINVAL)
        taken = iter(names)
        members = ["missing" if missing >> i & 1 else f"/dev/{next(taken)}"
                   for i in range(slots)]
        argv = [MDADM, "--create", f"/dev/md/{name}", "--run", f"--config={MDADM_CONF}",
                f"--level={level}", f"--raid-devices={nrdevices}"]
        if spare:
            argv.append(f"--spare-devices={spare}")
        if int(chunk):
            argv.append(f"--chunk={int(chunk) // 1024}")
        tool(*argv, *members, what=f"md-create {name}")
        if block_name(f"/dev/md/{name}") is None:
            raise Fail(f"md-create {name}: /dev/md/{name} did not appear", errno.EIO)

    def call_md_stop(self, md: str) -> None:
        """Stop md array *md* (nothing on it may be mounted or in use)."""
        name = resolve_device(md)
        if not name.startswith("md"):
            raise Fail(f"{md}: not an md array", errno.EINVAL)
        check_unused([name])
        # the kernel deletes a stopped array's device a moment later: wait for that (its
        # remove uevent), so that the next md-create gets the number it would get anyway
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                           NETLINK_KOBJECT_UEVENT) as events:
            events.bind((0, 1))
            tool(MDADM, "--stop", f"/dev/{name}", what=f"md-stop {md}")
            deadline = time.monotonic() + MD_GONE_TIMEOUT
            while os.path.exists(f"/sys/block/{name}"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([events], [], [], left)[0]:
                    break  # still there: harmless, only the next number differs
                events.recv(8192)
        # and what udev would remove (there are no md rules here): /dev/md/NAME links
        # left naming it would make mdadm skip its number
        with contextlib.suppress(FileNotFoundError):
            for link in os.listdir("/dev/md"):
                if os.path.realpath(f"/dev/md/{link}") == f"/dev/{name}":
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"/dev/md/{link}")
