"""The appliance's mount table, read with :func:`wire.parse_mountinfo` (the one
mountinfo reader the host and the agent share)."""

from __future__ import annotations

import wire  # type: ignore[import-not-found]  # beside the agent in the appliance


def mounts() -> list[wire.Mount]:
    """Every mount of this process's mount namespace, in mount order."""
    with open("/proc/self/mountinfo") as f:
        return list(wire.parse_mountinfo(f.read()))


def mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount point, source, root within the filesystem, fstype) of every mount, in
    mount order."""
    return [(m.mountpoint, m.source, m.root, m.fstype) for m in mounts()]


def fuse_mounts() -> dict[str, tuple[str, int]]:
    """Every FUSE mount (fuse, fuseblk): its mount point -> (mount id, the kernel's
    device number, ``major << 20 | minor``, which names its fusectl directory)."""
    found = {}
    for m in mounts():
        if m.fstype.startswith("fuse"):
            major, minor = (int(n) for n in m.device.split(":"))
            found[m.mountpoint] = (m.mount_id, major << 20 | minor)
    return found
