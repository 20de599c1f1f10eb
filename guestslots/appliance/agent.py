#!/usr/bin/python3 -uIS
"""guestslots appliance agent: PID 1 of the appliance, one long-lived process.

Standard library only (it runs on the appliance's Debian python3).  Under TCG
every spawned process costs 0.1 s or more, so the agent mounts, probes and
reads through syscalls (``ctypes`` for mount(2), umount2(2), libblkid), learns
about hotplugged disks from kernel uevents, and spawns nothing per call.

It speaks :mod:`wire` on the virtio-serial port ``org.guestslots.agent.0``.
Device arguments arrive as kernel names (the host translates); guest paths are
resolved with the mounted filesystem as root (chroot), so nothing a guest
filesystem says (absolute symlinks, ``..``) reaches the appliance's own files.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import os
import re
import select
import socket
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, "/usr/lib/guestslots")
import wire  # type: ignore[import-not-found]  # copied beside the agent in the appliance

PORT_NAME = "org.guestslots.agent.0"
SYSROOT = "/sysroot"
LINK_DIR = "/dev/disk/guestslots"
NETLINK_KOBJECT_UEVENT = 15
MS_RDONLY = 1
MNT_DETACH = 2
BLKFLSBUF = 0x1261
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
UDEVD = "/lib/systemd/systemd-udevd"

# A disk on the virtio-scsi controller: .../virtioN/hostH/targetH:0:T/H:0:T:0/block/sdX
_DISK_EVENT_RE = re.compile(
    rb"^(add|remove)@/devices/.*/virtio[0-9]+/host[0-9]+/target[0-9]+:0:([0-9]+)/"
    rb"[0-9]+:0:[0-9]+:0/block/(sd[a-z]+)$"
)
_DISK_SYSFS_RE = re.compile(r"/virtio[0-9]+/host[0-9]+/target[0-9]+:0:([0-9]+)/[0-9]+:0:[0-9]+:0/")
_KERNEL_DEV_RE = re.compile(r"^/dev/(sd[a-z]+)([0-9]*)$")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class Fail(Exception):
    """An error to report to the host, with an errno when there is one."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


def log(msg: str) -> None:
    sys.stderr.write(f"guestslots-agent: {msg}\n")


