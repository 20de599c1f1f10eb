"""Mounting guest filesystems under the appliance's /sysroot (the host's
``guest/mounts`` pairs with this): ``nodev,nosuid,noexec`` always, ext*
``errors=remount-ro``."""

from __future__ import annotations

import errno
import os
import select
import subprocess
import time

from .blockdev import (
    block_name,
    canonical,
    diskseq,
    holders,
    partitions_of,
    resolve_device,
    slot_disks_under,
    stacked_on,
)
from .common import (
    BTRFSVOL,
    ERRORS_OPTION_FS,
    MS_GUEST,
    MS_RDONLY,
    SYSROOT,
    TOOL_ENV,
    TOOL_TIMEOUT,
    UMOUNT_NOFOLLOW,
    Fail,
    _check_libc,
    check_path,
    libc,
)
from .mountinfo import mountinfo
from .state import AgentBase

#: Filesystems the kernel cannot mount, served by a FUSE daemon (Debian's kernel has
#: no NTFS driver; libguestfs mounts NTFS with ntfs-3g too).
FUSE_MOUNTERS = {"ntfs": "/usr/bin/ntfs-3g"}
_FUSE_REFUSED = frozenset({"ro", "rw", "dev", "suid", "exec"})


def check_unused(names: list[str]) -> None:
    """Refuse (EBUSY, saying why) when any of block devices *names* is mounted, or
    something is stacked on it (an LV, an array, running or not)."""
    stack = stacked_on(names)
    busy = [f"{src} is mounted on {mp}" for mp, src, name in guest_mounts()
            if name in names or name in stack]
    busy += [f"/dev/{n} is held by {canonical(h)}" for n in names for h in holders(n)]
    if busy:
        raise Fail(f"in use: {'; '.join(busy)}", errno.EBUSY)


def real_mountpoint(api: str) -> str:
    """Where guest mount point *api* is in the appliance."""
    return SYSROOT if api == "/" else SYSROOT + api


def api_mountpoint(real: str) -> str | None:
    if real == SYSROOT:
        return "/"
    if real.startswith(SYSROOT + "/"):
        return real[len(SYSROOT) :]
    return None


def guest_mounts() -> list[tuple[str, str, str | None]]:
    """(API mount point, API name of what is mounted, kernel name of its device) of the
    mounts under /sysroot.  The device comes from the source, not the mount's device
    number (btrfs mounts have an anonymous one); a btrfs subvolume is named
    ``btrfsvol:DEVICE/PATH``, as list_filesystems names it."""
    out = []
    for real, source, root, fstype in mountinfo():
        api = api_mountpoint(real)
        if api is None:
            continue
        name = block_name(source) if source.startswith("/dev/") else None
        shown = canonical(name) if name is not None else source
        if fstype == "btrfs" and root != "/":
            shown = f"{BTRFSVOL}{shown}/{root.strip('/')}"
        out.append((api, shown, name))
    return out


