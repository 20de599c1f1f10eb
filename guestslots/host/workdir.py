"""Per-appliance work directories, and the clean-up of those whose owner died.

An appliance keeps its sockets, overlays and console log in a directory
``$TMPDIR/guestslots-*``.  Its owner holds a shared ``flock`` on the file
``lock`` in it for as long as it lives; the kernel drops the lock when the
owner dies, however it dies (SIGKILL included).  Others may hold it too: the
QEMU of a detached appliance inherits it (so the directory lives as long as that
QEMU; a QEMU that a libvirt daemon starts inherits nothing of ours, so a keeper
process holds it for as long as that QEMU runs: :meth:`WorkDir.keep_while`), and a
process that attaches to it takes it as well (:meth:`WorkDir.join`).
A directory with a ``lock`` that nobody holds is therefore left over (the clean-up
takes it exclusively), and the next launch removes it.  The
lock is taken before the directory gets its public name (it is made under a
hidden name and renamed), so no launch can ever see, and remove, a directory
being set up; a directory without a ``lock`` (an older guestslots's, perhaps
still in use) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "guestslots-"
LOCK = "lock"


class WorkDir:
    """A work directory, locked by this process until :meth:`remove`."""

    def __init__(self, parent: str | None = None, prefix: str = PREFIX) -> None:
        if not prefix.startswith(PREFIX):
            raise ValueError(f"a work directory's name starts with {PREFIX!r}")
        parent = parent or tempfile.gettempdir()
        staging = tempfile.mkdtemp(prefix=f".{prefix}", dir=parent)
        self._fd = os.open(os.path.join(staging, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        self.path = os.path.join(parent, os.path.basename(staging)[1:])
        os.rename(staging, self.path)

    @classmethod
    def join(cls, path: str) -> WorkDir:
        """The existing work directory *path* of a running appliance, held by this
        process too from now on (OSError if it has no lock or is being removed)."""
        self = cls.__new__(cls)
        self.path = path
        self._fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise
        return self

    def release(self) -> None:
        """Let go of the directory, leaving it (for the others that hold it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def keep_while(self, pid: int) -> None:
        """Hold the directory for as long as process *pid* runs, whoever else lets go
        of it: a keeper (coreutils' ``tail --pid``, in a session of its own, an orphan
        at once) inherits the lock and exits within 0.2 s of *pid*."""
        try:
            subprocess.run(["setsid", "--fork", "tail", f"--pid={pid}", "-s", "0.2", "-f",
                            "/dev/null"], pass_fds=(self._fd,), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            raise OSError(f"cannot start the keeper of {self.path}: {e}") from None

    @property
    def lock_fd(self) -> int:
        """The descriptor holding the lock: a process that inherits it holds it too."""
        return self._fd

    def remove(self) -> None:
        """Delete the directory and release it (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _kill_leftovers(path: Path) -> None:
    """Kill the processes a dead owner left running from *path*: those whose pid file
    is under it (libvirt daemonises the QEMU it starts, so it outlives its caller) and
    whose command line still names it (not a reused pid)."""
    for pidfile in path.glob("run/*/*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            # not this process: ``guestslots gc --uri qemu:///embed?root=PATH`` has the
            # dead caller's root open, and libvirt writes its own pid file there
            if pid == os.getpid():
                continue
            if os.fsencode(path) in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
                log.info("killed process %d, left running by a dead owner of %s", pid, path)


def remove_stale(parent: str | None = None) -> list[str]:
    """Remove the work directories whose owners are gone; return their paths."""
    parent = parent or tempfile.gettempdir()
    removed = []
    for path in Path(parent).glob(f"{PREFIX}*"):
        if path.is_symlink() or not path.is_dir():
            continue
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # no lock file (not ours, or an older version's), or gone meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is alive
        else:
            _kill_leftovers(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
            log.info("removed the work directory of a dead appliance: %s", path)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return removed


def fresh(prefix: str = PREFIX) -> WorkDir:
    """A new work directory, after removing those whose owners died."""
    for stale in remove_stale():
        log.info("removed %s, left by an appliance whose owner died", stale)
    return WorkDir(prefix=prefix)
