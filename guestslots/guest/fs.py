"""Guest calls for a host-side filesystem: what ``guestslots mount`` (FUSE) forwards.

Paired with the agent's ``fs`` area.  Paths are resolved inside the mounted guest
filesystem as for the file calls; attributes are never those of a symlink's
target, and come back as :class:`Attrs`.  Errors are
:class:`~guestslots.errors.GuestOSError` with the guest's ``errno``.
"""

from __future__ import annotations

import base64
from typing import NamedTuple

from .base import GuestCalls, serialised

#: Directory entries per fs_readdir call: a page with its attributes stays far below
#: a message's size limit (wire.MAX_FRAME), whatever the guest's names.
READDIR_PAGE = 2000


class Attrs(NamedTuple):
    """A guest file's attributes, as ``lstat`` gives them (times in nanoseconds)."""

    mode: int
    ino: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    blocks: int
    rdev: int


class FsCalls(GuestCalls):
    """Attributes, directories with attributes, and every change a filesystem makes."""

    @serialised
    def fs_lstat(self, path: str) -> Attrs:
        """The attributes of *path* (a symlink's own)."""
        return Attrs(*self._call("fs_lstat", path=path))

    @serialised
    def fs_readdir(self, path: str) -> list[tuple[str, Attrs]]:
        """Every entry of directory *path* with its attributes, sorted by name, a page
        of :data:`READDIR_PAGE` entries per call."""
        out: list[tuple[str, Attrs]] = []
        start = 0
        while True:
            page, more = self._call("fs_readdir", path=path, start=start, count=READDIR_PAGE)
            out += [(name, Attrs(*a)) for name, a in page]
            start += READDIR_PAGE
            if not more:
                return out

    @serialised
    def fs_create(self, path: str, mode: int) -> Attrs:
        """Create regular file *path*, which must not exist, with permissions *mode*."""
        return Attrs(*self._call("fs_create", path=path, mode=mode))

    @serialised
    def fs_mkdir(self, path: str, mode: int) -> Attrs:
        """Create directory *path* with permissions *mode*."""
        return Attrs(*self._call("fs_mkdir", path=path, mode=mode))

    @serialised
    def fs_symlink(self, target: str, path: str) -> Attrs:
        """Create symlink *path* holding *target* as it is."""
        return Attrs(*self._call("fs_symlink", target=target, path=path))

    @serialised
    def fs_link(self, existing: str, path: str) -> Attrs:
        """Create *path*, a hard link to *existing*."""
        return Attrs(*self._call("fs_link", existing=existing, path=path))

    @serialised
    def fs_rename(self, old: str, new: str, noreplace: bool = False) -> None:
        """Rename *old* to *new* (replacing it, unless *noreplace*)."""
        self._call("fs_rename", old=old, new=new, noreplace=noreplace)

    @serialised
    def fs_unlink(self, path: str) -> None:
        """Remove *path* (not a directory)."""
        self._call("fs_unlink", path=path)

    @serialised
    def fs_setattr(self, path: str, mode: int | None = None, uid: int = -1, gid: int = -1,
                   size: int | None = None, atime_ns: int | None = None,
                   mtime_ns: int | None = None) -> Attrs:
        """Change what is given of *path*'s permissions, owner (-1: unchanged), size and
        times; return its attributes."""
        return Attrs(*self._call("fs_setattr", path=path, mode=mode, uid=uid, gid=gid,
                                 size=size, atime=atime_ns, mtime=mtime_ns))

    @serialised
    def fs_fsync(self, path: str) -> None:
        """Flush regular file *path* to its disk."""
        self._call("fs_fsync", path=path)

    @serialised
    def fs_listxattr(self, path: str) -> list[str]:
        """The names of *path*'s extended attributes."""
        return list(self._call("fs_listxattr", path=path))

    @serialised
    def fs_getxattr(self, path: str, name: str) -> bytes:
        """The value of *path*'s extended attribute *name*."""
        return base64.b64decode(self._call("fs_getxattr", path=path, name=name))

    @serialised
    def fs_setxattr(self, path: str, name: str, value: bytes, flags: int = 0) -> None:
        """Set *path*'s extended attribute *name* to *value* (*flags*: XATTR_CREATE,
        XATTR_REPLACE)."""
        self._call("fs_setxattr", path=path, name=name,
                   value=base64.b64encode(value).decode(), flags=flags)

    @serialised
    def fs_removexattr(self, path: str, name: str) -> None:
        """Remove *path*'s extended attribute *name*."""
        self._call("fs_removexattr", path=path, name=name)
