"""``qemu-nbd`` serving a test image, on a Unix socket or on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket as sockets
import subprocess
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with sockets.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(image: Path, workdir: Path, *, fmt: str = "raw", export: str = "disk",
            tcp: bool = False, readonly: bool = True,
            tls: Path | None = None) -> Iterator[str]:
    """Serve *image* (as *fmt*: the export is what a guest of it sees) with
    ``qemu-nbd``, as export *export*, until the block ends; yields the source URL
    (``nbd+unix:///EXPORT?socket=...``, or with *tcp* ``nbd://127.0.0.1:PORT/EXPORT``).
    With *tls* (a server certificate directory, see :func:`.certs.x509_dirs`), TLS
    is required and the URL is ``nbds`` (its ``tls-certificates`` is for the caller
    to add).  ``--fork`` returns once the server listens: nothing is polled."""
    pidfile = workdir / f"qemu-nbd-{export}.pid"
    args = ["qemu-nbd", "--fork", "--persistent", "--pid-file", str(pidfile), "-f", fmt,
            "-x", export, "--shared", "8"]
    if readonly:
        args.append("--read-only")
    if tls is not None:
        args += ["--object", f"tls-creds-x509,id=tls0,endpoint=server,dir={tls},"
                 "verify-peer=off", "--tls-creds", "tls0"]
    if tcp:
        port = free_port()
        args += ["--bind", "127.0.0.1", "--port", str(port)]
        url = f"{'nbds' if tls else 'nbd'}://127.0.0.1:{port}/{export}"
    else:
        sock = workdir / f"nbd-{export}.sock"
        args += ["--socket", str(sock)]
        url = f"{'nbds' if tls else 'nbd'}+unix:///{export}?socket={sock}"
    subprocess.run([*args, str(image)], check=True, capture_output=True, timeout=30)
    pid = int(pidfile.read_text())
    try:
        yield url
    finally:
        stop(pid)


def stop(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the (forked, so not our child) server *pid* and wait until it is gone
    (its pidfd becomes readable when it exits)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not select.select([fd], [], [], timeout)[0]:
            raise RuntimeError(f"qemu-nbd (pid {pid}) still runs {timeout:g} s after SIGTERM")
    finally:
        os.close(fd)
