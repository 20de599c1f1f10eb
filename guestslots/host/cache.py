"""Where guestslots caches what it builds and measures, and how it names host files.

Built appliances, saved states and the accelerator verdict live under one
per-user directory: ``$GUESTSLOTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/guestslots``,
else ``~/.cache/guestslots``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path


def cache_root() -> Path:
    """Where built appliances, saved states and the accelerator verdict are cached."""
    env = os.environ.get("GUESTSLOTS_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "guestslots"


def file_id(path: str | os.PathLike[str]) -> str:
    """A host file's identity for cache keys: real path, size and modification time
    (a rebuilt or upgraded binary gets a new one without being read)."""
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


#: How long an appliance or saved state no launch used is kept after another build.
UNUSED_KEPT = 24 * 3600.0


def mark_used(entry: Path) -> None:
    """Note that a launch used cache entry *entry* (an appliance or saved state
    directory) now: its modification time (see :func:`stale`)."""
    with contextlib.suppress(OSError):
        os.utime(entry)


def last_used(entry: Path) -> float:
    """When a launch last used cache entry *entry* (0 if it is gone)."""
    try:
        return os.stat(entry).st_mtime
    except OSError:
        return 0.0


def stale(entries: Iterable[tuple[Path, float]], keep: Path, now: float,
          unused_for: float = UNUSED_KEPT) -> list[Path]:
    """The cache entries (path, last use) to remove after *keep* was built: those no
    launch used for *unused_for* seconds."""
    return [path for path, used in entries if path != keep and now - used > unused_for]
