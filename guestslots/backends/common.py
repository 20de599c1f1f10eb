"""What both backends do alike: connecting to the agent channel QEMU listens on, and
the tail of a log for an error report."""

from __future__ import annotations

import socket
from pathlib import Path


def connect_agent(path: str, timeout: float) -> socket.socket:
    """A connection to the agent socket at *path*, which QEMU listens on and serves one
    client at a time; OSError when nothing answers there within *timeout*."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def log_tail(path: Path, lines: int = 25) -> str:
    """The last *lines* lines of log *path* ("" when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
