"""Leaving supermin's initramfs, as ``switch_root`` does.

supermin's init mounts the appliance's root filesystem on ``/root`` of the
initramfs (the kernel's rootfs, which cannot be unmounted), with a ``/proc`` of its
own mounted beside it, and ``chroot``s into ``/root``: ``pivot_root`` does not work
on rootfs, and it leaves the initramfs's files in place.  Everything above our root
stayed reachable to a process that leaves its root: the initramfs, its modules and
that ``/proc`` (the appliance's PID 1 and every root through ``/proc/1/root``).

:func:`leave_initramfs` does what ``switch_root`` does at PID 1's first step: the
initramfs's files deleted (their memory freed), its ``/proc`` unmounted, and our
root moved onto the initramfs's ``/`` and made the root.  A root made later with
``pivot_root`` (a guest program's, see :mod:`.guestexec`) then sits on the
initramfs's ``/`` and covers it whole: walking up from it leads back into it.
"""

from __future__ import annotations

import ctypes
import os
import stat

from .common import MNT_DETACH, Fail, _check_libc, libc, log

MS_MOVE = 8192
#: statfs f_type of the kernel's rootfs (ramfs or tmpfs).
ROOTFS_MAGIC = (0x858458F6, 0x01021994)


def leave_initramfs() -> None:
    """Move our root filesystem onto the initramfs's ``/`` (PID 1, at boot); nothing
    happens when our root is not on ``/root`` of an initramfs."""
    ours = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        device = os.fstat(ours).st_dev
        _climb_out(ours)
        if not _is_supermins(device):
            os.fchdir(ours)  # not the layout we know: back where we were
            os.chroot(".")
            return
        if os.path.ismount("/proc"):
            _check_libc(libc.umount2(b"/proc", MNT_DETACH), "unmounting the initramfs's /proc")
        top = os.lstat("/").st_dev
        for entry in os.scandir("/"):
            if entry.name != "root":
                _remove(f"/{entry.name}", top)
        os.chdir("/root")
        _check_libc(libc.mount(b".", b"/", None, MS_MOVE, None), "moving the root onto /")
        os.chroot(".")
    except (OSError, Fail) as e:
        log(f"leaving the initramfs: {e}")
        os.fchdir(ours)
        os.chroot(".")
    finally:
        os.chdir("/")
        os.close(ours)


def _climb_out(ours: int) -> None:
    """Leave our chroot (PID 1 has CAP_SYS_CHROOT): a root below the working
    directory, then up until ``..`` goes no higher."""
    os.mkdir("/.leaving", 0o700)
    os.chroot("/.leaving")
    os.fchdir(ours)
    os.rmdir(".leaving")
    for _ in range(16):
        os.chdir("..")
    os.chroot(".")


def _is_supermins(device: int) -> bool:
    """Whether we stand on supermin's initramfs, with our root mounted on /root."""
    try:
        return (_fs_type("/") in ROOTFS_MAGIC and os.path.ismount("/root")
                and os.stat("/root").st_dev == device)
    except (OSError, Fail):
        return False


def _fs_type(path: str) -> int:
    class Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]

    buf = Statfs()
    _check_libc(libc.statfs(path.encode(), ctypes.byref(buf)), f"statfs {path}")
    return int(buf.f_type) & 0xFFFFFFFF


def _remove(path: str, top: int) -> None:
    """Delete *path* of the initramfs (never crossing into another filesystem)."""
    st = os.lstat(path)
    if st.st_dev != top:
        return
    if stat.S_ISDIR(st.st_mode):
        for entry in os.scandir(path):
            _remove(f"{path}/{entry.name}", top)
        os.rmdir(path)
    else:
        os.unlink(path)
