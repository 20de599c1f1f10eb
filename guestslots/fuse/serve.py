"""Serve a mounted guest filesystem at a host directory until it is unmounted.

The mount ends when it is unmounted (``guestslots umount``, ``fusermount3 -u``),
on SIGTERM, SIGINT or SIGHUP, or when the process named as its owner ends (the
Python API's caller: killed, it leaves no mount behind); the directory is
unmounted in every case before :func:`serve` returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import trio

from ..appliance import Appliance
from ..errors import GuestslotsError
from .mountinfo import SOURCE_PREFIX
from .ops import GuestFs


class MountpointError(GuestslotsError):
    """The mountpoint cannot take a mount: missing, not a directory, not empty, or
    already a mount."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"mountpoint {path}: {why}")


def check_mountpoint(path: str | os.PathLike[str]) -> Path:
    """*path*, absolute, if a mount can go there; else :class:`MountpointError`."""
    p = Path(path).absolute()
    if not p.exists():
        raise MountpointError(str(p), "does not exist")
    if not p.is_dir():
        raise MountpointError(str(p), "is not a directory")
    if os.path.ismount(p):
        raise MountpointError(str(p), "is already a mount point")
    if any(p.iterdir()):
        raise MountpointError(str(p), "is not empty")
    return p


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_NOSYMFOLLOW = 32, 4096, 256


def no_symlink_following(mountpoint: Path, writable: bool) -> bool:
    """Make the kernel refuse to follow symlinks on the mount (``nosymfollow``, Linux
    5.10): a guest's ``/etc/x -> /etc/shadow`` is shown as that link, and a host tool
    opening it gets ELOOP instead of the host's file.  libfuse cannot pass the flag,
    so the mount is remounted with it; that needs root (False otherwise)."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    flags = (MS_REMOUNT | MS_BIND | MS_NOSYMFOLLOW | MS_NOSUID | MS_NODEV | MS_NOEXEC
             | (0 if writable else MS_RDONLY))
    if libc.mount(None, os.fsencode(mountpoint), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot remount {mountpoint} nosymfollow: {os.strerror(err)}")
    return True


def options(writable: bool) -> set[str]:
    """The FUSE mount options: the server's pid as source (``guestslots umount`` finds
    it there), the kernel checks the guest's permissions, and a read-only mount is
    ``ro`` to the kernel too."""
    opts = set(pyfuse3.default_options)
    opts |= {f"fsname={SOURCE_PREFIX}{os.getpid()}", "subtype=guestslots",
             "rw" if writable else "ro", "nodev", "nosuid", "noexec"}
    return opts


async def _wait_owner(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return  # already gone
        raise
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def _main(owner_pid: int | None) -> None:
    async with trio.open_nursery() as nursery:
        async def fuse() -> None:
            await pyfuse3.main()
            nursery.cancel_scope.cancel()  # unmounted from outside

        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                           signal.SIGHUP) as received:
                async for _ in received:
                    nursery.cancel_scope.cancel()
                    return

        async def owner(pid: int) -> None:
            await _wait_owner(pid)
            nursery.cancel_scope.cancel()

        nursery.start_soon(fuse)
        nursery.start_soon(signals)
        if owner_pid is not None:
            nursery.start_soon(owner, owner_pid)


def serve(app: Appliance, mountpoint: Path, writable: bool,
          ready: Callable[[], None] = lambda: None, owner_pid: int | None = None) -> None:
    """Mount *app*'s mounted guest filesystem at *mountpoint* and serve it; call *ready*
    once the mount is there.  Returns once it is unmounted."""
    pyfuse3.init(GuestFs(app, writable), str(mountpoint), options(writable))
    try:
        no_symlink_following(mountpoint, writable)
        ready()
        trio.run(_main, owner_pid)
    finally:
        with contextlib.suppress(Exception):
            pyfuse3.close(unmount=True)
