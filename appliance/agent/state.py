"""The agent's state, which every area's calls share: the one state holder.

Every area's calls class derives from :class:`AgentBase` (``Agent`` in
``__main__`` sets the state up).  What it holds comes from leaf modules that import
nothing of the agent but :mod:`.common` (and :mod:`.mountinfo`), so the agent's
modules import each other without a circle (``tests/unit/test_layering.py``).
"""

from __future__ import annotations

import collections
import socket
import subprocess
from collections.abc import Callable
from typing import Any

from .blkid import Blkid
from .slotdisks import Disks
from .sysroot import Sysroot
from .watchdog import Watchdog


class AgentBase:
    """The agent's state, which every area's calls share (set up by ``Agent``)."""

    fd: int
    disks: Disks
    blkid: Blkid
    root: Sysroot
    udev_events: socket.socket
    #: btrfs subvolumes by disk (``name@diskseq``).
    subvolumes: dict[str, list[str]]
    #: The disks of read-only slots, as name@diskseq (a name is reused, a seq is not).
    readonly_disks: set[str]
    #: Requests that arrived while a download was streaming, served after it.
    queued: collections.deque[tuple[int, bytes]]
    calls: dict[str, Callable[..., Any]]
    powering_off: bool
    #: FUSE daemons (ntfs-3g) by the real mount point they serve.
    fuse_daemons: dict[str, subprocess.Popen[bytes]]
    #: Cuts a call stuck in FUSE loose once the host gave up on it.
    watchdog: Watchdog

    def close_hive(self) -> None:
        """Let go of an open registry hive (see :mod:`.hive`)."""

    def unmount(self, api: str) -> None:
        """Unmount guest mount point *api* (see :mod:`.mounts`)."""
        raise NotImplementedError