def _check_libc(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise Fail(f"{what}: {os.strerror(e)}", e)


# ---------------------------------------------------------------- boot


def early_setup() -> None:
    """What an init does, by syscalls: mount the API filesystems, start udevd."""
    for src, target, fstype in (
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
    ):
        os.makedirs(target, exist_ok=True)
        if not os.path.ismount(target):
            rc = libc.mount(src.encode(), target.encode(), fstype.encode(), 0, None)
            if rc != 0:
                log(f"mount {target}: {os.strerror(ctypes.get_errno())}")
    os.makedirs(SYSROOT, exist_ok=True)
    os.makedirs("/run/udev", exist_ok=True)
    with contextlib.suppress(OSError), open("/proc/sys/kernel/modprobe", "w") as f:
        f.write("/sbin/modprobe")
    if os.path.exists(UDEVD):
        # The one process spawned at boot: it makes /dev/disk/guestslots/* links.
        os.spawnv(os.P_WAIT, UDEVD, [UDEVD, "--daemon"])


def find_port() -> str:
    for vport in os.listdir("/sys/class/virtio-ports"):
        try:
            with open(f"/sys/class/virtio-ports/{vport}/name") as f:
                if f.read().strip() == PORT_NAME:
                    return f"/dev/{vport}"
        except OSError:
            continue
    raise Fail(f"virtio-serial port {PORT_NAME} not found")


# ---------------------------------------------------------------- disks


def _sysfs_read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _dev_number(name: str) -> int:
    major, minor = _sysfs_read(f"/sys/class/block/{name}/dev").split(":")
    return os.makedev(int(major), int(minor))


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


def kernel_device(dev: str) -> tuple[str, str]:
    """Check a device argument: (disk name, device name) of a slot disk or its partition."""
    m = _KERNEL_DEV_RE.match(dev)
    if not m:
        raise Fail(f"{dev}: not a slot device", errno.EINVAL)
    disk, part = m.group(1), m.group(2)
    if not _DISK_SYSFS_RE.search(os.path.realpath(f"/sys/block/{disk}")):
        raise Fail(f"{dev}: not a slot device", errno.ENODEV)
    name = disk + part
    if part and not os.path.exists(f"/sys/block/{disk}/{name}"):
        raise Fail(f"{dev}: no such partition", errno.ENOENT)
    return disk, name


def partitions_of(disk: str) -> list[str]:
    parts = []
    for entry in os.listdir(f"/sys/block/{disk}"):
        if entry.startswith(disk) and os.path.exists(f"/sys/block/{disk}/{entry}/partition"):
            parts.append((int(_sysfs_read(f"/sys/block/{disk}/{entry}/partition")), entry))
    return [name for _, name in sorted(parts)]


def is_mbr_extended(disk: str, name: str) -> bool:
    """Linux exposes an MBR extended partition (1-4) as a 1 KiB device (2 sectors)."""
    number = int(_sysfs_read(f"/sys/block/{disk}/{name}/partition"))
    return number <= 4 and int(_sysfs_read(f"/sys/block/{disk}/{name}/size")) <= 2


# ---------------------------------------------------------------- libblkid


class Blkid:
    """Filesystem and partition-table probing through libblkid (no process)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("blkid") or "libblkid.so.1")
        lib.blkid_new_probe_from_filename.restype = ctypes.c_void_p
        lib.blkid_new_probe_from_filename.argtypes = [ctypes.c_char_p]
        for fn in (
            "blkid_probe_enable_superblocks",
            "blkid_probe_enable_partitions",
            "blkid_probe_set_superblocks_flags",
        ):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.blkid_do_safeprobe.argtypes = [ctypes.c_void_p]
        lib.blkid_probe_numof_values.argtypes = [ctypes.c_void_p]
        lib.blkid_probe_get_value.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.blkid_free_probe.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def probe(self, dev: str) -> dict[str, str]:
        lib = self.lib
        pr = lib.blkid_new_probe_from_filename(dev.encode())
        if not pr:
            e = ctypes.get_errno() or errno.EIO
            raise Fail(f"{dev}: cannot probe: {os.strerror(e)}", e)
        try:
            lib.blkid_probe_enable_superblocks(pr, 1)
            # LABEL | UUID | TYPE | SECTYPE | USAGE | VERSION
            lib.blkid_probe_set_superblocks_flags(
                pr, (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8)
            )
            lib.blkid_probe_enable_partitions(pr, 1)
            rc = lib.blkid_do_safeprobe(pr)
            if rc < 0:
                return {"AMBIVALENT": "1"} if rc == -2 else {}
            values: dict[str, str] = {}
            name, data = ctypes.c_char_p(), ctypes.c_char_p()
            size = ctypes.c_size_t()
            for i in range(lib.blkid_probe_numof_values(pr)):
                if (
                    lib.blkid_probe_get_value(
                        pr, i, ctypes.byref(name), ctypes.byref(data), ctypes.byref(size)
                    )
                    == 0
                ):
                    key = (name.value or b"").decode()
                    values[key] = (data.value or b"").decode("utf-8", "replace")
            return values
        finally:
            lib.blkid_free_probe(pr)


# ---------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo() -> list[tuple[str, str, int, str]]:
    """(mount point, source, device number, fstype) of every mount, in mount order."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            major, minor = fields[2].split(":")
            result.append(
                (
                    _unescape(fields[4]),
                    _unescape(fields[sep + 2]),
                    os.makedev(int(major), int(minor)),
                    fields[sep + 1],
                )
            )
    return result


def api_mountpoint(real: str) -> str | None:
    if real == SYSROOT:
        return "/"
    if real.startswith(SYSROOT + "/"):
        return real[len(SYSROOT) :]
    return None


def guest_mounts() -> list[tuple[str, str, int]]:
    """(API mount point, source, device number) of the mounts under /sysroot."""
    out = []
    for real, source, dev, _fstype in mountinfo():
        api = api_mountpoint(real)
        if api is not None:
            out.append((api, source, dev))
    return out


def check_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise Fail(f"{path!r}: path must be absolute", errno.EINVAL)
    if "\0" in path:
        raise Fail("path contains a NUL byte", errno.EINVAL)
    return path


class Sysroot:
    """Run file operations with the mounted guest filesystem as root (chroot in/out)."""

    def __init__(self) -> None:
        self.real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        if not os.path.ismount(SYSROOT):
            raise Fail("no filesystem is mounted on /: call mount first", errno.ENOENT)
        os.chroot(SYSROOT)
        os.chdir("/")
        try:
            yield
        finally:
            os.fchdir(self.real_root)
            os.chroot(".")
            os.chdir("/")

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        with self.inside():
            return os.open(check_path(path), flags | os.O_CLOEXEC, mode)


# ---------------------------------------------------------------- the agent


class Agent:
    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_CLOEXEC)
        self.disks = Disks()
        # udevd's own netlink group: a message there means udevd finished an event.
        self.udev_events = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT
        )
        self.udev_events.bind((0, 2))
        self.udev_events.setblocking(False)
        self.blkid = Blkid()
        self.root = Sysroot()
        self.powering_off = False
        self.calls: dict[str, Callable[..., Any]] = {
            name[5:]: getattr(self, name) for name in dir(self) if name.startswith("call_")
        }

    # ---- channel

    def send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def send_message(self, obj: dict[str, Any]) -> None:
        self.send(wire.encode_message(obj))

    def read_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(self.fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def read_frame(self) -> tuple[int, bytes] | None:
        header = self.read_exact(wire.HEADER.size)
        if header is None:
            return None
        kind, length = wire.decode_header(header)
        payload = self.read_exact(length) if length else b""
        if payload is None:
            return None
        return kind, payload

    def wait_for_host(self) -> None:
        """The host went away (read() gave EOF): wait until it is back, then announce."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            events = poller.poll(1000)
            if events and not events[0][1] & select.POLLHUP:
                break
            time.sleep(0.05)  # POLLHUP is reported continuously while the host is away
        self.hello()

    def hello(self) -> None:
        self.send_message(
            {"event": "hello", "version": wire.PROTOCOL_VERSION, "kernel": os.uname().release}
        )

    def serve(self) -> None:
        self.hello()
        while True:
            frame = self.read_frame()
            if frame is None:
                self.wait_for_host()
                continue
            kind, payload = frame
            if kind != wire.MSG:
                continue  # a stray chunk of a cancelled transfer
            self.handle(wire.decode_message(payload))
            if self.powering_off:
                libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)

    def handle(self, msg: dict[str, Any]) -> None:
        call_id = msg.get("id")
        name = msg.get("call")
        args = msg.get("args") or {}
        fn = self.calls.get(str(name))
        try:
            if fn is None:
                raise Fail(f"unknown call {name!r}", errno.ENOSYS)
            result = fn(**args)
            reply: dict[str, Any] = {"id": call_id, "ok": result}
        except Fail as e:
            reply = {"id": call_id, "error": {"type": "Fail", "message": str(e), "errno": e.errno}}
        except OSError as e:
            where = f": {e.filename}" if e.filename is not None else ""
            reply = {
                "id": call_id,
                "error": {
                    "type": "OSError",
                    "errno": e.errno or 0,
                    "message": f"{e.strerror or e}{where}",
                },
            }
        except Exception as e:
            log(traceback.format_exc())
            reply = {
                "id": call_id,
                "error": {"type": type(e).__name__, "message": str(e), "errno": 0},
            }
        self.send_message(reply)

    # ---- streams

    def send_file(self, fd: int) -> None:
        """Stream an open file as D frames then E; stop early if the host cancels."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        try:
            while True:
                chunk = os.read(fd, wire.CHUNK)
                if not chunk:
                    break
                self.send(wire.encode(wire.DATA, chunk))
                if poller.poll(0):
                    frame = self.read_frame()
                    if frame is not None and frame[0] == wire.CANCEL:
                        self.send(wire.encode(wire.END))
                        raise Fail("cancelled by the host", errno.ECANCELED)
            self.send(wire.encode(wire.END))
        finally:
            os.close(fd)

    def receive_file(self, fd: int | None) -> int:
        """Write D frames to *fd* until E; return the byte count.  C cancels."""
        total = 0
        error: OSError | None = None
        try:
            while True:
                frame = self.read_frame()
                if frame is None:
                    raise Fail("host went away during upload", errno.EPIPE)
                kind, payload = frame
                if kind == wire.END:
                    break
                if kind == wire.CANCEL:
                    raise Fail("cancelled by the host", errno.ECANCELED)
                if kind == wire.DATA and fd is not None and error is None:
                    try:
                        view = memoryview(payload)
                        while view:
                            view = view[os.write(fd, view) :]
                        total += len(payload)
                    except OSError as e:
                        error = e  # keep reading to the end of the stream
        finally:
            if fd is not None:
                os.close(fd)
        if error is not None:
            raise error
        return total

    # ---- calls: disks

    def call_ping(self) -> str:
        return "pong"

    def call_wait_disk(
        self, target: int, plugged: bool = True, timeout: float = 30.0
    ) -> str | None:
        return self.disks.wait(int(target), bool(plugged), float(timeout))

    def call_wait_link(self, name: str, timeout: float = 10.0) -> str:
        """Wait until udev has made /dev/disk/guestslots/NAME; return its target device."""
        if "/" in name or name in ("", ".", ".."):
            raise Fail(f"{name!r}: not a link name", errno.EINVAL)
        link = f"{LINK_DIR}/{name}"
        deadline = time.monotonic() + float(timeout)
        poller = select.poll()
        poller.register(self.udev_events, select.POLLIN)
        while True:
            while True:  # each processed udev event is a reason to look again
                try:
                    self.udev_events.recv(65536)
                except BlockingIOError:
                    break
                except OSError as e:  # overflowed while nobody waited: harmless here
                    if e.errno != errno.ENOBUFS:
                        raise
            if os.path.islink(link):
                return os.path.realpath(link)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{link} did not appear in {float(timeout):g} s", errno.ETIMEDOUT)
            poller.poll(left * 1000)

    def call_list_partitions(self, disks: list[str]) -> list[str]:
        out: list[str] = []
        for dev in disks:
            disk, _ = kernel_device(dev)
            out.extend(f"/dev/{p}" for p in partitions_of(disk))
        return out

    def call_list_filesystems(self, disks: list[str]) -> list[list[str]]:
        """As libguestfs orders them: unpartitioned disks first, then partitions
        (both in the order of *disks*); MBR extended partitions left out."""
        whole: list[list[str]] = []
        parts: list[list[str]] = []
        for dev in disks:
            disk, _ = kernel_device(dev)
            partitions = partitions_of(disk)
            dos = bool(partitions) and self.blkid.probe(f"/dev/{disk}").get("PTTYPE") == "dos"
            for name in partitions or [disk]:
                if dos and is_mbr_extended(disk, name):
                    continue  # a container of logical partitions, no filesystem
                fstype = self.blkid.probe(f"/dev/{name}").get("TYPE", "unknown")
                (parts if partitions else whole).append([f"/dev/{name}", fstype])
        return whole + parts

    def call_blkid(self, device: str) -> dict[str, str]:
        _, name = kernel_device(device)
        return self.blkid.probe(f"/dev/{name}")

    def users_of(self, disk: str) -> list[str]:
        names = [disk, *partitions_of(disk)]
        devs = {_dev_number(n): n for n in names}
        users = [
            f"/dev/{devs[dev]} is mounted on {mp}"
            for mp, _src, dev in guest_mounts()
            if dev in devs
        ]
        for n in names:
            base = f"/sys/block/{disk}" + (f"/{n}" if n != disk else "")
            users.extend(f"/dev/{n} is held by {h}" for h in os.listdir(f"{base}/holders"))
        return users

    def call_prepare_unplug(self, device: str, force: bool = False) -> list[str]:
        """Make a disk safe to remove: nothing mounted, everything written."""
        disk, _ = kernel_device(device)
        users = self.users_of(disk)
        if users and not force:
            return users
        if users:
            devs = {_dev_number(n) for n in [disk, *partitions_of(disk)]}
            ours = [mp for mp, _src, dev in guest_mounts() if dev in devs]
            # Unmount everything on or beneath those mount points, deepest first.
            victims = [
                mp
                for mp, _src, _dev in guest_mounts()
                if any(mp == o or mp.startswith(o.rstrip("/") + "/") for o in ours)
            ]
            for mp in reversed(victims):
                _check_libc(libc.umount2(self.real_mountpoint(mp).encode(), 0), f"umount {mp}")
        os.sync()
        fd = os.open(f"/dev/{disk}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            fcntl.ioctl(fd, BLKFLSBUF)
        finally:
            os.close(fd)
        left = self.users_of(disk)
        if left:
            raise Fail(f"/dev/{disk} is still in use: {', '.join(left)}", errno.EBUSY)
        return []

    # ---- calls: mounts

    @staticmethod
    def real_mountpoint(api: str) -> str:
        return SYSROOT if api == "/" else SYSROOT + api

    def call_mount(
        self,
        device: str,
        mountpoint: str,
        readonly: bool = False,
        options: str = "",
        fstype: str = "",
    ) -> None:
        _, name = kernel_device(device)
        check_path(mountpoint)
        if not fstype:
            fstype = self.blkid.probe(f"/dev/{name}").get("TYPE", "")
            if not fstype:
                raise Fail(f"/dev/{name}: no filesystem found", errno.EINVAL)
        flags = MS_RDONLY if readonly else 0
        fd = None
        if mountpoint == "/":
            if os.path.ismount(SYSROOT):
                raise Fail("a filesystem is already mounted on /", errno.EBUSY)
            target = SYSROOT
        else:
            # Resolve the mount point inside the guest filesystem, then mount on
            # the resolved directory: a guest symlink cannot redirect the mount.
            with self.root.inside():
                fd = os.open(mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            target = f"/proc/self/fd/{fd}"
        try:
            rc = libc.mount(
                f"/dev/{name}".encode(),
                target.encode(),
                fstype.encode(),
                flags,
                options.encode() if options else None,
            )
            _check_libc(rc, f"mount /dev/{name} on {mountpoint} ({fstype})")
        finally:
            if fd is not None:
                os.close(fd)

    def call_umount(self, mountpoint: str) -> None:
        check_path(mountpoint)
        mp = os.path.normpath(mountpoint)
        for api, _src, _dev in reversed(guest_mounts()):
            if api == mp:
                _check_libc(
                    libc.umount2(self.real_mountpoint(api).encode(), 0), f"umount {mountpoint}"
                )
                return
        raise Fail(f"{mountpoint}: not a mount point", errno.EINVAL)

    def call_umount_all(self) -> None:
        for api, _src, _dev in reversed(guest_mounts()):
            _check_libc(libc.umount2(self.real_mountpoint(api).encode(), 0), f"umount {api}")
        os.sync()

    def call_mounts(self) -> list[list[str]]:
        return [[src, api] for api, src, _dev in guest_mounts()]

    # ---- calls: files (guest paths, resolved with the guest filesystem as root)

    def call_ls(self, path: str) -> list[str]:
        with self.root.inside():
            return sorted(os.listdir(check_path(path)))

    def call_stat(self, path: str, follow: bool = True) -> dict[str, int]:
        with self.root.inside():
            st = os.stat(check_path(path), follow_symlinks=follow)
        return {
            "mode": st.st_mode,
            "ino": st.st_ino,
            "dev": st.st_dev,
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "size": st.st_size,
            "atime": st.st_atime_ns,
            "mtime": st.st_mtime_ns,
            "ctime": st.st_ctime_ns,
        }

    def call_exists(self, path: str) -> bool:
        with self.root.inside():
            return os.path.lexists(check_path(path))

    def call_is_file(self, path: str, follow: bool = False) -> bool:
        with self.root.inside():
            try:
                st = os.stat(check_path(path), follow_symlinks=follow)
            except FileNotFoundError:
                return False
        return stat.S_ISREG(st.st_mode)

    def call_is_dir(self, path: str, follow: bool = False) -> bool:
        with self.root.inside():
            try:
                st = os.stat(check_path(path), follow_symlinks=follow)
            except FileNotFoundError:
                return False
        return stat.S_ISDIR(st.st_mode)

    def call_readlink(self, path: str) -> str:
        with self.root.inside():
            return os.readlink(check_path(path))

    def call_mkdir(self, path: str, parents: bool = False, mode: int = 0o755) -> None:
        with self.root.inside():
            if parents:
                os.makedirs(check_path(path), mode, exist_ok=True)
            else:
                os.mkdir(check_path(path), mode)

    def call_rm(self, path: str) -> None:
        with self.root.inside():
            os.unlink(check_path(path))

    def call_rmdir(self, path: str) -> None:
        with self.root.inside():
            os.rmdir(check_path(path))

    def call_download(self, path: str) -> int:
        fd = self.root.open(path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        self.send_file(fd)
        return size

    def call_upload(self, path: str, mode: int = 0o644) -> int:
        try:
            fd: int | None = self.root.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        except (OSError, Fail) as e:
            self.receive_file(None)  # consume the stream, then report why
            raise e
        return self.receive_file(fd)

    def call_checksum(self, csumtype: str, path: str) -> str:
        if csumtype not in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
            raise Fail(f"unknown checksum type {csumtype!r}", errno.EINVAL)
        h = hashlib.new(csumtype)
        fd = self.root.open(path, os.O_RDONLY)
        try:
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        finally:
            os.close(fd)
        return h.hexdigest()

    def call_statvfs(self, path: str) -> dict[str, int]:
        with self.root.inside():
            st = os.statvfs(check_path(path))
        return {
            "bsize": st.f_bsize,
            "frsize": st.f_frsize,
            "blocks": st.f_blocks,
            "bfree": st.f_bfree,
            "bavail": st.f_bavail,
            "files": st.f_files,
            "ffree": st.f_ffree,
            "favail": st.f_favail,
            "flag": st.f_flag,
            "namemax": st.f_namemax,
        }

    def call_sync(self) -> None:
        os.sync()

    def call_shutdown(self) -> None:
        with contextlib.suppress(Fail, OSError):
            self.call_umount_all()
        os.sync()
        self.powering_off = True


def main() -> None:
    if os.getpid() == 1:
        early_setup()
    Agent(find_port()).serve()


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        log(traceback.format_exc())
        if os.getpid() == 1:
            os.sync()
            libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)
        raise
