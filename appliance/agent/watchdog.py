"""A call stuck in a FUSE filesystem is cut loose once the host has given up on it.

A FUSE daemon (ntfs-3g) that hangs, on a hostile image or a stalled disk, leaves
whoever touches its mount asleep in the kernel until it answers: the agent's one
thread with it, and every later call behind it.  FUSE has no timeout of its own.
Each request says how long the host waits (``wait``, in seconds, since the last
frame either side sent: a stream's wait is for silence).  A watchdog thread
wakes at that deadline, once per call; if the agent, or a program it runs,
then sleeps in a FUSE request, it aborts the connection of every FUSE mount the
agent made (``/sys/fs/fuse/connections/N/abort``: every pending and later request
fails with ENOTCONN) and kills their daemons.  The stuck call fails (the host
dropped it already), the agent serves the next one, and those mounts answer
ENOTCONN until unmounted; mounting them again works.  A call that is only slow
elsewhere (not in FUSE) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable

from .common import libc, log
from .mountinfo import fuse_mounts

#: Where the kernel's FUSE connections are controlled (the fusectl filesystem).
CONNECTIONS = "/sys/fs/fuse/connections"


class Watchdog:
    """Fires *on_overdue* once when a call outlives the host's wait for it."""

    def __init__(self, on_overdue: Callable[[], None]) -> None:
        self._on_overdue = on_overdue
        self._cond = threading.Condition()
        self._wait: float | None = None  # the running call's, None between calls
        self._last = 0.0  # when the running call last moved a frame
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def begin(self, wait: float | None) -> None:
        """A call starts; the host waits *wait* seconds of silence (None: no limit)."""
        with self._cond:
            self._wait = wait if wait and wait > 0 else None
            self._last = time.monotonic()
            self._cond.notify()

    def progress(self) -> None:
        """A frame of the running call moved: the host's wait starts again.  (No
        notify: the watchdog sees it when it wakes, and waits on.)"""
        self._last = time.monotonic()

    def end(self) -> None:
        with self._cond:
            self._wait = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._wait is None:
                    self._cond.wait()
                left = self._last + self._wait - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._wait = None  # once per call
                # under the lock: the next call cannot begin (and be taken for this
                # one) until this is done
                try:
                    self._on_overdue()
                except Exception as e:  # the watchdog never dies
                    log(f"watchdog: {e!r}")


def _in_fuse(pid: str, task: str, mount_ids: set[str]) -> str | None:
    """Where thread *task* of *pid* waits on FUSE, or None.  Its kernel stack names a
    FUSE function when it waits for a request itself (a lookup, a stat); a read
    waits for the page cache, which FUSE fills, so there the syscall's first
    arguments are looked up: a descriptor of a file on a FUSE mount."""
    where = f"/proc/{pid}/task/{task}"
    with open(f"{where}/stack") as f:
        for line in f:
            frame = line.split()[-1].split("+")[0]
            if frame.startswith("fuse_") or frame == "request_wait_answer":
                return frame
    with open(f"{where}/syscall") as f:
        fields = f.read().split()
    if len(fields) < 3 or not fields[0].isdigit():
        return None  # running
    for arg in fields[1:3]:
        fd = int(arg, 16)
        if fd < 1 << 20:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("mnt_id:") and line.split()[1] in mount_ids:
                        return f"syscall {fields[0]} on descriptor {fd}"
    return None


def waiting_in_fuse(exclude: set[int]) -> list[str]:
    """The processes (pid, command, where) waiting on a FUSE filesystem, less
    *exclude* (its daemons)."""
    ids = {mount_id for mount_id, _dev in fuse_mounts().values()}
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in exclude:
            continue
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                where = _in_fuse(pid, task, ids)
                if where is not None:
                    with open(f"/proc/{pid}/comm") as f:
                        found.append(f"{pid} ({f.read().strip()}, {where})")
                    break
    return found


def abort_stuck_fuse(daemons: dict[str, subprocess.Popen[bytes]]) -> list[str]:
    """If a process sleeps in a FUSE request, abort the connections of the FUSE
    mounts *daemons* serve (by real mount point) and kill those daemons; the mount
    points cut off."""
    if not daemons:
        return []
    stuck = waiting_in_fuse({d.pid for d in list(daemons.values())})
    if not stuck:
        return []
    if not os.listdir(CONNECTIONS):  # the fuse module makes the directory, not this
        libc.mount(b"fusectl", CONNECTIONS.encode(), b"fusectl", 0, None)
    mounted = fuse_mounts()
    cut = []
    for mountpoint, daemon in list(daemons.items()):  # the agent's thread may change it
        if mountpoint in mounted:
            abort = f"{CONNECTIONS}/{mounted[mountpoint][1]}/abort"
            with contextlib.suppress(OSError), open(abort, "w") as f:
                f.write("1")
        with contextlib.suppress(ProcessLookupError):
            daemon.kill()  # stopped or looping, it serves nothing now
        cut.append(mountpoint)
    log(f"watchdog: the host gave up on a call while {', '.join(stuck)} waited on FUSE: "
        f"aborted the FUSE mounts {', '.join(cut)}")
    return cut
