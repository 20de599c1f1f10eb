"""Which slot disks the kernel has: a SCSI target -> kernel name table, kept current
from the kernel's own uevents (no udev, no process)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time

from .common import _DISK_EVENT_RE, _DISK_SYSFS_RE, NETLINK_KOBJECT_UEVENT, Fail


def scan_disks() -> dict[int, str]:
    """SCSI target -> kernel name of every slot disk present now (from sysfs)."""
    found: dict[int, str] = {}
    for name in os.listdir("/sys/block"):
        if not name.startswith("sd"):
            continue
        m = _DISK_SYSFS_RE.search(os.path.realpath(f"/sys/block/{name}"))
        if m:
            found[int(m.group(1))] = name
    return found


class Disks:
    """Which slot disks the kernel has, kept current from its uevents."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 4 * 1024 * 1024)  # SO_RCVBUFFORCE
        self.sock.bind((0, 1))
        self.sock.setblocking(False)
        self.present = scan_disks()

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # events lost: sysfs is the truth
                    self.present = scan_disks()
                    continue
                raise
            header = data.split(b"\0", 1)[0]
            m = _DISK_EVENT_RE.match(header)
            if not m:
                continue
            target, name = int(m.group(2)), m.group(3).decode()
            if m.group(1) == b"add":
                self.present[target] = name
            elif self.present.get(target) == name:
                del self.present[target]

    def wait(self, target: int, plugged: bool, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while True:
            self.drain()
            name = self.present.get(target)
            if (name is not None) == plugged:
                return name
            left = deadline - time.monotonic()
            if left <= 0:
                state = "appear" if plugged else "go away"
                raise Fail(
                    f"disk at SCSI target {target} did not {state} in {timeout:g} s",
                    errno.ETIMEDOUT,
                )
            poller.poll(left * 1000)
