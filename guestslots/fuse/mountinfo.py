"""Which FUSE mounts are guestslots's, read from ``/proc/self/mountinfo`` (parsed by
:func:`guestslots.wire.parse_mountinfo`, the one reader host and agent share).

A guestslots mount has the type ``fuse.guestslots`` and the source
``guestslots:PID``, PID being the process that serves it: ``guestslots umount``
waits for that process to end (the appliance shut down, every write on the
image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import wire

FSTYPE = "fuse.guestslots"
SOURCE_PREFIX = "guestslots:"


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: where, what type, from what source."""

    mountpoint: str
    fstype: str
    source: str

    @property
    def server_pid(self) -> int | None:
        """The pid serving a guestslots mount (None for any other mount)."""
        if self.fstype != FSTYPE or not self.source.startswith(SOURCE_PREFIX):
            return None
        try:
            return int(self.source[len(SOURCE_PREFIX):])
        except ValueError:
            return None


def parse(text: str) -> list[Mount]:
    """Every mount of a mountinfo text."""
    return [Mount(m.mountpoint, m.fstype, m.source) for m in wire.parse_mountinfo(text)]


def find(mountpoint: str | Path) -> Mount | None:
    """The mount at *mountpoint* (the last one made there), if any."""
    target = str(mountpoint)
    found = None
    for mount in parse(Path("/proc/self/mountinfo").read_text()):
        if mount.mountpoint == target:
            found = mount
    return found
