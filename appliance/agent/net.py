"""NICs: loading the driver, configuring a plugged NIC by syscalls, fetching a URL.

A hotplugged NIC is found by its MAC address (the host chose it), brought up with
the fixed address the host gives, and taken down before it is unplugged, all
through ioctl(2) on a socket: no ``ip`` process per call.  The driver
(virtio_net and what it needs) is loaded by finit_module(2) from the kernel's own
``modules.dep``, once (before the appliance is saved, so a restored one has it).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import select
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

from .common import NETLINK_KOBJECT_UEVENT, Fail, libc
from .state import AgentBase

NET_DIR = "/sys/class/net"
SYS_FINIT_MODULE = 313  # x86_64
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2
RESOLV_CONF = "/etc/resolv.conf"
#: What fetch writes at most (a hostile or endless server cannot fill the guest disk).
FETCH_LIMIT = 1 << 34


class _Sockaddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort),
                ("addr", ctypes.c_ubyte * 4), ("zero", ctypes.c_ubyte * 8)]


class _Rtentry(ctypes.Structure):
    _fields_ = [("rt_pad1", ctypes.c_ulong), ("rt_dst", _Sockaddr), ("rt_gateway", _Sockaddr),
                ("rt_genmask", _Sockaddr), ("rt_flags", ctypes.c_ushort),
                ("rt_pad2", ctypes.c_short), ("rt_pad3", ctypes.c_ulong),
                ("rt_pad4", ctypes.c_void_p), ("rt_metric", ctypes.c_short),
                ("rt_dev", ctypes.c_char_p), ("rt_mtu", ctypes.c_ulong),
                ("rt_window", ctypes.c_ulong), ("rt_irtt", ctypes.c_ushort)]


def _sockaddr(address: str) -> _Sockaddr:
    sa = _Sockaddr()
    sa.family = socket.AF_INET
    sa.addr[:] = list(ipaddress.IPv4Address(address).packed)
    return sa


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def load_module(name: str) -> None:
    """Load kernel module *name* and what it depends on (``modules.dep``), by
    finit_module(2); a module already loaded is fine."""
    if os.path.isdir(f"/sys/module/{name}"):
        return
    base = f"/lib/modules/{os.uname().release}"
    deps: dict[str, list[str]] = {}
    with open(f"{base}/modules.dep") as f:
        for line in f:
            path, _, needs = line.partition(":")
            deps[os.path.basename(path).split(".ko")[0].replace("-", "_")] = \
                [path, *needs.split()]
    if name not in deps:
        raise Fail(f"kernel module {name} is not in the appliance", errno.ENOENT)
    for path in reversed(deps[name]):  # the module, then what it needs, deepest last
        _finit(f"{base}/{path}")


def _finit(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.syscall(SYS_FINIT_MODULE, fd, b"", 0) != 0:
            err = ctypes.get_errno()
            if err != errno.EEXIST:
                raise Fail(f"loading {os.path.basename(path)}: {os.strerror(err)}", err)
    finally:
        os.close(fd)


def interfaces() -> dict[str, str]:
    """MAC address -> interface name, for every interface the kernel has."""
    found = {}
    for name in os.listdir(NET_DIR):
        try:
            found[_read(f"{NET_DIR}/{name}/address")] = name
        except OSError:
            continue
    return found


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(24, b"\0")


def _set_up(sock: socket.socket, name: str, up: bool) -> None:
    flags = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name)), 16)[0]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags)))


def _default_route_interface() -> str | None:
    """The interface of the guest's default route (/proc/net/route), if it has one."""
    with open("/proc/net/route") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if fields[1:2] == ["00000000"] and fields[7:8] == ["00000000"]:
                return fields[0]
    return None


def _has_default_route() -> bool:
    return _default_route_interface() is not None


def _add_default_route(sock: socket.socket, name: str, gateway: str) -> None:
    route = _Rtentry()
    route.rt_dst = _sockaddr("0.0.0.0")
    route.rt_genmask = _sockaddr("0.0.0.0")
    route.rt_gateway = _sockaddr(gateway)
    route.rt_flags = RTF_UP | RTF_GATEWAY
    device = ctypes.c_char_p(name.encode())
    route.rt_dev = device
    fcntl.ioctl(sock, SIOCADDRT, bytes(route))


