"""Guest calls that search the mounted guest filesystem, with libguestfs's names and
meanings: find, glob-expand, grep and its variants, head, tail, du.

Paired with the agent's ``tree`` area (syscalls and the standard library inside the
guest root; no process per call).
"""

from __future__ import annotations

from .base import GuestCalls, HostFile, host_file, serialised


class TreeCalls(GuestCalls):
    """find, glob_expand, grep (egrep, fgrep, zgrep...), head, tail, du."""

    @serialised
    def find(self, directory: str) -> list[str]:
        """Every file and directory below *directory*, recursively, sorted, with
        *directory* cut off as libguestfs cuts it: ``find /tmp/`` (and ``find /``) gives
        ``a``, ``c``, ``c/d``, while ``find /tmp`` gives ``/a``, ``/c``, ``/c/d``.
        Symbolic links are listed, not followed."""
        return list(self._call("find", directory=directory))

    @serialised
    def find0(self, directory: str, files: HostFile) -> None:
        """Write every file and directory below *directory* to host file *files*,
        each followed by a NUL byte, in find's own order (not sorted); names cut as
        :meth:`find` cuts them."""
        names = self._call("find0", directory=directory)
        with host_file(files, "wb") as f:
            f.write(b"".join(str(n).encode("utf-8", "surrogateescape") + b"\0"
                             for n in names))

    @serialised
    def hexdump(self, path: str) -> str:
        """``hexdump -C`` of file *path* (up to 4 MiB)."""
        return str(self._call("hexdump", path=path))

    @serialised
    def glob_expand(self, pattern: str, directoryslash: bool = True) -> list[str]:
        """The paths matching shell wildcard *pattern* (``*``, ``?``, ``[...]``,
        ``{a,b}``), sorted (within each brace alternative, as glob(3)); directories end
        in ``/`` unless *directoryslash* is false.  No match is an empty list."""
        return list(self._call("glob_expand", pattern=pattern, directoryslash=directoryslash))

    @serialised
    def grep(self, regex: str, path: str, extended: bool = False, fixed: bool = False,
             insensitive: bool = False, compressed: bool = False) -> list[str]:
        """The lines of file *path* matching *regex*, a basic regular expression as
        grep(1) takes it; *extended*: an extended one (egrep), *fixed*: a fixed string
        (fgrep), *insensitive*: ignoring case (-i), *compressed*: a gzip file is
        decompressed first (zgrep).  Files up to 256 MiB."""
        return list(self._call("grep", regex=regex, path=path, extended=extended,
                               fixed=fixed, insensitive=insensitive, compressed=compressed))

    def egrep(self, regex: str, path: str) -> list[str]:
        """grep with an extended regular expression."""
        return self.grep(regex, path, extended=True)

    def fgrep(self, pattern: str, path: str) -> list[str]:
        """grep for a fixed string."""
        return self.grep(pattern, path, fixed=True)

    def grepi(self, regex: str, path: str) -> list[str]:
        """grep ignoring case."""
        return self.grep(regex, path, insensitive=True)

    def egrepi(self, regex: str, path: str) -> list[str]:
        """egrep ignoring case."""
        return self.grep(regex, path, extended=True, insensitive=True)

    def fgrepi(self, pattern: str, path: str) -> list[str]:
        """fgrep ignoring case."""
        return self.grep(pattern, path, fixed=True, insensitive=True)

    def zgrep(self, regex: str, path: str) -> list[str]:
        """grep in a file that may be gzip-compressed."""
        return self.grep(regex, path, compressed=True)

    def zegrep(self, regex: str, path: str) -> list[str]:
        """egrep in a file that may be gzip-compressed."""
        return self.grep(regex, path, extended=True, compressed=True)

    def zfgrep(self, pattern: str, path: str) -> list[str]:
        """fgrep in a file that may be gzip-compressed."""
        return self.grep(pattern, path, fixed=True, compressed=True)

    def zgrepi(self, regex: str, path: str) -> list[str]:
        """zgrep ignoring case."""
        return self.grep(regex, path, insensitive=True, compressed=True)

    def zegrepi(self, regex: str, path: str) -> list[str]:
        """zegrep ignoring case."""
        return self.grep(regex, path, extended=True, insensitive=True, compressed=True)

    def zfgrepi(self, pattern: str, path: str) -> list[str]:
        """zfgrep ignoring case."""
        return self.grep(pattern, path, fixed=True, insensitive=True, compressed=True)

    def head(self, path: str) -> list[str]:
        """The first 10 lines of file *path*."""
        return self.head_n(10, path)

    @serialised
    def head_n(self, nrlines: int, path: str) -> list[str]:
        """The first *nrlines* lines of file *path*; a negative *nrlines*: every line
        but the last -*nrlines*; zero: none."""
        return list(self._call("head_n", nrlines=nrlines, path=path))

    def tail(self, path: str) -> list[str]:
        """The last 10 lines of file *path*."""
        return self.tail_n(10, path)

    @serialised
    def tail_n(self, nrlines: int, path: str) -> list[str]:
        """The last *nrlines* lines of file *path*; a negative *nrlines*: the lines from
        line -*nrlines* on (``tail -n +N``); zero: none."""
        return list(self._call("tail_n", nrlines=nrlines, path=path))

    @serialised
    def du(self, path: str) -> int:
        """The disk space *path* uses, recursively for a directory, in KiB (``du -s``)."""
        return int(self._call("du", path=path))
