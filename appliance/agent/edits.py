"""Changing files of the mounted guest filesystem: copy, move, link, remove, modes,
owners, times, sizes, extended attributes.

By syscalls inside the guest root (chroot), as libguestfs's ``cp``, ``mv``, ``ln``,
``rm-rf``... do with the shell tools: nothing a guest symlink says leaves the guest
filesystem, and a copy never reads a guest FIFO or device node (``cp-a`` makes the
node again, as ``cp -a`` does; the mount is nodev anyway).  A read-only mount
refuses every change with EROFS.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat

from .common import Fail, check_path, libc, open_regular_here
from .state import AgentBase

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _timespec(secs: int, nsecs: int) -> _Timespec:
    special = {-1: UTIME_NOW, -2: UTIME_OMIT}.get(int(nsecs))
    if special is not None:
        return _Timespec(0, special)
    return _Timespec(int(secs), int(nsecs))


def _copy_data(src: str, dst: str, mode: int) -> None:
    """Copy regular file *src* to *dst* (a regular file, created with *mode* or
    truncated): a guest's FIFO or device node at either end is refused, never opened
    for good (a FIFO as *dst* would block the agent until a reader came)."""
    fd = open_regular_here(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        out = open_regular_here(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            while chunk := os.read(fd, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        finally:
            os.close(out)
    finally:
        os.close(fd)


def _copy_tree(src: str, dst: str, keep: bool) -> None:
    """``cp -rP`` (*keep* False: modes less the umask, the caller's owner, new times)
    or ``cp -a`` (*keep*: modes, owners and times kept) of *src* to the new path *dst*.
    Symbolic links are copied as links and special files made again (never read)."""
    st = os.lstat(src)
    umask = 0 if keep else _umask()
    mode = stat.S_IMODE(st.st_mode) & ~umask
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        for name in sorted(os.listdir(src)):
            _copy_tree(os.path.join(src, name), os.path.join(dst, name), keep)
        os.chmod(dst, mode)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        _copy_data(src, dst, 0o600)
        os.chmod(dst, mode)
    else:
        os.mknod(dst, stat.S_IFMT(st.st_mode) | mode, st.st_rdev)
    if keep:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, mode)  # after chown, which clears setuid bits
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _into(src: str, dest: str) -> str:
    """*dest*, or *dest*/basename(*src*) if *dest* is a directory (as cp and mv do)."""
    if os.path.isdir(dest):
        return os.path.join(dest, os.path.basename(src.rstrip("/")))
    return dest


class EditCalls(AgentBase):
    """cp, mv, ln, rm, chmod, chown, touch, truncate, utimens, xattrs: guest root."""

    def call_cp(self, src: str, dest: str, mode: str = "file") -> None:
        """Copy *src* to *dest* (a path, or a directory to copy into): *mode* ``file``
        (cp), ``r`` (cp -rP) or ``a`` (cp -a)."""
        with self.root.inside():
            src, dest = check_path(src), _into(check_path(src), check_path(dest))
            if mode == "file":
                st = os.stat(src)
                if stat.S_ISDIR(st.st_mode):
                    raise Fail(f"{src}: is a directory (use cp-r or cp-a)", errno.EISDIR)
                _copy_data(os.path.realpath(src), dest, stat.S_IMODE(st.st_mode))
            elif mode in ("r", "a"):
                if os.path.lexists(dest) and not os.path.isdir(dest):
                    os.unlink(dest)
                _copy_tree(src, dest, keep=mode == "a")
            else:
                raise Fail(f"copy mode {mode!r}", errno.EINVAL)

    def call_mv(self, src: str, dest: str) -> None:
        """Move *src* to *dest* (a path, or a directory to move into)."""
        with self.root.inside():
            src, dest = check_path(src), _into(check_path(src), check_path(dest))
            try:
                os.rename(src, dest)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                _copy_tree(src, dest, keep=True)  # another filesystem: copy, then remove
                if os.path.isdir(src) and not os.path.islink(src):
                    shutil.rmtree(src)
                else:
                    os.unlink(src)

    def call_ln(self, target: str, linkname: str, symbolic: bool = False,
                force: bool = False) -> None:
        """Make *linkname* a hard link to *target* (or a symbolic link holding it)."""
        with self.root.inside():
            linkname = _into(target, check_path(linkname))
            if force and os.path.lexists(linkname) and not (
                    os.path.isdir(linkname) and not os.path.islink(linkname)):
                os.unlink(linkname)
            if symbolic:
                if "\0" in target or not target:
                    raise Fail("a symlink target must be a non-empty string", errno.EINVAL)
                os.symlink(target, linkname)
            else:
                os.link(check_path(target), linkname, follow_symlinks=False)

    def call_rm_rf(self, path: str) -> None:
        """Remove *path*, and everything under it (``rm -rf``); no error if missing.
        Removing ``/`` (the whole guest filesystem) is refused."""
        with self.root.inside():
            path = check_path(path)
            if os.path.realpath(path) == "/" and not os.path.islink(path):
                raise Fail("rm-rf /: refused (it would empty the whole guest filesystem)",
                           errno.EPERM)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)

    def call_rm_f(self, path: str) -> None:
        """Remove file *path*; no error if it is missing (a directory is one)."""
        with self.root.inside(), contextlib.suppress(FileNotFoundError):
            os.unlink(check_path(path))

    def call_chmod(self, mode: int, path: str) -> None:
        with self.root.inside():
            os.chmod(check_path(path), int(mode))

    def call_chown(self, owner: int, group: int, path: str, follow: bool = True) -> None:
        with self.root.inside():
            os.chown(check_path(path), int(owner), int(group), follow_symlinks=follow)

    def call_touch(self, path: str) -> None:
        """Create empty regular file *path*, or set its times to now."""
        with self.root.inside():
            path = check_path(path)
            if os.path.lexists(path):
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    raise Fail(f"{path}: not a regular file", errno.EINVAL)
                os.utime(path, follow_symlinks=False)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o666))

    def call_truncate_size(self, path: str, size: int) -> None:
        with self.root.inside():
            path = check_path(path)
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise Fail(f"{path}: not a regular file", errno.EINVAL)
                os.ftruncate(fd, int(size))
            finally:
                os.close(fd)

    def call_utimens(self, path: str, atsecs: int, atnsecs: int, mtsecs: int,
                     mtnsecs: int) -> None:
        """utimensat(2) of *path* (symlinks followed): an *nsecs* of -1 sets that time
        to now, -2 leaves it unchanged."""
        times = (_Timespec * 2)(_timespec(atsecs, atnsecs), _timespec(mtsecs, mtnsecs))
        with self.root.inside():
            if libc.utimensat(AT_FDCWD, os.fsencode(check_path(path)), times, 0) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), path)

    def call_getxattrs(self, path: str, follow: bool = True) -> list[list[str]]:
        """[name, value (latin-1 text of its bytes)] of every extended attribute."""
        with self.root.inside():
            path = check_path(path)
            return [[name, os.getxattr(path, name, follow_symlinks=follow).decode("latin-1")]
                    for name in os.listxattr(path, follow_symlinks=follow)]

    def call_setxattr(self, xattr: str, val: str, path: str, follow: bool = True) -> None:
        with self.root.inside():
            os.setxattr(check_path(path), xattr, val.encode("latin-1"),
                        follow_symlinks=follow)

    def call_removexattr(self, xattr: str, path: str, follow: bool = True) -> None:
        with self.root.inside():
            os.removexattr(check_path(path), xattr, follow_symlinks=follow)
