"""Installed rpm packages of the mounted guest, read with librpm (python3-rpm) as
libguestfs reads them: every header of the package database, its NAME, EPOCH,
VERSION, RELEASE, ARCH, URL, SUMMARY and DESCRIPTION.

The database is a guest's file: its regular files are copied (bounded) out of the
guest root into a private directory, and librpm reads that copy in a forked child
(as libguestfs forks, librpm keeping global state and files open), so nothing the
guest names is opened by librpm, and a database that crashes or hangs librpm costs
that child only.  The answer streams as JSON lines (a large database's answer does
not fit one message).
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import stat
import tempfile

from .channel import Channel
from .common import TOOL_TIMEOUT, Fail

#: Where rpm keeps its database (Fedora 36 on: /usr/lib/sysimage/rpm, with
#: /var/lib/rpm a symlink to it), in the order they are tried.
RPMDB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
#: The files of rpm's database backends: sqlite, Berkeley DB (read-only), ndb.
RPMDB_FILES = ("rpmdb.sqlite", "rpmdb.sqlite-wal", "rpmdb.sqlite-shm", "Packages",
               "Packages.db", "Index.db")
#: The most of a database copied (a hostile guest's may be any size).
MAX_RPMDB_BYTES = 256 * 1024 * 1024
_MAIN_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")
_TAGS = ("NAME", "VERSION", "RELEASE", "ARCH", "URL", "SUMMARY", "DESCRIPTION")


def _copy_bounded(src: int, dst: int, left: int) -> int:
    """Copy *src* to *dst*; the bytes copied (Fail if more than *left*)."""
    copied = 0
    while chunk := os.read(src, 1 << 20):
        copied += len(chunk)
        if copied > left:
            raise Fail(f"the rpm database is larger than {MAX_RPMDB_BYTES} bytes", errno.EFBIG)
        os.write(dst, chunk)
    return copied


def _list_in_child(dbpath: str, out: int) -> None:
    """In the forked child: every package header as a JSON line on *out*."""
    import rpm  # type: ignore[import-not-found]  # python3-rpm, in the appliance

    rpm.addMacro("_dbpath", dbpath)
    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES)
    with os.fdopen(out, "w", encoding="utf-8", errors="replace") as f:
        for header in ts.dbMatch():
            fields = {tag.lower(): header.format(f"%{{{tag}}}") for tag in _TAGS}
            fields["epoch"] = int(header[rpm.RPMTAG_EPOCH] or 0)
            f.write(json.dumps(fields) + "\n")


class RpmCalls(Channel):
    """The rpm package database."""

    def _copy_rpmdb(self, work: str) -> str:
        """Copy the guest's rpm database files into *work*; the guest directory."""
        wfd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with self.root.inside():
                for where in RPMDB_DIRS:
                    try:
                        dfd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    except OSError:
                        continue
                    try:
                        total, copied = 0, []
                        for name in (n for n in os.listdir(dfd) if n in RPMDB_FILES):
                            size = self._copy_one(dfd, wfd, name, MAX_RPMDB_BYTES - total)
                            if size is not None:
                                total += size
                                copied.append(name)
                        if any(n in _MAIN_FILES for n in copied):
                            return where
                        for name in copied:  # only a stray -wal or -shm: not a database
                            os.unlink(name, dir_fd=wfd)
                    finally:
                        os.close(dfd)
        finally:
            os.close(wfd)
        raise Fail(f"no rpm database in {' or '.join(RPMDB_DIRS)}", errno.ENOENT)

    @staticmethod
    def _copy_one(dfd: int, wfd: int, name: str, left: int) -> int | None:
        """Copy regular file *name* (never a symlink, FIFO or device); its size, or
        None if it is not one."""
        try:
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=dfd)
        except OSError:
            return None  # a symlink or something unreadable: not part of the copy
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                return None
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                          dir_fd=wfd)
            try:
                return _copy_bounded(src, dst, left)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def call_rpm_applications(self) -> int:
        """Stream the packages of the guest's rpm database (JSON lines)."""
        work = tempfile.mkdtemp(prefix="rpmdb-", dir="/tmp")
        try:
            where = self._copy_rpmdb(work)
            out = os.open(work, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o600)
            self._list_forked(work, out, where)
            return self.send_file(out)  # closes it
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _list_forked(work: str, out: int, where: str) -> None:
        """Fill *out* from a child that runs librpm; Fail if it fails or hangs."""
        said_r, said_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: librpm, then _exit (never back into the agent)
            code = 0
            try:
                os.close(said_r)
                _list_in_child(work, os.dup(out))
            except BaseException as e:
                os.write(said_w, f"{type(e).__name__}: {e}"[:2000].encode())
                code = 1
            os._exit(code)
        os.close(said_w)
        try:
            poller = select.poll()
            poller.register(said_r, select.POLLIN | select.POLLHUP)
            said = b""
            while True:
                if not poller.poll(TOOL_TIMEOUT * 1000):
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    os.close(out)
                    raise Fail(f"reading the rpm database in {where}: no answer in "
                               f"{TOOL_TIMEOUT} s", errno.ETIMEDOUT)
                chunk = os.read(said_r, 4096)
                if not chunk:
                    break
                said += chunk
        finally:
            os.close(said_r)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            os.close(out)
            why = said.decode(errors="replace") or f"librpm ended with status {status:#x}"
            raise Fail(f"reading the rpm database in {where}: {why}", errno.EIO)
