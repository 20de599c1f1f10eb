"""The inode table of a FUSE mount: inode numbers <-> guest paths, with the kernel's
lookup counts.  Pure: no FUSE, no appliance.

A FUSE filesystem names files by inode number; the agent names them by path.
Numbers are ours (the guest's own ``st_ino`` may repeat across the filesystems an
OS mounts), handed out the first time the kernel learns a path and taken back
when it forgets it.  A rename moves every path under the renamed one.
"""

from __future__ import annotations

import posixpath

ROOT = 1


class StaleInode(KeyError):
    """An inode number the table does not hold (forgotten, or never given)."""


class InodeTable:
    """Inode numbers for guest paths, and how many lookups the kernel holds on each."""

    def __init__(self) -> None:
        self._paths: dict[int, str] = {ROOT: "/"}
        self._inodes: dict[str, int] = {"/": ROOT}
        self._lookups: dict[int, int] = {ROOT: 1}
        self._next = ROOT + 1

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, inode: int) -> str:
        """The guest path of *inode*."""
        try:
            return self._paths[inode]
        except KeyError:
            raise StaleInode(inode) from None

    def child(self, parent: int, name: str) -> str:
        """The guest path of *name* in directory *parent*."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a file name: {name!r}")
        return posixpath.join(self.path(parent), name)

    def inode(self, path: str) -> int | None:
        """The inode number of *path*, if the kernel knows it."""
        return self._inodes.get(path)

    def looked_up(self, path: str) -> int:
        """*path*'s inode number (a new one if needed), with one more lookup held."""
        inode = self._inodes.get(path)
        if inode is None:
            inode = self._next
            self._next += 1
            self._paths[inode] = path
            self._inodes[path] = inode
            self._lookups[inode] = 0
        self._lookups[inode] += 1
        return inode

    def forget(self, inode: int, count: int) -> None:
        """The kernel drops *count* lookups of *inode*; at none, the number is free."""
        if inode == ROOT or inode not in self._lookups:
            return
        self._lookups[inode] -= count
        if self._lookups[inode] <= 0:
            del self._lookups[inode]
            path = self._paths.pop(inode)
            if self._inodes.get(path) == inode:
                del self._inodes[path]

    def removed(self, path: str) -> None:
        """*path* was unlinked or removed: later lookups of it are of a new file (its
        inode stays until forgotten, without a path to reach it)."""
        inode = self._inodes.pop(path, None)
        if inode is not None:
            self._paths[inode] = ""

    def renamed(self, old: str, new: str) -> None:
        """*old* became *new*, and every path under *old* moved with it; whatever *new*
        was before is gone."""
        self.removed(new)
        prefix = old.rstrip("/") + "/"
        moved = [(p, i) for p, i in self._inodes.items() if p == old or p.startswith(prefix)]
        for path, _ in moved:
            del self._inodes[path]
        for path, inode in moved:
            target = new + path[len(old):]
            self._inodes[target] = inode
            self._paths[inode] = target
