"""The mounted guest filesystem as root: file calls run inside it (chroot in and out),
so guest symlinks and ``..`` resolve there and never reach the appliance's files."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from .common import SYSROOT, Fail, open_regular_here


class Sysroot:
    """Run file operations with the mounted guest filesystem as root (chroot in/out)."""

    def __init__(self) -> None:
        self.real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        try:
            os.lstat(SYSROOT)
        except OSError as e:
            if e.errno == errno.ENOTCONN:  # see watchdog.py
                raise Fail("the filesystem mounted on / was cut off (its FUSE daemon "
                           "hung, and the host gave up on a call): umount / and mount it "
                           "again", errno.ENOTCONN) from None
        if not os.path.ismount(SYSROOT):
            raise Fail("no filesystem is mounted on /: call mount first", errno.ENOENT)
        os.chroot(SYSROOT)
        os.chdir("/")
        try:
            yield
        finally:
            os.fchdir(self.real_root)
            os.chroot(".")
            os.chdir("/")

    def open_regular(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open regular file *path* in the guest filesystem; anything else is refused.

        Opened non-blocking, so that a FIFO cannot wedge the agent, and checked
        with fstat before a byte is read or written: a guest's FIFO, socket or
        device node is never read from (mounts are nodev as well).
        """
        with self.inside():
            return open_regular_here(path, flags, mode)