class NetCalls(AgentBase):
    """NICs as the host names them (by MAC address), and fetching into the guest."""

    nic_config: dict[str, dict[str, str | None]]

    def call_net_prepare(self) -> None:
        """Load the NIC driver and bring the loopback up (before a save)."""
        load_module("virtio_net")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            _set_up(sock, "lo", True)

    def call_nic_plugged(self, mac: str, address: str, gateway: str | None = None,
                         dns: str | None = None, timeout: float = 30.0) -> str:
        """Wait for the NIC with *mac* (just plugged), give it *address* (with prefix),
        bring it up, route through *gateway* if no default route exists yet; return the
        interface name."""
        self.call_net_prepare()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        try:
            sock.bind((0, 1))
            deadline = time.monotonic() + float(timeout)
            while (name := interfaces().get(mac)) is None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    raise Fail(f"no interface with MAC {mac} appeared in {timeout:g} s "
                               f"(the guest has {', '.join(sorted(interfaces().values()))})",
                               errno.ETIMEDOUT)
                sock.recv(65536)  # any event: look again
        finally:
            sock.close()
        interface = ipaddress.IPv4Interface(address)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCSIFADDR, _ifreq(name, bytes(_sockaddr(str(interface.ip)))))
            fcntl.ioctl(s, SIOCSIFNETMASK,
                        _ifreq(name, bytes(_sockaddr(str(interface.network.netmask)))))
            _set_up(s, name, True)
            self.nic_config[mac] = {"address": address, "gateway": gateway, "dns": dns}
            self._route(s)
        return name

    def _route(self, sock: socket.socket) -> None:
        """Give the guest a default route (and DNS) through the first NIC that has a
        gateway, if it has none."""
        if _has_default_route():
            return
        names = interfaces()
        for mac, config in self.nic_config.items():
            if config["gateway"] and mac in names:
                _add_default_route(sock, names[mac], str(config["gateway"]))
                if config["dns"]:
                    with open(RESOLV_CONF, "w") as f:
                        f.write(f"nameserver {config['dns']}\n")
                return

    def call_nic_unplugging(self, mac: str) -> None:
        """Take the NIC with *mac* down before the host unplugs it; the default route
        moves to another NIC if it went through this one."""
        name = interfaces().get(mac)
        self.nic_config.pop(mac, None)
        if name is None:
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            _set_up(s, name, False)  # its routes go with it
            self._route(s)

    def call_nics_state(self) -> dict[str, list[object]]:
        """MAC -> [interface, up, carries the default route] for every NIC the guest
        has (loopback excepted)."""
        state: dict[str, list[object]] = {}
        default = _default_route_interface()
        for mac, name in interfaces().items():
            if name == "lo":
                continue
            try:
                up = bool(int(_read(f"{NET_DIR}/{name}/flags"), 16) & IFF_UP)
            except (OSError, ValueError):
                up = False
            state[mac] = [name, up, up and name == default]
        return state

    def call_fetch(self, url: str, path: str, timeout: float = 60.0) -> int:
        """Fetch *url* (http or https) into guest file *path*; return its size."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise Fail(f"{url}: only http and https URLs are fetched", errno.EINVAL)
        deadline = time.monotonic() + float(timeout)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            response = opener.open(url, timeout=float(timeout))
        except urllib.error.HTTPError as e:
            raise Fail(f"{url}: HTTP {e.code} {e.reason}", errno.EIO) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise Fail(f"{url}: {reason}", errno.EHOSTUNREACH) from None
        total = 0
        with response:
            fd = self.root.open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                while chunk := response.read(1 << 16):
                    total += len(chunk)
                    if total > FETCH_LIMIT:
                        raise Fail(f"{url}: larger than {FETCH_LIMIT} bytes", errno.EFBIG)
                    if time.monotonic() > deadline:
                        raise Fail(f"{url}: not fetched in {timeout:g} s", errno.ETIMEDOUT)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            except OSError as e:
                raise Fail(f"{url}: {e.strerror or e}", e.errno or errno.EIO) from None
            finally:
                os.close(fd)
        return total
