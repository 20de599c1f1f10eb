"""Where guestslots caches what it builds and measures, and how it names host files.

Built appliances, saved states and the accelerator verdict live under one
per-user directory: ``$GUESTSLOTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/guestslots``,
else ``~/.cache/guestslots``.
"""

from __future__ import annotations

import os
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
