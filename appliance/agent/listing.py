"""What people type to look around: df, df -h, ll (``ls -la``) and file.

``df`` is computed here from statvfs of the guest mounts (no process), shown as
coreutils shows it, with the API's device names and the guest's mount points
(libguestfs's shows the appliance's own mounts too).  ``ll`` runs ``ls -la`` with
the guest directory, opened inside the guest root, as its working directory, and
``file`` runs ``file -zb`` on a regular file opened inside the guest root, given as
its standard input: neither can be led out of the guest by a symlink, nor reads a
device node or FIFO.
"""

from __future__ import annotations

import errno
import math
import os
import stat

from .common import TOOL_ENV, Fail, check_path, open_regular_here, run_tool
from .mountinfo import mountinfo
from .mounts import guest_mounts, real_mountpoint
from .state import AgentBase

LS = "/bin/ls"
FILE = "/usr/bin/file"

_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))


def human(n: int) -> str:
    """*n* bytes as ``df -h`` shows it: powers of 1024, rounded up, one decimal
    below 10."""
    if n < 1024:
        return str(n)
    value = float(n)
    for unit in "KMGTPEZY":
        value /= 1024
        if value < 1024 or unit == "Y":
            if value < 10:
                shown = math.ceil(value * 10) / 10
                if shown < 10:
                    return f"{shown:.1f}{unit}"
                value = shown
            return f"{math.ceil(value)}{unit}"
    raise AssertionError("unreachable")


def table(rows: list[list[str]]) -> str:
    """Rows as df lays them out: the first column left-aligned, the last as it is,
    the others right-aligned, each as wide as its widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1], strict=True)]
        cells.append(r[-1])
        out.append(" ".join(cells))
    return "\n".join(out) + "\n"


class ListingCalls(AgentBase):
    """df, ll and file."""

    def call_df(self, human_readable: bool = False) -> str:
        """Space on each mounted guest filesystem, as ``df`` (or ``df -h``) shows it."""
        fstypes = {real: fstype for real, _, _, fstype in mountinfo()}
        rows = [["Filesystem", "Size" if human_readable else "1K-blocks", "Used",
                 "Avail" if human_readable else "Available", "Use%", "Mounted on"]]
        for mp, source, _name in guest_mounts():
            real = real_mountpoint(mp)
            if fstypes.get(real) is None:
                continue
            st = os.statvfs(real)
            size = st.f_blocks * st.f_frsize
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            avail = st.f_bavail * st.f_frsize
            pct = "-" if used + avail == 0 else f"{math.ceil(used * 100 / (used + avail))}%"
            if human_readable:
                cells = [human(size), human(used), human(avail)]
            else:
                cells = [str(math.ceil(v / 1024)) for v in (size, used, avail)]
            rows.append([source, *cells, pct, mp])
        return table(rows)

    def call_ll(self, directory: str) -> str:
        """``ls -la`` of guest directory *directory*."""
        with self.root.inside():
            fd = os.open(check_path(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            proc = run_tool([LS, "-la"], f"ll {directory}", cwd=f"/proc/self/fd/{fd}",
                            pass_fds=(fd,), env={**TOOL_ENV, "TZ": "UTC"})
        finally:
            os.close(fd)
        if proc.returncode not in (0, 1):  # 1: some entry could not be read
            raise Fail(f"ll {directory}: {proc.stderr.strip()}", errno.EIO)
        return proc.stdout

    def call_file(self, path: str) -> str:
        """What kind of file *path* is: ``directory``, ``symbolic link``..., or for a
        regular file what ``file -zb`` says of its contents."""
        with self.root.inside():
            st = os.lstat(check_path(path))
            if not stat.S_ISREG(st.st_mode):
                return next((kind for test, kind in _KINDS if test(st.st_mode)),
                            "unknown, not regular file")
            fd = open_regular_here(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            proc = run_tool([FILE, "-zb", "-"], f"file {path}", stdin=fd)
        finally:
            os.close(fd)
        if proc.returncode != 0:
            raise Fail(f"file {path}: {proc.stderr.strip()}", errno.EIO)
        return proc.stdout.strip()