class MountCalls(AgentBase):
    """Mounting and unmounting guest filesystems."""


    def check_writable(self, name: str) -> bool:
        """Whether block device *name* is on writable slots only (False: some slot disk
        under it, even under an LV or array, was plugged read-only)."""
        return not any(f"{d}@{diskseq(d)}" in self.readonly_disks
                       for d in slot_disks_under(name) or ())

    def require_writable(self, name: str, consequence: str = "nothing is written to it") -> None:
        """Refuse (EROFS) block device *name* when it is on a slot plugged read-only:
        writes there would land in a throwaway overlay, so they are refused, not lost."""
        if not self.check_writable(name):
            raise Fail(f"{canonical(name)} is on a slot plugged read-only: {consequence}",
                       errno.EROFS)

    def writable_device(self, device: str, unused: bool = True) -> str:
        """Kernel name of *device*, which must be on writable slots and (with
        *unused*) neither mounted nor holding anything (nor may its partitions)."""
        name = resolve_device(device)
        self.require_writable(name)
        if unused:
            parts = partitions_of(name) if os.path.isdir(f"/sys/block/{name}") else []
            check_unused([name, *parts])
        return name

    def call_mount(
        self,
        device: str,
        mountpoint: str,
        readonly: bool | None = False,
        options: str = "",
        fstype: str = "",
        subvolume: str = "",
    ) -> None:
        """Mount *device* (its btrfs *subvolume*, if given) on *mountpoint*.  *readonly*
        None: read-only if it is on a read-only slot; False: refused if it is."""
        name = resolve_device(device)
        check_path(mountpoint)
        if not readonly and not self.check_writable(name):
            if readonly is False:
                raise Fail(f"{canonical(name)} is on a slot plugged read-only: use mount_ro, or "
                           "hotplug it with readonly=False", errno.EROFS)
            readonly = True
        if subvolume:
            options = ",".join(o for o in (options, f"subvol={subvolume}") if o)
            fstype = fstype or "btrfs"
        if not fstype:
            fstype = self.blkid.probe(f"/dev/{name}").get("TYPE", "")
            if not fstype:
                raise Fail(f"/dev/{name}: no filesystem found", errno.EINVAL)
        if fstype in ERRORS_OPTION_FS and not any(
                o.startswith("errors=") for o in options.split(",")):
            options = ",".join(o for o in (options, "errors=remount-ro") if o)
        flags = (MS_RDONLY if readonly else 0) | MS_GUEST
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
            if fstype in FUSE_MOUNTERS:
                self.fuse_mount(name, fstype, target, fd, bool(readonly), options)
                return
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

    def fuse_mount(self, name: str, fstype: str, target: str, fd: int | None,
                   readonly: bool, options: str) -> None:
        """Mount /dev/*name* on *target* with its FUSE daemon (ntfs-3g), in the
        foreground of a child the agent keeps, so that its end is seen, and wait
        for the mount table to show the mount (or the daemon to fail)."""
        program = FUSE_MOUNTERS[fstype]
        if not os.path.exists(program):
            raise Fail(f"/dev/{name}: {fstype} needs {program}, not in this appliance",
                       errno.ENOSYS)
        # the caller's options, less any that would undo read-only, nodev, nosuid, noexec
        opts = ["ro" if readonly else "rw", "nodev", "nosuid", "noexec", "no_detach",
                *(o for o in options.split(",") if o and o not in _FUSE_REFUSED)]
        real = os.readlink(target) if fd is not None else target
        with open("/proc/self/mountinfo") as table, \
                open(f"/tmp/{os.path.basename(program)}-{name}.log", "w+") as log_file:
            proc = subprocess.Popen(
                [program, "-o", ",".join(opts), f"/dev/{name}", target], env=TOOL_ENV,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                pass_fds=() if fd is None else (fd,))
            pidfd = os.pidfd_open(proc.pid)
            try:
                poller = select.poll()
                poller.register(table, select.POLLPRI | select.POLLERR)
                poller.register(pidfd, select.POLLIN)
                deadline = time.monotonic() + TOOL_TIMEOUT
                while not any(mp == real and src == f"/dev/{name}"
                              for mp, src, _root, _t in mountinfo()):
                    left = deadline - time.monotonic()
                    if proc.poll() is not None or left <= 0 or not poller.poll(left * 1000):
                        if proc.poll() is None:
                            proc.kill()
                        proc.wait()
                        log_file.seek(0)
                        said = " ".join(line.strip() for line in log_file.read().splitlines()
                                        if line.strip() and "Version" not in line)[-400:]
                        raise Fail(f"mount /dev/{name} on {api_mountpoint(real) or real} "
                                   f"({fstype}): {said or 'failed'}", errno.EINVAL)
                    table.seek(0)
                    table.read()  # re-arm POLLPRI
            finally:
                os.close(pidfd)
        self.fuse_daemons[real] = proc

    def unmount(self, api: str) -> None:
        """Unmount guest mount point *api*; a FUSE mount's daemon is waited for (it
        writes back and ends when its filesystem is unmounted)."""
        real = real_mountpoint(api)
        self.close_hive()  # a hive is a mapped guest file: its mount would be busy
        if api == "/":
            _check_libc(libc.umount2(SYSROOT.encode(), UMOUNT_NOFOLLOW), "umount /")
        else:
            # named inside the guest root, the last component not followed: whatever
            # the guest's directories say, only a mount in the guest root is undone
            with self.root.inside():
                _check_libc(libc.umount2(api.encode(), UMOUNT_NOFOLLOW), f"umount {api}")
        daemon = self.fuse_daemons.pop(real, None)
        if daemon is not None:
            try:
                daemon.wait(TOOL_TIMEOUT)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()

    def call_umount(self, mountpoint: str) -> None:
        check_path(mountpoint)
        mp = os.path.normpath(mountpoint)
        for api, _src, _dev in reversed(guest_mounts()):
            if api == mp:
                self.unmount(api)
                return
        raise Fail(f"{mountpoint}: not a mount point", errno.EINVAL)

    def call_umount_all(self) -> None:
        for api, _src, _dev in reversed(guest_mounts()):
            self.unmount(api)
        os.sync()

    def call_mounts(self) -> list[list[str]]:
        return [[src, api] for api, src, _name in guest_mounts()]
