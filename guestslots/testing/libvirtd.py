"""libvirt daemons for the tests: a private one of the test's own, to migrate appliances
to, and the host's system daemon as Debian runs it.

The embedded driver the libvirt backend uses refuses to take a domain from itself,
and a migration within one libvirt is refused anyway ("the same host": libvirt
compares host UUIDs).  This starts a real ``libvirtd`` with its own host UUID in a
mount namespace of its own (``unshare -m``), where its system directories
(``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``, ``/var/cache/libvirt``,
``/etc/libvirt``) are directories of the test: nothing of the host's is used or
left, and it runs beside any other libvirt.  Its socket is outside the namespace,
so the test reaches it as ``qemu+unix:///system?socket=...``.  Its QEMU runs as
root on this host, like the embedded driver's, without a security driver.

Root only (mount namespaces, libvirt's system mode); the mount points are made if
missing (empty directories, as Debian's libvirt-daemon-system would make them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

LIBVIRTD = "/usr/sbin/libvirtd"
SYSTEM_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt",
               "/etc/libvirt")

QEMU_CONF = """\
security_driver = "none"
dynamic_ownership = 0
remember_owner = 0
user = "root"
group = "root"
namespaces = [ ]
stdio_handler = "file"
"""


def unavailable() -> str | None:
    """Why no private libvirtd can run here, or None."""
    if os.geteuid() != 0:
        return "a private libvirtd needs root (mount namespace, libvirt's system mode)"
    if not os.path.exists(LIBVIRTD) or shutil.which("unshare") is None:
        return f"{LIBVIRTD} or unshare is missing"
    return None


@contextlib.contextmanager
def private_libvirtd(base: Path, capabilities: Path | None = None,
                     timeout: float = 30.0) -> Iterator[str]:
    """Run a private libvirtd with its files under *base*; its URI.  *capabilities*:
    a directory of QEMU capabilities libvirt probed before (copied into its cache,
    so that it need not probe QEMU again).  On exit every domain it runs is
    destroyed and the daemon stopped."""
    import libvirt

    dirs = {system: base / system.strip("/").replace("/", "-") for system in SYSTEM_DIRS}
    for system, mine in dirs.items():
        os.makedirs(system, exist_ok=True)
        mine.mkdir(parents=True)
    etc = dirs["/etc/libvirt"]
    sockets = base / "sock"
    sockets.mkdir()
    (etc / "qemu.conf").write_text(QEMU_CONF)
    (etc / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{sockets}"\nunix_sock_rw_perms = "0700"\n'
        f'auth_unix_rw = "none"\nauth_unix_ro = "none"\nhost_uuid = "{uuid.uuid4()}"\n')
    if capabilities is not None and capabilities.is_dir():
        cache = dirs["/var/cache/libvirt"] / "qemu" / "capabilities"
        cache.mkdir(parents=True)
        for xml in capabilities.glob("*.xml"):
            shutil.copyfile(xml, cache / xml.name)
    script = "set -e\n" + "".join(f"mount --bind {mine} {system}\n"
                                  for system, mine in dirs.items())
    script += f"exec {LIBVIRTD} -f {etc / 'libvirtd.conf'} -p {base / 'libvirtd.pid'}\n"
    with open(base / "libvirtd.log", "wb") as log:  # the daemon has its own copy
        daemon = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh",
                                   "-c", script], stdout=log, stderr=subprocess.STDOUT)
    uri = f"qemu+unix:///system?socket={sockets / 'libvirt-sock'}"
    try:
        deadline = time.monotonic() + timeout
        while not (sockets / "libvirt-sock").exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private libvirtd did not open its socket in "
                                   f"{timeout:g} s: {(base / 'libvirtd.log').read_text()}")
            time.sleep(0.05)  # polled: the socket's creation is the daemon's only sign
        yield uri
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn = libvirt.open(uri)
            for domain in conn.listAllDomains(0):
                with contextlib.suppress(libvirt.libvirtError):
                    domain.destroy()
            conn.close()
        daemon.terminate()
        try:
            daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"
VIRTLOGD = "/usr/sbin/virtlogd"


def _answers(socket_path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(socket_path)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def system_libvirtd(timeout: float = 30.0) -> Iterator[str]:
    """The host's system libvirt daemon (``qemu:///system``) as Debian's package runs
    it: its own configuration (none: the built-in defaults, QEMU as ``libvirt-qemu``
    with dynamic ownership) and virtlogd beside it.  One that runs is used and left
    running; else this starts ``virtlogd -d`` and ``libvirtd -d`` (as Debian's init
    script does) and stops what it started on exit."""
    started: list[str] = []
    pids = {"virtlogd": "/run/virtlogd.pid", "libvirtd": "/run/libvirtd.pid"}
    try:
        for daemon, socket_path in ((VIRTLOGD, "/run/libvirt/virtlogd-sock"),
                                    (LIBVIRTD, SYSTEM_SOCKET)):
            if _answers(socket_path):
                continue
            subprocess.run([daemon, "-d"], check=True, timeout=timeout)
            started.append(os.path.basename(daemon))
            deadline = time.monotonic() + timeout
            while not _answers(socket_path):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{daemon} -d did not answer on {socket_path} in "
                                       f"{timeout:g} s")
                time.sleep(0.05)  # polled: the socket is the daemon's only sign
        yield "qemu:///system"
    finally:
        for name in reversed(started):
            with contextlib.suppress(OSError, ValueError):
                pid = int(Path(pids[name]).read_text())
                os.kill(pid, 15)
                deadline = time.monotonic() + timeout
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)  # not our child: polled until it is gone
