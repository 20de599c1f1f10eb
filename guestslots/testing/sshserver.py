"""An ``sshd`` of the test's own on 127.0.0.1, and an ssh agent holding the key it
takes, for ssh:// slots.  Nothing of the host's SSH setup is read or changed: its
host key, the client's key, ``authorized_keys`` and configuration are the test's."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .nbdserver import free_port

SSHD = "/usr/sbin/sshd"


def unavailable() -> str | None:
    """Why no sshd can run here, or None."""
    if not os.path.exists(SSHD) or shutil.which("ssh-agent") is None:
        return "openssh-server and openssh-client are not installed (./tools/setup)"
    if os.geteuid() != 0:
        return "the test's sshd logs in as root, and needs root to start"
    return None


@dataclass(frozen=True)
class SshServer:
    port: int
    #: The host key's SHA-256 fingerprint in hex (``host_key_check=sha256:...``).
    fingerprint: str
    #: The agent's socket: ``SSH_AUTH_SOCK`` for the QEMU that logs in.
    agent_socket: str


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def serving(workdir: Path, timeout: float = 30.0) -> Iterator[SshServer]:
    """Run sshd on a free port of 127.0.0.1 (root may log in with the test's key only)
    and an ssh agent holding that key, until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = workdir / "host_key", workdir / "user_key"
    _keygen(host_key)
    _keygen(user_key)
    (workdir / "authorized_keys").write_bytes((workdir / "user_key.pub").read_bytes())
    port, pidfile = free_port(), workdir / "sshd.pid"
    config = workdir / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                      f"AuthorizedKeysFile {workdir / 'authorized_keys'}\n"
                      "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                      f"UsePAM no\nStrictModes no\nPidFile {pidfile}\n"
                      "Subsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    blob = base64.b64decode((workdir / "host_key.pub").read_text().split()[1])
    agent_socket = str(workdir / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_socket],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run([SSHD, "-f", str(config), "-E", str(workdir / "sshd.log")],
                       check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        # sshd writes its pid file once it listens; it is the only sign it gives
        while not (pidfile.exists() and Path(agent_socket).exists()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd (pid file) or ssh-agent (socket) not ready in "
                                   f"{timeout:g} s: {(workdir / 'sshd.log').read_text()}")
            time.sleep(0.02)
        subprocess.run(["ssh-add", "-q", str(user_key)], check=True, capture_output=True,
                       timeout=timeout, env={**os.environ, "SSH_AUTH_SOCK": agent_socket})
        yield SshServer(port, hashlib.sha256(blob).hexdigest(), agent_socket)
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        agent.terminate()
        agent.wait(timeout)
