"""Searching the mounted guest filesystem: find, glob, grep, head, tail, du.

By syscalls and the standard library, inside the guest root (chroot): no
``find`` or ``grep`` process per call, and nothing a guest symlink says leaves
the guest filesystem.  Only regular files are read (a guest FIFO or device node
never is).  Results are bounded: a call that would return more than
:data:`MAX_RESULTS` entries fails rather than exhaust the appliance.
"""

from __future__ import annotations

import errno
import glob
import gzip
import io
import os
import re
import stat

from .common import Fail, check_path, open_regular_here
from .state import AgentBase

#: The most names or lines a call returns.
MAX_RESULTS = 1_000_000
#: The largest file (or decompressed file) grep, head and tail read.
MAX_READ = 1 << 28
#: The largest file hexdump dumps (its text is about 4.3 times as large).
MAX_HEXDUMP = 1 << 22
_BRE_SPECIAL = "+?|(){}"


def bre_to_python(pattern: str) -> str:
    """A POSIX basic regular expression (grep's default) as a Python one: in a BRE
    ``+ ? | ( ) { }`` are literal and their backslashed forms are the operators (GNU)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(nxt if nxt in _BRE_SPECIAL else c + nxt)
            i += 2
            continue
        out.append("\\" + c if c in _BRE_SPECIAL else c)
        i += 1
    return "".join(out)


def _read(path: str) -> bytes:
    """Regular file *path* (already inside the guest root), whole."""
    fd = open_regular_here(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size > MAX_READ:
            raise Fail(f"{path}: larger than {MAX_READ} bytes", errno.EFBIG)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_READ)
    finally:
        os.close(fd)


def _lines(data: bytes, path: str) -> list[bytes]:
    """The lines of *data*, without their newlines (a last line without one counts)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) > MAX_RESULTS:
        raise Fail(f"{path}: more than {MAX_RESULTS} lines", errno.EFBIG)
    return lines


def _text(lines: list[bytes]) -> list[str]:
    return [line.decode("utf-8", "surrogateescape") for line in lines]


