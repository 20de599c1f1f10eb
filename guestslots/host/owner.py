"""Which process owns an appliance, told in a way that outlives it.

A libvirt domain started by a caller that was then killed keeps running (libvirt
daemonises QEMU); ``guestslots gc`` must tell such a domain from one whose owner
is alive.  An owner is named by this machine's boot id, its pid, and the pid's
start time (so a reused pid is not mistaken for the owner).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    """A process on a machine, identified across pid reuse."""

    host: str
    boot_id: str
    pid: int
    start: int  # clock ticks after boot (/proc/PID/stat, field 22)

    def alive(self) -> bool | None:
        """Whether the owner still runs; None when it is not of this boot of this
        machine (nothing can be told from here)."""
        if self.boot_id != _boot_id():
            return None
        return _start_time(self.pid) == self.start


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its end
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def current() -> Owner:
    """This process."""
    start = _start_time(os.getpid())
    assert start is not None
    return Owner(socket.gethostname(), _boot_id(), os.getpid(), start)
