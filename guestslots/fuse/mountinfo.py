"""Which FUSE mounts are guestslots's, read from ``/proc/self/mountinfo``.  Pure parsing
(:func:`parse`) and one reader.

A guestslots mount has the type ``fuse.guestslots`` and the source
``guestslots:PID``, PID being the process that serves it: ``guestslots umount``
waits for that process to end (the appliance shut down, every write on the
image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse(text: str) -> list[Mount]:
    """Every mount of a mountinfo text (proc(5): fields, then ``-``, type, source)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(" "), right.split(" ")
        if not sep or len(fields) < 5 or len(after) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), _unescape(after[0]), _unescape(after[1])))
    return mounts


def find(mountpoint: str | Path) -> Mount | None:
    """The mount at *mountpoint* (the last one made there), if any."""
    target = str(mountpoint)
    found = None
    for mount in parse(Path("/proc/self/mountinfo").read_text()):
        if mount.mountpoint == target:
            found = mount
    return found