class TreeCalls(AgentBase):
    """find, glob_expand, grep, head, tail and du, inside the guest root."""

    def call_find(self, directory: str) -> list[str]:
        """Every name below *directory*, relative to it, sorted (``find DIR`` less
        the directory itself); symlinks are listed, not followed."""
        with self.root.inside():
            top = check_path(directory)
            if not os.path.isdir(top) or os.path.islink(top):
                raise Fail(f"{directory}: not a directory", errno.ENOTDIR)
            found: list[str] = []

            def fail(e: OSError) -> None:
                raise e

            for parent, dirs, names in os.walk(top, onerror=fail):
                rel = os.path.relpath(parent, top)
                for name in dirs + names:
                    found.append(name if rel == "." else f"{rel}/{name}")
                if len(found) > MAX_RESULTS:
                    raise Fail(f"{directory}: more than {MAX_RESULTS} names", errno.EFBIG)
        # as libguestfs cuts find's output at the length of the name given: "/etc" gives
        # "/hostname", "/etc/" and "/" give "hostname"
        lead = "" if directory.endswith("/") else "/"
        return sorted(lead + name for name in found)

    def call_find0(self, directory: str) -> list[str]:
        """As :meth:`call_find`, in find's own order (depth first, directory order),
        not sorted: what libguestfs's find0 writes."""
        with self.root.inside():
            top = check_path(directory)
            if not os.path.isdir(top) or os.path.islink(top):
                raise Fail(f"{directory}: not a directory", errno.ENOTDIR)
            lead = "" if directory.endswith("/") else "/"
            found: list[str] = []

            def walk(path: str, rel: str) -> None:
                for name in os.listdir(path):  # readdir order, as find's
                    found.append(lead + rel + name)
                    if len(found) > MAX_RESULTS:
                        raise Fail(f"{directory}: more than {MAX_RESULTS} names", errno.EFBIG)
                    child = os.path.join(path, name)
                    if os.path.isdir(child) and not os.path.islink(child):
                        walk(child, rel + name + "/")

            walk(top, "")
        return found

    def call_hexdump(self, path: str) -> str:
        """``hexdump -C`` of regular file *path* (identical lines squeezed to ``*``)."""
        with self.root.inside():
            data = _read(check_path(path))
        if len(data) > MAX_HEXDUMP:
            raise Fail(f"{path}: larger than {MAX_HEXDUMP} bytes to dump", errno.EFBIG)
        return hexdump(data)

    def call_glob_expand(self, pattern: str, directoryslash: bool = True) -> list[str]:
        """The paths matching shell *pattern* (``*``, ``?``, ``[...]``, ``{a,b}``),
        directories with a trailing ``/`` (glob(3)'s GLOB_MARK); sorted within each
        brace alternative, alternatives in their order, as glob(3) gives them."""
        check_path(pattern)
        with self.root.inside():
            found: list[str] = []
            for expanded in _braces(pattern):  # glob(3): each alternative's matches sorted
                for path in sorted(glob.glob(expanded)):
                    if directoryslash and os.path.isdir(path) and not path.endswith("/"):
                        path += "/"
                    found.append(path)
        return found

    def call_grep(self, regex: str, path: str, extended: bool = False, fixed: bool = False,
                  insensitive: bool = False, compressed: bool = False) -> list[str]:
        """The lines of *path* that match *regex*: a basic regular expression, or
        extended, or a fixed string; *compressed* reads a gzip file (zgrep)."""
        if extended and fixed:
            raise Fail("extended and fixed cannot both be set", errno.EINVAL)
        pattern = re.escape(regex) if fixed else regex if extended else bre_to_python(regex)
        try:
            compiled = re.compile(pattern.encode("utf-8", "surrogateescape"),
                                  re.IGNORECASE if insensitive else 0)
        except re.error as e:
            raise Fail(f"regular expression {regex!r}: {e}", errno.EINVAL) from None
        with self.root.inside():
            data = _read(check_path(path))
        if compressed and data.startswith(b"\x1f\x8b"):  # zgrep reads plain files too
            try:
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as z:
                    data = z.read(MAX_READ + 1)
                if len(data) > MAX_READ:
                    raise Fail(f"{path}: decompresses to more than {MAX_READ} bytes",
                               errno.EFBIG)
            except (OSError, EOFError) as e:
                raise Fail(f"{path}: {e}", errno.EIO) from None
        lines = _lines(data, path)
        return _text([line for line in lines if compiled.search(line)])

    def call_head_n(self, nrlines: int, path: str) -> list[str]:
        """The first *nrlines* lines (negative: all but the last -*nrlines*)."""
        with self.root.inside():
            lines = _lines(_read(check_path(path)), path)
        n = int(nrlines)
        return _text(lines[:n] if n >= 0 else lines[:max(len(lines) + n, 0)])

    def call_tail_n(self, nrlines: int, path: str) -> list[str]:
        """The last *nrlines* lines (negative: from line -*nrlines* on, 1-based)."""
        with self.root.inside():
            lines = _lines(_read(check_path(path)), path)
        n = int(nrlines)
        if n == 0:
            return []
        return _text(lines[-n:] if n > 0 else lines[-n - 1:])

    def call_du(self, path: str) -> int:
        """Disk usage of *path* (recursively for a directory) in KiB, as ``du -s``:
        allocated blocks, each inode counted once (hard links)."""
        with self.root.inside():
            top = check_path(path)
            seen: set[tuple[int, int]] = set()
            total = 0

            def count(p: str) -> None:
                nonlocal total
                st = os.lstat(p)
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) in seen:
                        return
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512

            count(top)
            if os.path.isdir(top) and not os.path.islink(top):
                for parent, dirs, names in os.walk(top):
                    for name in dirs + names:
                        count(os.path.join(parent, name))
        return (total + 1023) // 1024


def _braces(pattern: str) -> list[str]:
    """Brace expansion (GLOB_BRACE): ``/etc/{a,b}*`` -> ``/etc/a*``, ``/etc/b*``."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if not m:
        return [pattern]
    out = []
    for part in m.group(1).split(","):
        out += _braces(pattern[:m.start()] + part + pattern[m.end():])
    return out


def hexdump(data: bytes) -> str:
    """``hexdump -C``'s text for *data*."""
    lines = []
    previous = None
    squeezed = False
    for offset in range(0, len(data), 16):
        row = data[offset:offset + 16]
        if row == previous and len(row) == 16:
            if not squeezed:
                lines.append("*")
                squeezed = True
            continue
        previous, squeezed = row, False
        cells = [f"{b:02x} " for b in row] + ["   "] * (16 - len(row))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08x}  {''.join(cells[:8])} {''.join(cells[8:])} |{text}|")
    if data:
        lines.append(f"{len(data):08x}")
    return "".join(line + "\n" for line in lines)
