"""File calls, with the mounted guest filesystem as root (the host's ``guest/files``
pairs with this): guest symlinks cannot leave it, and calls that move a file's bytes
take regular files only."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

# imported here, not lazily inside the guest root (chroot), where the stdlib is not
from concurrent.futures import ThreadPoolExecutor

from .channel import (
    Channel,
)
from .common import (
    Fail,
    check_path,
    open_regular_here,
)


def _check_csumtype(csumtype: str) -> None:
    if csumtype not in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
        raise Fail(f"unknown checksum type {csumtype!r}", errno.EINVAL)


def _digest(csumtype: str, fd: int) -> str:
    """Hex digest of open file *fd* (closed here)."""
    h = hashlib.new(csumtype)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


#: ``find -printf %y``'s letters.
_TYPE_LETTERS = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFBLK: "b",
                 stat.S_IFCHR: "c", stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


def _raise(error: OSError) -> None:
    raise error


class FileCalls(Channel):
    """File calls inside the mounted guest filesystem."""

    def call_ls(self, path: str) -> list[str]:
        with self.root.inside():
            return sorted(os.listdir(check_path(path)))

    def call_stat(self, path: str, follow: bool = True) -> dict[str, int]:
        with self.root.inside():
            st = os.stat(check_path(path), follow_symlinks=follow)
        return {
            "mode": st.st_mode,
            "ino": st.st_ino,
            "dev": st.st_dev,
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "size": st.st_size,
            "atime": st.st_atime_ns,
            "mtime": st.st_mtime_ns,
            "ctime": st.st_ctime_ns,
        }

    def call_exists(self, path: str) -> bool:
        with self.root.inside():
            return os.path.lexists(check_path(path))

    def call_is_file(self, path: str, follow: bool = False) -> bool:
        with self.root.inside():
            try:
                st = os.stat(check_path(path), follow_symlinks=follow)
            except (FileNotFoundError, NotADirectoryError):
                return False
            except OSError as e:
                if e.errno != errno.ELOOP:  # a guest's symlink loop is no file
                    raise
                return False
        return stat.S_ISREG(st.st_mode)

    def call_is_dir(self, path: str, follow: bool = False) -> bool:
        with self.root.inside():
            try:
                st = os.stat(check_path(path), follow_symlinks=follow)
            except (FileNotFoundError, NotADirectoryError):
                return False
            except OSError as e:
                if e.errno != errno.ELOOP:  # a guest's symlink loop is no file
                    raise
                return False
        return stat.S_ISDIR(st.st_mode)

    def call_file_types(self, paths: list[str], follow: bool = False) -> list[str]:
        """The type of each of *paths*, one letter each as ``find -printf %y`` prints
        it (``f``, ``d``, ``l``, ``b``, ``c``, ``p``, ``s``; ``""``: absent, or a
        symlink loop): :meth:`call_is_file` for many paths in one round trip
        (inspection asks about a dozen per filesystem)."""
        if not isinstance(paths, list) or len(paths) > 4096:
            raise Fail("paths: a list of at most 4096 paths", errno.EINVAL)
        types = []
        with self.root.inside():
            for path in paths:
                try:
                    mode = os.stat(check_path(path), follow_symlinks=bool(follow)).st_mode
                except (FileNotFoundError, NotADirectoryError):
                    types.append("")
                    continue
                except OSError as e:
                    if e.errno != errno.ELOOP:  # a guest's symlink loop is no file
                        raise
                    types.append("")
                    continue
                types.append(_TYPE_LETTERS.get(stat.S_IFMT(mode), "?"))
        return types

    def call_case_sensitive_path(self, path: str) -> str:
        """*path* as the guest filesystem spells it: each component matched without
        regard to case (an exact match first); components from the first one not
        found on are kept as given."""
        parts = [p for p in check_path(path).split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise Fail(f"{path}: '.' and '..' are not allowed here", errno.EINVAL)
        found = ""
        with self.root.inside():
            for n, part in enumerate(parts):
                try:
                    names = os.listdir(found or "/")
                except OSError:
                    return "/".join([found, *parts[n:]])
                if part not in names:
                    low = part.casefold()
                    part = next((name for name in sorted(names) if name.casefold() == low),
                                part)
                found = f"{found}/{part}"
        return found or "/"

    def call_readlink(self, path: str) -> str:
        with self.root.inside():
            return os.readlink(check_path(path))

    def call_realpath(self, path: str) -> str:
        """*path* with every symlink, ``.`` and ``..`` resolved, within the guest
        filesystem (its root is ``/``); it must exist."""
        with self.root.inside():
            return os.path.realpath(check_path(path), strict=True)

    def call_mkdir(self, path: str, parents: bool = False, mode: int = 0o755) -> None:
        with self.root.inside():
            if parents:
                os.makedirs(check_path(path), mode, exist_ok=True)
            else:
                os.mkdir(check_path(path), mode)

    def call_rm(self, path: str) -> None:
        with self.root.inside():
            os.unlink(check_path(path))

    def call_rmdir(self, path: str) -> None:
        with self.root.inside():
            os.rmdir(check_path(path))

    def call_download(self, path: str) -> int:
        fd = self.root.open_regular(path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        self.send_file(fd)
        return size

    def call_upload(self, path: str, mode: int = 0o644) -> int:
        return self.receive_into(lambda: self.root.open_regular(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))

    def call_pread(self, path: str, count: int, offset: int) -> int:
        """Stream up to *count* bytes of regular file *path* from byte *offset*."""
        count, offset = int(count), int(offset)
        if count < 0 or offset < 0:
            raise Fail("count and offset must not be negative", errno.EINVAL)
        return self.send_file(self.root.open_regular(path, os.O_RDONLY), offset, count)

    def call_pwrite(self, path: str, offset: int) -> int:
        """Write the streamed bytes into existing regular file *path* from byte *offset*
        (no truncation); return how many were written."""
        def open_at() -> int:
            if int(offset) < 0:
                raise Fail("offset must not be negative", errno.EINVAL)
            fd = self.root.open_regular(path, os.O_WRONLY)
            os.lseek(fd, int(offset), os.SEEK_SET)
            return fd

        return self.receive_into(open_at)

    def call_checksum(self, csumtype: str, path: str) -> str:
        _check_csumtype(csumtype)
        return _digest(csumtype, self.root.open_regular(path, os.O_RDONLY))

    def call_checksums_out(self, csumtype: str, directory: str) -> list[list[str]]:
        """[digest, path relative to *directory*] of every regular file under it
        (symlinks not followed), sorted by path.  The files are hashed by one thread
        per online CPU: reading and hashing release the GIL, so the appliance's vCPUs
        work in parallel (QEMU runs one host thread per vCPU, under TCG too)."""
        _check_csumtype(csumtype)
        with self.root.inside():
            top = check_path(directory)
            if not os.path.isdir(top):
                raise Fail(f"{directory}: not a directory", errno.ENOTDIR)
            files = []
            for parent, dirs, names in os.walk(top, onerror=_raise):
                dirs.sort()
                for name in names:
                    path = os.path.join(parent, name)
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        files.append(path)
            files.sort()

            def one(path: str) -> str:
                return _digest(csumtype, open_regular_here(path, os.O_RDONLY | os.O_NOFOLLOW))

            workers = max(1, len(os.sched_getaffinity(0)))
            with ThreadPoolExecutor(workers) as pool:
                digests = list(pool.map(one, files))
        return [[digest, "./" + os.path.relpath(path, top)]
                for digest, path in zip(digests, files, strict=True)]

    def call_statvfs(self, path: str) -> dict[str, int]:
        with self.root.inside():
            st = os.statvfs(check_path(path))
        return {
            "bsize": st.f_bsize,
            "frsize": st.f_frsize,
            "blocks": st.f_blocks,
            "bfree": st.f_bfree,
            "bavail": st.f_bavail,
            "files": st.f_files,
            "ffree": st.f_ffree,
            "favail": st.f_favail,
            "fsid": st.f_fsid,
            "flag": st.f_flag,
            "namemax": st.f_namemax,
        }

    def call_sync(self) -> None:
        os.sync()
