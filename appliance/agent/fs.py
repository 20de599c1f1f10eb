"""Calls for a host-side filesystem (``guestslots mount``, FUSE): every operation a
FUSE filesystem forwards, one call each, with the mounted guest filesystem as root.

Attributes travel as lists in ``wire.STAT_FIELDS`` order (a directory of ten
thousand entries is one call and one message).  Nothing here follows a guest
symlink out of the guest filesystem (chroot, see :mod:`.files`), opens a device
node or FIFO for data (:meth:`.sysroot.Sysroot.open_regular`), or creates one.
"""

from __future__ import annotations

import base64
import errno
import os
import stat

from .channel import (
    Channel,
)
from .common import (
    Fail,
    check_path,
)


def attrs(st: os.stat_result) -> list[int]:
    """*st* as ``wire.STAT_FIELDS``."""
    return [st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
            st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_blocks, st.st_rdev]


class FsCalls(Channel):
    """What a FUSE filesystem on the host asks of the guest filesystem."""

    def call_fs_lstat(self, path: str) -> list[int]:
        with self.root.inside():
            return attrs(os.lstat(check_path(path)))

    def call_fs_readdir(self, path: str, start: int = 0,
                        count: int = 2000) -> list[object]:
        """``[entries, more]``: entries *start* to *start* + *count* of directory
        *path* (sorted by name), each with its attributes (not followed), and whether
        there are more; the host asks page after page, so that a directory of any
        size fits in messages.  An entry that vanished before its lstat is left out."""
        start, count = int(start), int(count)
        out: list[list[object]] = []
        with self.root.inside():
            names = sorted(os.listdir(check_path(path)))
            for name in names[start:start + count]:
                try:
                    out.append([name, attrs(os.lstat(os.path.join(path, name)))])
                except FileNotFoundError:
                    continue
        return [out, start + count < len(names)]

    def call_fs_create(self, path: str, mode: int) -> list[int]:
        """Create regular file *path* (it must not exist) with *mode*."""
        fd = self.root.open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                    int(mode) & 0o7777)
        try:
            return attrs(os.fstat(fd))
        finally:
            os.close(fd)

    def call_fs_mkdir(self, path: str, mode: int) -> list[int]:
        with self.root.inside():
            os.mkdir(check_path(path), int(mode) & 0o7777)
            return attrs(os.lstat(path))

    def call_fs_symlink(self, target: str, path: str) -> list[int]:
        """A symlink *path* to *target*, stored as it is (it means what the guest says)."""
        if not isinstance(target, str) or "\0" in target:
            raise Fail("bad symlink target", errno.EINVAL)
        with self.root.inside():
            os.symlink(target, check_path(path))
            return attrs(os.lstat(path))

    def call_fs_link(self, existing: str, path: str) -> list[int]:
        with self.root.inside():
            os.link(check_path(existing), check_path(path), follow_symlinks=False)
            return attrs(os.lstat(path))

    def call_fs_rename(self, old: str, new: str, noreplace: bool = False) -> None:
        with self.root.inside():
            if noreplace and os.path.lexists(check_path(new)):
                raise Fail(f"{new}: exists", errno.EEXIST)
            os.rename(check_path(old), check_path(new))

    def call_fs_unlink(self, path: str) -> None:
        with self.root.inside():
            os.unlink(check_path(path))

    def call_fs_setattr(self, path: str, mode: int | None = None, uid: int = -1,
                        gid: int = -1, size: int | None = None,
                        atime: int | None = None, mtime: int | None = None) -> list[int]:
        """Change what is given of *path*'s mode, owner, size and times (nanoseconds;
        a symlink's own owner and times, never its target's); return its attributes."""
        with self.root.inside():
            path = check_path(path)
            st = os.lstat(path)
            if mode is not None and not stat.S_ISLNK(st.st_mode):
                os.chmod(path, int(mode) & 0o7777)
            if uid != -1 or gid != -1:
                os.chown(path, int(uid), int(gid), follow_symlinks=False)
        if size is not None:
            fd = self.root.open_regular(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, int(size))
            finally:
                os.close(fd)
        with self.root.inside():
            if atime is not None or mtime is not None:
                st = os.lstat(path)
                os.utime(path, ns=(st.st_atime_ns if atime is None else int(atime),
                                   st.st_mtime_ns if mtime is None else int(mtime)),
                         follow_symlinks=False)
            return attrs(os.lstat(path))

    def call_fs_fsync(self, path: str) -> None:
        fd = self.root.open_regular(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def call_fs_listxattr(self, path: str) -> list[str]:
        with self.root.inside():
            return os.listxattr(check_path(path), follow_symlinks=False)

    def call_fs_getxattr(self, path: str, name: str) -> str:
        """The value of extended attribute *name*, base64."""
        with self.root.inside():
            value = os.getxattr(check_path(path), name, follow_symlinks=False)
        return base64.b64encode(value).decode()

    def call_fs_setxattr(self, path: str, name: str, value: str, flags: int = 0) -> None:
        """Set extended attribute *name* to *value* (base64)."""
        with self.root.inside():
            os.setxattr(check_path(path), name, base64.b64decode(value), int(flags),
                        follow_symlinks=False)

    def call_fs_removexattr(self, path: str, name: str) -> None:
        with self.root.inside():
            os.removexattr(check_path(path), name, follow_symlinks=False)
