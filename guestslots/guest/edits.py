"""Guest calls that change files of the mounted guest filesystem, with libguestfs's
names, argument order and meanings: cp, cp-a, cp-r, mv, ln, ln-s, rm-rf, rm-f, chmod,
chown, touch, truncate, utimens and extended attributes.

Paired with the agent's ``edits`` area (syscalls inside the guest root).  A
read-only mount refuses each of them (EROFS); the image is never written then.
"""

from __future__ import annotations

from typing import Any

from .base import GuestCalls, serialised


class EditCalls(GuestCalls):
    """Copy, move, link, remove; modes, owners, times, sizes, extended attributes."""

    @serialised
    def cp(self, src: str, dest: str) -> None:
        """Copy file *src* to *dest*, a file name or a directory to copy into."""
        self._call("cp", src=src, dest=dest, mode="file")

    @serialised
    def cp_a(self, src: str, dest: str) -> None:
        """Copy file or directory *src* recursively to *dest*, keeping modes, owners,
        times, symbolic links and special files (``cp -a``)."""
        self._call("cp", src=src, dest=dest, mode="a")

    @serialised
    def cp_r(self, src: str, dest: str) -> None:
        """Copy file or directory *src* recursively to *dest* (``cp -rP``: symbolic links
        copied as links)."""
        self._call("cp", src=src, dest=dest, mode="r")

    @serialised
    def mv(self, src: str, dest: str) -> None:
        """Move *src* to *dest*, a new name or a directory to move into."""
        self._call("mv", src=src, dest=dest)

    @serialised
    def ln(self, target: str, linkname: str) -> None:
        """Make *linkname* a hard link to *target*."""
        self._call("ln", target=target, linkname=linkname)

    @serialised
    def ln_f(self, target: str, linkname: str) -> None:
        """As :meth:`ln`, replacing *linkname* if it exists."""
        self._call("ln", target=target, linkname=linkname, force=True)

    @serialised
    def ln_s(self, target: str, linkname: str) -> None:
        """Make *linkname* a symbolic link to *target* (stored as given)."""
        self._call("ln", target=target, linkname=linkname, symbolic=True)

    @serialised
    def ln_sf(self, target: str, linkname: str) -> None:
        """As :meth:`ln_s`, replacing *linkname* if it exists."""
        self._call("ln", target=target, linkname=linkname, symbolic=True, force=True)

    @serialised
    def rm_rf(self, path: str) -> None:
        """Remove *path* and, for a directory, everything under it (``rm -rf``); no
        error if it does not exist.  ``/`` is refused."""
        self._call("rm_rf", path=path)

    @serialised
    def rm_f(self, path: str) -> None:
        """Remove file *path*; no error if it does not exist (directories: rmdir,
        rm_rf)."""
        self._call("rm_f", path=path)

    @serialised
    def chmod(self, mode: int, path: str) -> None:
        """Set the mode of *path* (numeric: ``0o755``; symlinks followed)."""
        self._call("chmod", mode=mode, path=path)

    @serialised
    def chown(self, owner: int, group: int, path: str) -> None:
        """Set the owner and group of *path* (numeric ids; symlinks followed)."""
        self._call("chown", owner=owner, group=group, path=path)

    @serialised
    def lchown(self, owner: int, group: int, path: str) -> None:
        """As :meth:`chown`, on a symbolic link itself."""
        self._call("chown", owner=owner, group=group, path=path, follow=False)

    @serialised
    def touch(self, path: str) -> None:
        """Set the times of regular file *path* to now, or create it empty."""
        self._call("touch", path=path)

    @serialised
    def truncate(self, path: str) -> None:
        """Truncate regular file *path* to zero length."""
        self._call("truncate_size", path=path, size=0)

    @serialised
    def truncate_size(self, path: str, size: int) -> None:
        """Truncate or extend (with a hole) regular file *path* to *size* bytes."""
        self._call("truncate_size", path=path, size=size)

    @serialised
    def utimens(self, path: str, atsecs: int, atnsecs: int, mtsecs: int,
                mtnsecs: int) -> None:
        """Set the access and modification times of *path* (symlinks followed); an
        *nsecs* of -1 means now, -2 leaves that time unchanged."""
        self._call("utimens", path=path, atsecs=atsecs, atnsecs=atnsecs, mtsecs=mtsecs,
                   mtnsecs=mtnsecs)

    def _xattrs(self, path: str, follow: bool) -> list[dict[str, Any]]:
        found = self._call("getxattrs", path=path, follow=follow)
        return [{"attrname": name, "attrval": value.encode("latin-1")}
                for name, value in found]

    @serialised
    def getxattrs(self, path: str) -> list[dict[str, Any]]:
        """The extended attributes of *path*: ``{"attrname", "attrval" (bytes)}`` each."""
        return self._xattrs(path, True)

    @serialised
    def lgetxattrs(self, path: str) -> list[dict[str, Any]]:
        """As :meth:`getxattrs`, of a symbolic link itself."""
        return self._xattrs(path, False)

    @serialised
    def setxattr(self, xattr: str, val: str, vallen: int, path: str) -> None:
        """Set extended attribute *xattr* of *path* to the first *vallen* bytes of
        *val*."""
        self._call("setxattr", xattr=xattr, val=val.encode()[:vallen].decode("latin-1"),
                   path=path)

    @serialised
    def removexattr(self, xattr: str, path: str) -> None:
        """Remove extended attribute *xattr* of *path*."""
        self._call("removexattr", xattr=xattr, path=path)
