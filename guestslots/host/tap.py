"""Opening a host tap device, whose file descriptor is then handed to QEMU.

QEMU is given the open descriptor (over its QMP socket, with SCM_RIGHTS) rather
than a name to open, so it needs no privilege and opens nothing itself.
"""

from __future__ import annotations

import fcntl
import os
import struct

from ..errors import GuestslotsError

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


class TapError(GuestslotsError):
    """A tap device cannot be opened."""


def open_tap(name: str) -> int:
    """Open tap device *name* (it is made if it does not exist, which needs
    CAP_NET_ADMIN, and then lasts as long as an open descriptor); return the
    descriptor, close-on-exec."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise TapError(f"tap {name}: cannot open /dev/net/tun: {e.strerror}") from None
    try:
        ifreq = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, ifreq)
    except OSError as e:
        os.close(fd)
        hint = " (is it a tap device, and not in use by another program?)" \
            if e.errno in (16, 22) else ""
        raise TapError(f"tap {name}: {e.strerror}{hint}") from None
    return fd
