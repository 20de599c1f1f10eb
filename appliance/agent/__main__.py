"""guestslots appliance agent: PID 1 of the appliance, one long-lived process.

Standard library only (it runs on the appliance's Debian python3).  Under TCG
every spawned process costs 0.1 s or more, so the agent mounts, probes and
reads through syscalls (``ctypes`` for mount(2), umount2(2), libblkid), learns
about hotplugged disks from kernel uevents, and spawns nothing per call (LVM,
mdadm and btrfs-progs excepted, see :mod:`.volumes`; and the tools that make or
change partition tables and filesystems, see :mod:`.parts` and :mod:`.fstools`).

It speaks :mod:`wire` on the virtio-serial port ``wire.AGENT_PORT``.  Device
arguments arrive as kernel names (the host translates); guest paths are
resolved with the mounted filesystem as root (chroot), so nothing a guest
filesystem says (absolute symlinks, ``..``) reaches the appliance's own files.
The calls are grouped by area, one module each, as the host's ``guest`` package.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import os
import socket
import traceback

from .archive import ArchiveCalls
from .augeas import AugeasCalls
from .blkid import Blkid
from .common import (
    AGENT_PORT,
    LINUX_REBOOT_CMD_POWER_OFF,
    NETLINK_KOBJECT_UEVENT,
    SYSROOT,
    UDEVD,
    Fail,
    libc,
    log,
)
from .cpus import CpuCalls
from .devio import DeviceIoCalls
from .disks import DiskCalls
from .edits import EditCalls
from .files import FileCalls
from .fs import FsCalls
from .fstools import FsToolCalls
from .guestexec import GuestExecCalls
from .hive import HiveCalls
from .listing import ListingCalls
from .makevol import VolumeMakeCalls
from .mounts import MountCalls
from .net import NetCalls
from .parts import PartCalls
from .rpmdb import RpmCalls
from .slotdisks import Disks
from .switchroot import leave_initramfs
from .sysroot import Sysroot
from .tree import TreeCalls
from .watchdog import Watchdog, abort_stuck_fuse


def early_setup() -> None:
    """What an init does, by syscalls: leave the initramfs, mount the API filesystems,
    start udevd."""
    leave_initramfs()
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
    for d in ("/run/udev", "/run/lock/lvm", "/run/lvm", "/run/mdadm"):
        os.makedirs(d, exist_ok=True)
    with contextlib.suppress(OSError), open("/proc/sys/kernel/modprobe", "w") as f:
        f.write("/sbin/modprobe")
    if os.path.exists(UDEVD):
        # The one process spawned at boot: it makes /dev/disk/guestslots/* links.
        # SCHED_IDLE (inherited by its workers): on the one vCPU it runs only when
        # the agent and the kernel wait, so a hotplug's answer does not wait for it.
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            os.spawnv(os.P_WAIT, UDEVD, [UDEVD, "--daemon"])
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def find_port() -> str:
    for vport in os.listdir("/sys/class/virtio-ports"):
        try:
            with open(f"/sys/class/virtio-ports/{vport}/name") as f:
                if f.read().strip() == AGENT_PORT:
                    return f"/dev/{vport}"
        except OSError:
            continue
    raise Fail(f"virtio-serial port {AGENT_PORT} not found")


class Agent(DiskCalls, PartCalls, FsToolCalls, VolumeMakeCalls, DeviceIoCalls, MountCalls,
            FileCalls, FsCalls, CpuCalls, NetCalls, TreeCalls, EditCalls, ArchiveCalls,
            ListingCalls, GuestExecCalls, HiveCalls, RpmCalls, AugeasCalls):
    """The agent: its state, and every area's calls."""

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
        self.subvolumes = {}
        self.readonly_disks = set()
        self.nic_config = {}
        self.hive = None
        self.fuse_daemons = {}
        self.watchdog = Watchdog(self._overdue)
        self.powering_off = False
        self.queued = collections.deque()
        self.calls = {
            name[5:]: getattr(self, name) for name in dir(self) if name.startswith("call_")
        }

    def _overdue(self) -> None:
        """The host gave up on the running call: see :mod:`.watchdog`."""
        abort_stuck_fuse(self.fuse_daemons)

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
