"""The FUSE filesystem: each kernel request becomes one agent call on guest paths.

Runs under trio (pyfuse3's loop); every agent call runs in a worker thread, so
the loop keeps taking requests while the appliance answers (one at a time: the
appliance serialises its calls).  What keeps it fast:

- a directory is listed with every entry's attributes in one call, and handed
  to the kernel as readdirplus, so ``ls -l`` and ``find`` cost one call per
  directory, not one per entry;
- on a read-only mount nothing can change under the kernel, so it may keep
  attributes, entries and pages for as long as it likes (long timeouts,
  ``keep_cache``); a read-write mount changes only through this filesystem;
- reads of a file are served from a per-handle read-ahead buffer that grows
  while the reads are sequential (up to :data:`READAHEAD_MAX`), so ``cat`` of a
  large file streams in few calls.

Errors: a guest's errno comes back as it is; an appliance that died, a
broken channel or a timeout is ``EIO`` (never a hang); ``mknod`` (devices,
FIFOs, sockets) is refused with ``EPERM``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyfuse3
import trio

from ..appliance import Appliance
from ..errors import AgentError, GuestOSError, GuestslotsError
from ..guest.fs import Attrs
from .inodes import InodeTable, StaleInode

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Kernel cache lifetimes (seconds): read-only mounts never change.
RO_TIMEOUT = 3600.0
RW_TIMEOUT = 1.0
READAHEAD_MIN = 256 * 1024
READAHEAD_MAX = 8 * 1024 * 1024


@dataclass
class Handle:
    """An open file: its path, and the read-ahead buffer (the kernel sends several
    reads of one file at once: they take turns, so that the later ones find what the
    first one fetched)."""

    path: str
    writable: bool
    buf: bytes = b""
    buf_off: int = 0
    window: int = READAHEAD_MIN
    lock: trio.Lock = field(default_factory=trio.Lock)


@dataclass
class DirHandle:
    path: str
    entries: list[tuple[str, Attrs]] = field(default_factory=list)


class GuestFs(pyfuse3.Operations):
    """The mounted guest filesystem of *app*, read-only unless *writable*."""

    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, app: Appliance, writable: bool) -> None:
        super().__init__()
        self.app = app
        self.writable = writable
        self.timeout = RW_TIMEOUT if writable else RO_TIMEOUT
        self.inodes = InodeTable()
        self._handles: dict[int, Handle | DirHandle] = {}
        self._next_fh = 1

    # ---- plumbing

    async def _guest(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an agent call in a worker thread; its failure as a FUSE errno."""
        try:
            return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except GuestOSError as e:
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        except (AgentError, GuestslotsError) as e:
            log.error("%s", e)
            raise pyfuse3.FUSEError(errno.EIO) from None

    def _path(self, inode: int) -> str:
        try:
            path = self.inodes.path(inode)
        except StaleInode:
            raise pyfuse3.FUSEError(errno.ESTALE) from None
        if not path:  # unlinked while the kernel still holds it
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path

    def _child(self, parent: int, name: bytes) -> str:
        try:
            return self.inodes.child(parent, os.fsdecode(name))
        except StaleInode:
            raise pyfuse3.FUSEError(errno.ESTALE) from None
        except ValueError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None

    def _entry(self, inode: int, a: Attrs) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = inode
        e.generation = 0
        e.entry_timeout = self.timeout
        e.attr_timeout = self.timeout
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        e.st_size = a.size
        e.st_blksize = 4096
        e.st_blocks = a.blocks
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = a.mtime_ns
        e.st_ctime_ns = a.ctime_ns
        return e

    def _new_fh(self, handle: Handle | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _file(self, fh: int) -> Handle:
        handle = self._handles.get(fh)
        if not isinstance(handle, Handle):
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle

    def _writes(self) -> None:
        if not self.writable:
            raise pyfuse3.FUSEError(errno.EROFS)

    def _forget_buffers(self, path: str) -> None:
        for handle in self._handles.values():
            if isinstance(handle, Handle) and handle.path == path:
                handle.buf = b""

    # ---- names and attributes

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        a = await self._guest(self.app.fs_lstat, path)
        return self._entry(self.inodes.looked_up(path), a)

    async def forget(self, inode_list: Any) -> None:
        for inode, count in inode_list:
            self.inodes.forget(inode, count)

    async def getattr(self, inode: int,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(inode, await self._guest(self.app.fs_lstat, self._path(inode)))

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._writes()
        path = self._path(inode)
        if fields.update_size:
            self._forget_buffers(path)
        a = await self._guest(
            self.app.fs_setattr, path,
            mode=stat.S_IMODE(attr.st_mode) if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else -1,
            gid=attr.st_gid if fields.update_gid else -1,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None)
        return self._entry(inode, a)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(await self._guest(self.app.readlink, self._path(inode)))

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = await self._guest(self.app.statvfs, "/")
        out = pyfuse3.StatvfsData()
        out.f_bsize = st["bsize"]
        out.f_frsize = st["frsize"]
        out.f_blocks = st["blocks"]
        out.f_bfree = st["bfree"]
        out.f_bavail = st["bavail"]
        out.f_files = st["files"]
        out.f_ffree = st["ffree"]
        out.f_favail = st["favail"]
        out.f_namemax = st["namemax"]
        return out

    # ---- directories

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        path = self._path(inode)
        entries = await self._guest(self.app.fs_readdir, path)
        entries.sort()
        return self._new_fh(DirHandle(path, entries))

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise pyfuse3.FUSEError(errno.EBADF)
        for i in range(start_id, len(handle.entries)):
            name, a = handle.entries[i]
            path = handle.path.rstrip("/") + "/" + name
            inode = self.inodes.looked_up(path)  # a readdirplus entry is a lookup
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(inode, a), i + 1):
                self.inodes.forget(inode, 1)  # not handed to the kernel after all
                return

    async def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._writes()
        path = self._child(parent_inode, name)
        a = await self._guest(self.app.fs_mkdir, path, stat.S_IMODE(mode))
        return self._entry(self.inodes.looked_up(path), a)

    async def rmdir(self, parent_inode: int, name: bytes,
                    ctx: pyfuse3.RequestContext) -> None:
        self._writes()
        path = self._child(parent_inode, name)
        await self._guest(self.app.rmdir, path)
        self.inodes.removed(path)

    # ---- files

    async def open(self, inode: int, flags: int,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable:
            self._writes()
        path = self._path(inode)
        if flags & os.O_TRUNC:
            await self._guest(self.app.fs_setattr, path, size=0)
        fh = self._new_fh(Handle(path, writable))
        return pyfuse3.FileInfo(fh=fh, keep_cache=not self.writable)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self._writes()
        if not stat.S_ISREG(mode):
            raise pyfuse3.FUSEError(errno.EPERM)
        path = self._child(parent_inode, name)
        a = await self._guest(self.app.fs_create, path, stat.S_IMODE(mode))
        fh = self._new_fh(Handle(path, True))
        return pyfuse3.FileInfo(fh=fh), self._entry(self.inodes.looked_up(path), a)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self._file(fh)
        async with h.lock:
            end = h.buf_off + len(h.buf)
            if not (h.buf_off <= off and off + size <= end):
                # reading on from the end of what was fetched: fetch more each time
                sequential = bool(h.buf) and h.buf_off <= off <= end + READAHEAD_MIN
                h.window = min(h.window * 2, READAHEAD_MAX) if sequential else READAHEAD_MIN
                h.buf = await self._guest(self.app.pread, h.path, max(size, h.window), off)
                h.buf_off = off
            start = off - h.buf_off
            return h.buf[start:start + size]

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self._file(fh)
        if not h.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        self._forget_buffers(h.path)
        return await self._guest(self.app.pwrite, h.path, buf, off)

    async def flush(self, fh: int) -> None:
        return None

    async def fsync(self, fh: int, datasync: bool) -> None:
        h = self._file(fh)
        if h.writable:
            await self._guest(self.app.fs_fsync, h.path)

    async def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    async def unlink(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> None:
        self._writes()
        path = self._child(parent_inode, name)
        await self._guest(self.app.fs_unlink, path)
        self.inodes.removed(path)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        self._writes()
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        await self._guest(self.app.fs_rename, old, new,
                          noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE))
        self.inodes.renamed(old, new)

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._writes()
        path = self._child(parent_inode, name)
        a = await self._guest(self.app.fs_symlink, os.fsdecode(target), path)
        return self._entry(self.inodes.looked_up(path), a)

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._writes()
        path = self._child(new_parent_inode, new_name)
        a = await self._guest(self.app.fs_link, self._path(inode), path)
        return self._entry(self.inodes.looked_up(path), a)

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)  # no device nodes, FIFOs or sockets

    # ---- extended attributes

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        try:
            return await self._guest(self.app.fs_getxattr, self._path(inode), os.fsdecode(name))
        except pyfuse3.FUSEError as e:
            if e.errno == errno.ENODATA:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR) from None
            raise

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        names = await self._guest(self.app.fs_listxattr, self._path(inode))
        return [os.fsencode(n) for n in names]

    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        self._writes()
        await self._guest(self.app.fs_setxattr, self._path(inode), os.fsdecode(name), value)

    async def removexattr(self, inode: int, name: bytes,
                          ctx: pyfuse3.RequestContext) -> None:
        self._writes()
        await self._guest(self.app.fs_removexattr, self._path(inode), os.fsdecode(name))
