"""Block devices in sysfs: slot disks, partitions, and the LVs and md arrays stacked on
them (which slot disks lie under a device, what its API name is)."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from .common import (
    _DISK_SYSFS_RE,
    _KERNEL_DEV_RE,
    _VOLUME_RE,
    Fail,
    _sysfs_read,
    split_dm_name,
)


def kernel_device(dev: str) -> tuple[str, str]:
    """Check a device argument: (disk name, device name) of a slot disk or its partition."""
    m = _KERNEL_DEV_RE.match(dev)
    if not m:
        raise Fail(f"{dev}: not a slot device", errno.EINVAL)
    disk, part = m.group(1), m.group(2)
    if not _DISK_SYSFS_RE.search(os.path.realpath(f"/sys/block/{disk}")):
        raise Fail(f"{dev}: not a slot device", errno.ENODEV)
    name = disk + part
    if part and not os.path.exists(f"/sys/block/{disk}/{name}"):
        raise Fail(f"{dev}: no such partition", errno.ENOENT)
    return disk, name


def partitions_of(disk: str) -> list[str]:
    parts = []
    for entry in os.listdir(f"/sys/block/{disk}"):
        if entry.startswith(disk) and os.path.exists(f"/sys/block/{disk}/{entry}/partition"):
            parts.append((int(_sysfs_read(f"/sys/block/{disk}/{entry}/partition")), entry))
    return [name for _, name in sorted(parts)]


def _sysfs_list(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def holders(name: str) -> list[str]:
    """The devices stacked directly on block device *name* (dm, md)."""
    return _sysfs_list(f"/sys/class/block/{name}/holders")


def slaves(name: str) -> list[str]:
    return _sysfs_list(f"/sys/class/block/{name}/slaves")


def stacked_on(names: list[str]) -> list[str]:
    """Every device stacked on *names*, transitively, each after those stacked on it."""
    order: list[str] = []

    def visit(name: str) -> None:
        for holder in holders(name):
            visit(holder)
            if holder not in order:
                order.append(holder)

    for name in names:
        visit(name)
    return order


def block_name(path: str) -> str | None:
    """The kernel name of the block device at *path* (symlinks followed), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    real = os.path.realpath(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    return os.path.basename(real) if os.path.exists(real) else None


def disk_sysfs(name: str) -> str:
    """The sysfs directory of the whole disk under block device *name* (a disk or a
    partition)."""
    path = os.path.realpath(f"/sys/class/block/{name}")
    return os.path.dirname(path) if os.path.exists(f"{path}/partition") else path


def slot_disks_under(name: str) -> set[str] | None:
    """The slot disks that block device *name* is made of (itself or its disk, for a slot
    disk or partition; its members, for a dm/md device); None if anything under it is
    not a slot disk (the appliance's own root disk)."""
    if _VOLUME_RE.match(name):
        below = [slot_disks_under(b) for b in slaves(name)]
        if not below or any(b is None for b in below):
            return None
        return set().union(*[b for b in below if b is not None])
    if not name.startswith("sd"):
        return None
    disk = disk_sysfs(name)
    return {os.path.basename(disk)} if _DISK_SYSFS_RE.search(disk + "/") else None


def is_slot_backed(name: str) -> bool:
    """Whether *name* is a slot disk, its partition, or a dm/md device built only on those."""
    return slot_disks_under(name) is not None


def dm_name(name: str) -> str:
    return _sysfs_read(f"/sys/block/{name}/dm/name")


def lvm_uuid(name: str) -> str | None:
    """The LVM uuid (``LVM-`` + VG uuid + LV uuid...) of dm device *name*, if LVM made it."""
    try:
        uuid = _sysfs_read(f"/sys/block/{name}/dm/uuid")
    except OSError:
        return None
    return uuid if uuid.startswith("LVM-") else None


def public_lv(name: str) -> tuple[str, str] | None:
    """(VG, LV) when dm device *name* is an LV a user sees (not a hidden sub-LV)."""
    uuid = lvm_uuid(name)
    if uuid is None or len(uuid) != 4 + 64:
        return None
    parts = split_dm_name(dm_name(name))
    return (parts[0], parts[1]) if len(parts) == 2 else None


def dashed_uuid(uuid: str) -> str:
    """LVM's printed form of a 32-character uuid (6-4-4-4-4-4-6)."""
    out, at = [], 0
    for n in (6, 4, 4, 4, 4, 4, 6):
        out.append(uuid[at : at + n])
        at += n
    return "-".join(out)


def md_running(name: str) -> bool:
    try:
        state = _sysfs_read(f"/sys/block/{name}/md/array_state")
    except OSError:
        return False
    return state not in ("clear", "inactive")


def canonical(name: str) -> str:
    """The API name of a kernel block device: ``/dev/VG/LV`` for an LV, as libguestfs."""
    if name.startswith("dm-"):
        lv = public_lv(name)
        return f"/dev/{lv[0]}/{lv[1]}" if lv else f"/dev/mapper/{dm_name(name)}"
    return f"/dev/{name}"


def active_lvs() -> list[tuple[str, str]]:
    """(API name, kernel name) of every active LV on the slots, sorted by API name."""
    found = []
    for name in _sysfs_list("/sys/block"):
        if name.startswith("dm-") and public_lv(name) and is_slot_backed(name):
            found.append((canonical(name), name))
    return sorted(found)


def running_arrays() -> list[str]:
    """Kernel names of the running md arrays on the slots, in numeric order."""
    found = [
        n for n in _sysfs_list("/sys/block")
        if n.startswith("md") and _VOLUME_RE.match(n) and md_running(n) and is_slot_backed(n)
    ]
    return sorted(found, key=lambda n: int(n[2:]))


def resolve_device(dev: Any) -> str:
    """Check a device argument; return its kernel name.  A slot disk or partition,
    or an LV (``/dev/VG/LV``, ``/dev/mapper/...``) or md array built on slots only."""
    if not isinstance(dev, str) or "\0" in dev:
        raise Fail(f"{dev!r}: not a device name", errno.EINVAL)
    if _KERNEL_DEV_RE.match(dev):
        return kernel_device(dev)[1]
    name = block_name(dev) if os.path.realpath(dev).startswith("/dev/") else None
    if name is None or not _VOLUME_RE.match(name) or not is_slot_backed(name):
        raise Fail(f"{dev}: not a slot device, LV or md array", errno.ENODEV)
    if name.startswith("md") and not md_running(name):
        raise Fail(f"{dev}: the array is not running", errno.ENODEV)
    return name


def diskseq(name: str) -> str:
    """The kernel's sequence number of the disk under *name*: new at every attach."""
    return _sysfs_read(f"{disk_sysfs(name)}/diskseq")
