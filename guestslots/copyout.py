"""Copying files and trees out of the appliance without ever writing outside DESTDIR.

Names come from a hostile filesystem: ``..``-looking names, absolute symlinks,
newlines, bytes that are not UTF-8.  Every host-side operation is relative to
a directory file descriptor this module opened itself, with ``O_NOFOLLOW``
and ``O_EXCL``: symlinks from the image are recreated as symlinks but never
followed, and a name that already exists is an error, never a write through.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from .appliance import Appliance
from .errors import GuestslotsError


class CopyOutError(GuestslotsError):
    """A name from the image could not be copied safely."""


def _check_name(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise CopyOutError(f"refusing the file name {name!r} from the image")
    return name


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def copy_out(
    app: Appliance,
    remote: str,
    destdir: str | os.PathLike[str],
    skipped: Callable[[str, str], None] | None = None,
) -> None:
    """Copy *remote* (a file, symlink or directory tree) into host directory *destdir*.

    Device nodes, FIFOs and sockets are not copied; *skipped* (path, why) is
    told of each.
    """
    dir_fd = os.open(destdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        name = remote.rstrip("/").rsplit("/", 1)[-1]
        if not name:  # "/" itself: its entries go straight into destdir
            for child in app.ls("/"):
                _copy(app, _join("/", child), dir_fd, _check_name(child), skipped)
        else:
            _copy(app, remote, dir_fd, _check_name(name), skipped)
    finally:
        os.close(dir_fd)


def _copy(app: Appliance, remote: str, dir_fd: int, name: str,
          skipped: Callable[[str, str], None] | None) -> None:
    mode = app.lstat(remote)["mode"]
    if stat.S_ISDIR(mode):
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        sub_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        try:
            for child in app.ls(remote):
                _copy(app, _join(remote, child), sub_fd, _check_name(child), skipped)
        finally:
            os.close(sub_fd)
    elif stat.S_ISREG(mode):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            app.download(remote, f)
    elif stat.S_ISLNK(mode):
        os.symlink(app.readlink(remote), name, dir_fd=dir_fd)
    elif skipped is not None:
        skipped(remote, "not a regular file, directory or symlink")
