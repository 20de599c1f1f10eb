"""Mount a guest filesystem on the host with FUSE: ``guestslots mount``, ``guestslots
umount`` and :func:`mounted`.

As guestmount does: ``mount`` returns once the mount point is ready, leaving a
process that serves it (the appliance inside it); ``umount`` unmounts and waits
until that process has shut the appliance down, so every write is on the image
when it returns.  Read-only unless asked (then also ``ro`` to the kernel).
pyfuse3 (the ``fuse`` extra) is needed by the serving process only.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import GuestslotsError
from .mountinfo import find

#: How long ``umount`` waits for the serving process to shut its appliance down.
UMOUNT_WAIT = 120.0


class MountError(GuestslotsError):
    """A guest filesystem could not be mounted or unmounted on the host."""


def mount(images: Sequence[tuple[str, str | None]], mountpoint: str | os.PathLike[str], *,
          rw: bool = False, mounts: Sequence[str] = (), inspector: bool = False,
          foreground: bool = False, owner_pid: int | None = None,
          domain: str | None = None, connect: str | None = None) -> None:
    """Mount *images* (``(path, format)``; ``mounts`` as guestfish's ``-m``, or
    *inspector* as its ``-i``) at *mountpoint*.  Returns once the mount is ready,
    leaving a process that serves it; with *foreground*, serves it in this process
    until it is unmounted.  *owner_pid*: unmount when that process ends.  *domain*:
    also every disk of that libvirt domain at *connect*, read-only (see
    :func:`guestslots.opening.open_appliance`)."""
    try:
        from .serve import check_mountpoint
    except ImportError as e:
        raise MountError(f"mounting needs pyfuse3 ({e}): pip install 'guestslots[fuse]' "
                         "(it builds against libfuse 3: libfuse3-dev, pkg-config)") from None

    target = check_mountpoint(mountpoint)
    if foreground:
        _serve(images, target, rw, mounts, inspector, owner_pid, ready=lambda: None,
               domain=domain, connect=connect)
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the serving process: its own session, silent once ready
        os.close(r)
        os.setsid()
        code = 1
        try:
            def ready() -> None:
                os.write(w, b"ok")
                os.close(w)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)

            _serve(images, target, rw, mounts, inspector, owner_pid, ready, domain=domain,
                   connect=connect)
            code = 0
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.write(w, f"error: {e}".encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode(errors="replace")
    if said != "ok":
        os.waitpid(pid, 0)
        raise MountError(said.removeprefix("error: ") or
                         "the serving process died before the mount was ready")


def _serve(images: Sequence[tuple[str, str | None]], target: Path, rw: bool,
           mounts: Sequence[str], inspector: bool, owner_pid: int | None,
           ready: Callable[[], None], domain: str | None = None,
           connect: str | None = None) -> None:
    from ..opening import open_appliance
    from .serve import serve

    app = open_appliance(images, readonly=not rw, mounts=mounts, inspector=inspector,
                         plain_filesystem=inspector, launch=True, domain=domain,
                         connect=connect)
    try:
        serve(app, target, rw, ready=ready, owner_pid=owner_pid)
    finally:
        app.shutdown()


def umount(mountpoint: str | os.PathLike[str], timeout: float = UMOUNT_WAIT) -> None:
    """Unmount a guestslots mount and wait until its serving process has shut its
    appliance down (every write is then on the image)."""
    target = os.path.realpath(mountpoint)
    found = find(target)
    if found is None or found.server_pid is None:
        raise MountError(f"{target} is not a guestslots mount")
    try:
        pidfd: int | None = os.pidfd_open(found.server_pid)
    except OSError:
        pidfd = None  # its server died: the mount is stale, unmount it all the same
    try:
        done = subprocess.run(["fusermount3", "-u", target], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise MountError(f"cannot unmount {target}: "
                             f"{done.stderr.strip() or done.returncode}")
        if pidfd is not None and not select.select([pidfd], [], [], timeout)[0]:
            raise MountError(f"{target} is unmounted, but its appliance (pid "
                             f"{found.server_pid}) did not shut down in {timeout:g} s")
    finally:
        if pidfd is not None:
            os.close(pidfd)


@contextlib.contextmanager
def mounted(*images: str | os.PathLike[str], format: str | None = None, rw: bool = False,
            mounts: Sequence[str] = (), inspector: bool | None = None,
            mountpoint: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Mount *images* on the host for the ``with`` block; give the host path.

    The operating system's filesystems as its fstab says (``-i``; for an image
    without one, its single filesystem), unless *mounts* (``DEV[:MOUNTPOINT]``)
    are given.  Read-only unless *rw* (writes then reach the image, all of them by
    the end of the block).  *mountpoint*: an empty directory (default: a new
    temporary one, removed afterwards).  The mount is served by a process of its
    own, which unmounts it if this process dies.
    """
    made = None
    if mountpoint is None:
        made = tempfile.mkdtemp(prefix="gsmnt-")
        mountpoint = made
    command = [sys.executable, "-m", "guestslots.cli"]
    if format:
        command += ["--format", format]
    command += ["mount", "--owner-pid", str(os.getpid())]
    if rw:
        command.append("--rw")
    for m in mounts:
        command += ["-m", m]
    if inspector or (inspector is None and not mounts):
        command.append("-i")
    command += [os.fspath(i) for i in images] + [os.fspath(mountpoint)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise MountError(done.stderr.strip().removeprefix("guestslots: mount: ")
                             or f"guestslots mount failed ({done.returncode})")
        try:
            yield Path(mountpoint)
        finally:
            umount(mountpoint)
    finally:
        if made is not None:
            with contextlib.suppress(OSError):
                os.rmdir(made)
