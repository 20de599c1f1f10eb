"""Slot disks: which the kernel has (kept current from its uevents), hotplug and
unplug, partitions and filesystems (the host's ``guest/devices`` pairs with this)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import stat
import time
from typing import Any

import wire  # type: ignore[import-not-found]  # beside the agent in the appliance

from . import links
from .blockdev import (
    active_lvs,
    canonical,
    diskseq,
    holders,
    kernel_device,
    partitions_of,
    resolve_device,
    running_arrays,
    slot_disks_under,
)
from .common import (
    _NO_FS_PART_TYPES,
    BLKFLSBUF,
    BTRFS,
    BTRFS_PROBE_DIR,
    BTRFSVOL,
    LINK_DIR,
    MNT_DETACH,
    MS_GUEST,
    MS_RDONLY,
    Fail,
    _check_libc,
    libc,
    tool,
)
from .volumes import (
    VolumeCalls,
)


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


class DiskCalls(VolumeCalls):
    """Slot disks: waiting for them, their partitions and filesystems, getting them ready
    to unplug."""

    def call_ping(self) -> str:
        return "pong"

    def call_disks_of(self, device: str) -> list[str]:
        """The slot disks *device* is on (``/dev/sdX``): its own disk for a disk or a
        partition, every member's disk for an LV or md array (a btrfs subvolume is on
        its device's)."""
        if isinstance(device, str) and device.startswith(BTRFSVOL):
            split = wire.split_btrfsvol(device, _is_block_device)
            device = split[0] if split else device
        disks = slot_disks_under(resolve_device(device)) or set()
        return sorted(f"/dev/{d}" for d in disks)

    def call_prepare_save(self) -> None:
        """Before the host saves this appliance's state: write back and drop the page
        cache, so that its pages are free (and, with ``init_on_free=1`` on the kernel's
        command line, zero: a saved state holds no zero pages, and restores faster)."""
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        with contextlib.suppress(OSError), open("/proc/sys/vm/compact_memory", "w") as f:
            f.write("1\n")

    def call_wait_disk(
        self, target: int, plugged: bool = True, timeout: float = 30.0
    ) -> str | None:
        self.disks.drain()
        before = self.disks.present.get(int(target))
        name = self.disks.wait(int(target), bool(plugged), float(timeout))
        if not plugged and before is not None:
            links.remove(before)
        return name

    def call_wait_link(self, name: str, timeout: float = 10.0) -> str:
        """Wait until udev has made /dev/disk/guestslots/NAME; return its target device."""
        if "/" in name or name in ("", ".", ".."):
            raise Fail(f"{name!r}: not a link name", errno.EINVAL)
        link = f"{LINK_DIR}/{name}"
        if not links.is_slot_link(name):  # a label link: the agent's own (see .links)
            self.disks.drain()
            links.refresh(list(self.disks.present.values()))
        deadline = time.monotonic() + float(timeout)
        poller = select.poll()
        poller.register(self.udev_events, select.POLLIN)
        while True:
            while True:  # each processed udev event is a reason to look again
                try:
                    self.udev_events.recv(65536)
                except BlockingIOError:
                    break
                except OSError as e:  # overflowed while nobody waited: harmless here
                    if e.errno != errno.ENOBUFS:
                        raise
            if os.path.islink(link):
                return os.path.realpath(link)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{link} did not appear in {float(timeout):g} s", errno.ETIMEDOUT)
            poller.poll(left * 1000)

    def call_list_partitions(self, disks: list[str]) -> list[str]:
        out: list[str] = []
        for dev in disks:
            disk, _ = kernel_device(dev)
            out.extend(f"/dev/{p}" for p in partitions_of(disk))
        return out

    def fs_entries(self, name: str, api: str) -> list[list[str]]:
        """[api, type] pairs for list_filesystems, from one probe: none for containers
        (PVs, RAID members, LUKS, MBR extended and Windows LDM/reserved partitions); a
        btrfs adds its subvolumes other than the default one."""
        found = self.blkid.probe(f"/dev/{name}", kept=True)
        fstype = found.get("TYPE", "")
        if found.get("PART_ENTRY_TYPE", "").lower() in _NO_FS_PART_TYPES:
            return []
        if fstype.endswith("_member") or fstype == "crypto_LUKS":
            return []
        entries = [[api, fstype or "unknown"]]
        if fstype == "btrfs":
            entries += [[f"{BTRFSVOL}{api}/{path}", "btrfs"]
                        for path in self.btrfs_subvolumes(name)]
        return entries

    def btrfs_subvolumes(self, name: str) -> list[str]:
        """Paths of the subvolumes of the btrfs on *name*, in id order, less the default
        one (mounting the device gives that one), as libguestfs lists them.  Cached
        for as long as the same disk is attached (no call makes subvolumes)."""
        key = f"{name}@{diskseq(name)}"
        if key not in self.subvolumes:
            self.subvolumes[key] = self.list_subvolumes(name)
        return self.subvolumes[key]

    def list_subvolumes(self, name: str) -> list[str]:
        os.makedirs(BTRFS_PROBE_DIR, exist_ok=True)
        rc = libc.mount(f"/dev/{name}".encode(), BTRFS_PROBE_DIR.encode(), b"btrfs",
                        MS_RDONLY | MS_GUEST, b"subvolid=5")
        _check_libc(rc, f"mount /dev/{name} (btrfs, to list its subvolumes)")
        try:
            listing = tool(BTRFS, "subvolume", "list", BTRFS_PROBE_DIR)
            default = tool(BTRFS, "subvolume", "get-default", BTRFS_PROBE_DIR)
        finally:
            libc.umount2(BTRFS_PROBE_DIR.encode(), MNT_DETACH)
        default_id = int(default.split()[1])  # "ID 5 (FS_TREE)" or "ID 256 gen ... path x"
        paths = []
        for line in listing.splitlines():
            m = re.match(r"ID ([0-9]+) gen [0-9]+ top level [0-9]+ path (.+)$", line)
            if m and int(m.group(1)) != default_id:
                paths.append(m.group(2))
        return paths

    def call_list_filesystems(self, disks: list[str]) -> list[list[str]]:
        """As libguestfs lists them: unpartitioned disks, then partitions (both in the
        order of *disks*), then md arrays, then LVs (see :meth:`fs_entries`)."""
        whole: list[list[str]] = []
        parts: list[list[str]] = []
        for dev in disks:
            disk, _ = kernel_device(dev)
            partitions = partitions_of(disk)
            if not partitions:
                whole += self.fs_entries(disk, f"/dev/{disk}")
            for name in partitions:
                parts += self.fs_entries(name, f"/dev/{name}")
        arrays = [
            e for md in running_arrays() if not partitions_of(md)
            for e in self.fs_entries(md, f"/dev/{md}")
        ]
        lvs = [e for api, name in active_lvs() for e in self.fs_entries(name, api)]
        return whole + parts + arrays + lvs

    def call_blkid(self, device: str) -> dict[str, str]:
        return self.blkid.probe(f"/dev/{resolve_device(device)}", kept=True)

    def call_disk_plugged(
        self, target: int, readonly: bool, activate: bool = True, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait for the disk at SCSI *target*, then :meth:`scan_volumes` it (one round
        trip): its kernel name, and what the scan did (a scan failure is a warning:
        the disk itself is usable).  A *readonly* slot's disk is writable here (its
        writes go to a throwaway overlay), so read-write mounts of anything on it
        are refused here (:meth:`check_writable`)."""
        start = time.monotonic()
        name = self.disks.wait(int(target), True, float(timeout))
        assert name is not None
        seen = time.monotonic()
        links.add(name)
        if readonly:
            self.readonly_disks.add(f"{name}@{diskseq(name)}")
        linked = time.monotonic()
        try:
            found = self.scan_volumes(name, bool(activate))
        except (Fail, OSError) as e:
            found = {"warnings": [f"/dev/{name}: looking for PVs and RAID members failed: {e}"]}
        took = {"kernel": seen - start, "links": linked - seen,
                "scan": time.monotonic() - linked}
        return {"name": name, "took": took, **found}

    def call_prepare_unplug(self, device: str, force: bool = False) -> list[str]:
        """Make a disk safe to remove: nothing mounted or stacked on it, everything
        written.  Returns what uses it (and does nothing) unless *force*."""
        disk, _ = kernel_device(device)
        users = self.users_of(disk)
        if users and not force:
            return users
        names = [disk, *partitions_of(disk)]
        if users:
            self.teardown_stack(names)
        self.release_inactive_arrays(names)
        os.sync()
        fd = os.open(f"/dev/{disk}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            fcntl.ioctl(fd, BLKFLSBUF)
        finally:
            os.close(fd)
        left = self.users_of(disk) or [
            f"/dev/{n} is held by {canonical(h)}" for n in names for h in holders(n)
        ]
        if left:
            raise Fail(f"/dev/{disk} is still in use: {', '.join(left)}", errno.EBUSY)
        return []
