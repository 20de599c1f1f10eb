"""Guest calls about files: paths are resolved inside the mounted guest filesystem.

Paired with the agent's ``files`` area.  Calls that move a file's bytes read or
write regular files only (never a guest's device node or FIFO).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from .base import GuestCalls, HostFile, Progress, host_file, serialised


class FileCalls(GuestCalls):
    """Listing, reading, writing and transferring files of the mounted guest filesystem."""

    def _path_or_dev(self, path: str) -> str:
        """A ``/dev/...`` path is a device (the kernel's name for it); others are files."""
        return self._dev(path) if path.startswith("/dev/") else path

    @serialised
    def ls(self, directory: str) -> list[str]:
        """Names in *directory* (sorted, without ``.`` and ``..``)."""
        return list(self._call("ls", path=directory))

    @serialised
    def stat(self, path: str) -> dict[str, int]:
        """stat(2) of *path* (symlinks followed): mode, size, uid, gid, times in ns..."""
        return dict(self._call("stat", path=path))

    @serialised
    def lstat(self, path: str) -> dict[str, int]:
        """lstat(2) of *path* (a symlink itself)."""
        return dict(self._call("stat", path=path, follow=False))

    @serialised
    def exists(self, path: str) -> bool:
        """Whether *path* exists (a dangling symlink exists)."""
        return bool(self._call("exists", path=path))

    @serialised
    def is_file(self, path: str, followsymlinks: bool = False) -> bool:
        """Whether *path* is a regular file."""
        return bool(self._call("is_file", path=path, follow=followsymlinks))

    @serialised
    def is_dir(self, path: str, followsymlinks: bool = False) -> bool:
        """Whether *path* is a directory."""
        return bool(self._call("is_dir", path=path, follow=followsymlinks))

    @serialised
    def file_types(self, paths: Sequence[str], followsymlinks: bool = False) -> list[str]:
        """The type of each of *paths* in one call, as ``find -printf %y`` prints it:
        ``f`` regular file, ``d`` directory, ``l`` symlink (without *followsymlinks*),
        ``b``, ``c``, ``p``, ``s``; an empty string where there is nothing (or a
        symlink loop).  :meth:`is_file` and :meth:`is_dir` for many paths at once."""
        return [str(t) for t in self._call("file_types", paths=[str(p) for p in paths],
                                           follow=followsymlinks)]

    @serialised
    def case_sensitive_path(self, path: str) -> str:
        """*path* as the guest spells it, each component matched regardless of case
        (for NTFS and FAT guests: ``/windows/system32`` -> ``/Windows/System32``);
        components from the first one not found on are kept as given."""
        return str(self._call("case_sensitive_path", path=path))

    @serialised
    def readlink(self, path: str) -> str:
        """The target of symbolic link *path*, as stored (not resolved)."""
        return str(self._call("readlink", path=path))

    @serialised
    def realpath(self, path: str) -> str:
        """*path* made canonical: symlinks, ``.`` and ``..`` resolved within the guest
        filesystem (an absolute link starts at its root).  It must exist."""
        return str(self._call("realpath", path=path))

    @serialised
    def mkdir(self, path: str) -> None:
        """Create directory *path*."""
        self._call("mkdir", path=path)

    @serialised
    def mkdir_p(self, path: str) -> None:
        """Create directory *path* and its parents; no error if it exists."""
        self._call("mkdir", path=path, parents=True)

    @serialised
    def rm(self, path: str) -> None:
        """Remove file *path*."""
        self._call("rm", path=path)

    @serialised
    def rmdir(self, path: str) -> None:
        """Remove empty directory *path*."""
        self._call("rmdir", path=path)

    @serialised
    def read_file(self, path: str) -> bytes:
        """The whole content of file *path*, as bytes."""
        buf = io.BytesIO()
        self.download(path, buf)
        return buf.getvalue()

    @serialised
    def cat(self, path: str) -> str:
        """The content of text file *path* (UTF-8; undecodable bytes replaced)."""
        return self.read_file(path).decode("utf-8", "replace")

    @serialised
    def write(self, path: str, content: bytes | str) -> None:
        """Create or replace file *path* with *content*."""
        data = content.encode() if isinstance(content, str) else content
        self.upload(io.BytesIO(data), path)

    @serialised
    def pread(self, path: str, count: int, offset: int) -> bytes:
        """Up to *count* bytes of file *path* from byte *offset* (fewer at its end)."""
        buf = io.BytesIO()
        with self._agent_for("pread") as agent:
            agent.download("pread", buf, path=path, count=int(count), offset=int(offset))
        return buf.getvalue()

    @serialised
    def pwrite(self, path: str, content: bytes | str, offset: int) -> int:
        """Write *content* into existing file *path* at byte *offset* (the file grows if
        needed, and is not truncated); return the number of bytes written."""
        data = content.encode() if isinstance(content, str) else content
        with self._agent_for("pwrite") as agent:
            return int(agent.upload("pwrite", io.BytesIO(data), path=path, offset=int(offset)))

    @serialised
    def download(self, remotefile: str, filename: HostFile, *,
                 progress: Progress | None = None) -> None:
        """Copy file *remotefile* from the appliance to host file *filename* (a path, or a
        binary file object open for writing).  A *remotefile* under ``/dev/`` is a
        device, as in libguestfs: a slot disk, a partition, an LV or md array, copied
        whole (``download /dev/sda1 part.img``).

        *progress*, if given, is called with the size of each chunk copied.  The
        transfer times out only if it stalls for the appliance's ``call_timeout``.
        """
        with host_file(filename, "wb") as sink, self._agent_for("download") as agent:
            agent.download("download", sink, progress=progress, path=self._path_or_dev(
                remotefile))

    @serialised
    def upload(self, filename: HostFile, remotefile: str, *,
               progress: Progress | None = None) -> None:
        """Copy host file *filename* (a path, or a binary file object open for reading)
        to *remotefile* in the appliance, replacing it.  A *remotefile* under
        ``/dev/`` is a device, as in libguestfs: the bytes go onto it from its start
        (a writable slot's, with nothing on it mounted or in use; more than it holds
        is an error).

        *progress*, if given, is called with the size of each chunk copied.
        """
        with host_file(filename, "rb") as source, self._agent_for("upload") as agent:
            agent.upload("upload", source, progress=progress, path=self._path_or_dev(
                remotefile))

    @serialised
    def checksum(self, csumtype: str, path: str) -> str:
        """Hex digest of file *path*: md5, sha1, sha224, sha256, sha384 or sha512."""
        return str(self._call("checksum", csumtype=csumtype, path=path))

    @serialised
    def checksums_out(self, csumtype: str, directory: str, sumsfile: HostFile) -> None:
        """Checksum every regular file under *directory* into host file *sumsfile*, as
        ``md5sum`` (or ``sha256sum``...) writes it: ``DIGEST  ./PATH`` per line, paths
        relative to *directory*, sorted; symlinks are not followed.  The appliance hashes
        with one thread per vCPU it has online (see :meth:`add_vcpu`)."""
        entries = self._call("checksums_out", csumtype=csumtype, directory=directory)
        with host_file(sumsfile, "wb") as f:
            for digest, path in entries:
                f.write(_sum_line(str(digest), str(path)))

    @serialised
    def statvfs(self, path: str) -> dict[str, int]:
        """statvfs(2) of the filesystem holding *path*."""
        return dict(self._call("statvfs", path=path))

    @serialised
    def sync(self) -> None:
        """Write every cached change to the disks."""
        self._call("sync")


def _sum_line(digest: str, path: str) -> bytes:
    """One line of ``md5sum``'s output: a name with a newline or backslash is escaped
    and the line starts with a backslash, as coreutils does."""
    name = path.encode("utf-8", "surrogateescape")
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + digest.encode() + b"  " + name + b"\n"
    return digest.encode() + b"  " + name + b"\n"
