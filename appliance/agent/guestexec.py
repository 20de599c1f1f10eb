"""Running the guest's own programs: ``command`` and ``sh``, as libguestfs runs them
(with the mounted guest filesystem as ``/``), for preparing images the way
virt-customize does.

This is guest code, and it runs here, inside the appliance, never on the host.
It runs in namespaces of its own, made for the one call, which end with it:

- a mount namespace whose root is the guest filesystem (remounted there, in that
  namespace only, to allow exec; still nosuid and nodev, so a device node the guest
  planted opens nothing), made its root with ``pivot_root`` and the appliance's own
  root detached (not ``chroot``, which a program walks out of), with a fresh
  ``/proc`` (``/proc/sys`` and ``/proc/sysrq-trigger`` read-only), a read-only
  ``/sys``, and a ``/dev`` of its own that holds null, zero, full, random, urandom
  and tty only (mode 0666): no slot's disk, not the appliance's root disk;
- a PID namespace (it sees only its own processes, not the agent), IPC, UTS and
  cgroup namespaces, and a network namespace with only a loopback interface, unless
  the caller asks for the appliance's network (``network=True``: its NICs, and
  through QEMU's user networking the host's loopback services too);
- one cgroup, limits, a few capabilities, a seccomp filter and no module autoload:
  see :mod:`.confine`.

Only a writable root mount runs guest programs (a read-only slot or mount is
refused), and each call has a time limit: when it passes, every process the call
started is killed (its cgroup) and the call fails saying so.  Whatever way it ends,
the call returns only once none of its processes is left.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import stat
import struct
import time

from .common import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, SYSROOT, Fail, libc
from .confine import (
    CallGroup,
    drop_capabilities,
    load_filter,
    module_autoload_off,
    restrict_process,
    seccomp_filter,
)
from .state import AgentBase

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 1
#: The devices a guest program gets: (name, major, minor).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
       "HOME": "/root", "TERM": "dumb"}
#: Output kept per stream; a program that writes more is stopped.
MAX_OUTPUT = 16 << 20
DEFAULT_TIMEOUT = 600.0


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    rc = libc.mount(source.encode() if source else None, target.encode(),
                    fstype.encode() if fstype else None, flags,
                    data.encode() if data else None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {target}: {os.strerror(e)}")


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_only(path: str) -> None:
    """Bind *path* onto itself, read-only (a guest program cannot remount it: it has
    no CAP_SYS_ADMIN)."""
    _mount(path, path, None, MS_BIND | MS_REC)
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _pivot_into(root: str) -> None:
    """Make the mount at *root* this mount namespace's ``/`` and detach the old one, so
    that nothing above the guest filesystem is left to walk up to."""
    os.chdir(root)
    if libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), b".", b".") != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"pivot_root {root}: {os.strerror(e)}")
    # the old root now sits on top of the new one, at "."
    if libc.umount2(b".", MNT_DETACH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"detaching the appliance's root: {os.strerror(e)}")
    os.chdir("/")


def _enter_guest(readonly: bool) -> None:
    """In the new namespaces: make the guest filesystem ``/`` with its own /proc,
    /sys and /dev, and drop the capabilities that reach past them."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount(None, SYSROOT, None,
           MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0))
    _pivot_into(SYSROOT)
    # mounted after the pivot: a guest's /proc or /dev that is a symlink is left alone
    # (checked with lstat, and resolved inside the guest root anyway)
    if _is_real_dir("/proc"):
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for path in ("/proc/sys", "/proc/sysrq-trigger"):  # sysrq: would stop the appliance
            if os.path.exists(path):
                _read_only(path)
    if _is_real_dir("/sys"):
        _mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if _is_real_dir("/dev"):
        _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1m")
        for name, major, minor in DEVICES:
            os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(f"/dev/{name}", 0o666)  # mknod's mode went through the umask
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"/dev/{name}")
        os.mkdir("/dev/shm", 0o1777)
        os.chmod("/dev/shm", 0o1777)


def _loopback_up() -> None:
    """Bring up ``lo`` of this (new) network namespace, its only interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _child(argv: list[str], group: CallGroup, network: bool, out_w: int, err_w: int,
           seccomp: object) -> None:
    """The forked child: into the call's cgroup, new namespaces, then the guest program
    as their PID 1.  Never returns."""
    code = 127
    try:
        group.join()  # first: nothing it starts is outside the group
        restrict_process()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
        if libc.unshare(flags | (0 if network else CLONE_NEWNET)) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        pid = os.fork()  # the first process of the new PID namespace
        if pid == 0:
            try:
                # dies with the process above (the cgroup is killed anyway)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                _enter_guest(False)
                if not network:
                    _loopback_up()
                drop_capabilities()
                load_filter(seccomp)
                os.execvpe(argv[0], argv, ENV)
            except OSError as e:
                os.write(2, f"guestslots: {argv[0]}: {e.strerror or e}\n".encode())
                os._exit(126 if e.errno == errno.EACCES else 127)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        code = rc if rc >= 0 else 128 - rc
    except BaseException as e:
        os.write(2, f"guestslots: cannot run in the guest: {e}\n".encode())
    os._exit(code)


class GuestExecCalls(AgentBase):
    """command and sh."""

    def call_command(self, arguments: list[str], timeout: float = DEFAULT_TIMEOUT,
                     network: bool = False) -> str:
        """Run *arguments* (a program of the guest and its arguments) with the guest
        filesystem as ``/``; its standard output, or Fail with its standard error when
        it exits with a status other than 0.  With *network*, in the appliance's
        network namespace instead of one of its own with loopback only."""
        if not isinstance(arguments, list) or not arguments or \
                not all(isinstance(a, str) and "\0" not in a for a in arguments):
            raise Fail("command: a program and its arguments are needed", errno.EINVAL)
        if not os.path.ismount(SYSROOT):
            raise Fail("no filesystem is mounted on /: call mount first", errno.ENOENT)
        if os.statvfs(SYSROOT).f_flag & os.ST_RDONLY:
            raise Fail("guest programs run only on a writable root mount (this one is "
                       "read-only)", errno.EROFS)
        what = " ".join(arguments)[:200]
        group = CallGroup()
        try:
            with module_autoload_off():
                status, problem, out, err = _run(arguments, group, bool(network),
                                                 float(timeout))
            if group.oom_killed():
                problem = (f"killed: out of memory (a guest program's processes may use "
                           f"{group.memory_max >> 20} MiB together)", errno.ENOMEM)
        finally:
            group.remove()
        if problem:
            raise Fail(f"{what}: {problem[0]}", problem[1])
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0:
            said = err.strip() or out.strip()
            raise Fail(f"{what}: exit status {rc}: {said[-2000:]}", errno.EIO)
        return out


Problem = tuple[str, int] | None


def _run(arguments: list[str], group: CallGroup, network: bool,
         timeout: float) -> tuple[int, Problem, str, str]:
    """Run the guest program in *group* until it ends, passes *timeout* or writes too
    much; then kill whatever of the group is left and wait for it.  (Its wait status,
    what stopped it (message, errno) or None, its standard output and error.)"""
    filter_ = seccomp_filter()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(arguments, group, network, out_w, err_w, filter_)
    os.close(out_w)
    os.close(err_w)
    outputs = {out_r: bytearray(), err_r: bytearray()}
    problem: Problem = None
    status = 0
    try:
        group.join(pid)  # in before the first kill could come, whatever the child did yet
        ended = os.pidfd_open(pid)
        try:
            deadline = time.monotonic() + timeout
            reading = [out_r, err_r]
            while not problem:
                left = deadline - time.monotonic()
                ready = select.select([*reading, ended], [], [], left)[0] if left > 0 else []
                if not ready:
                    problem = (f"no end in {timeout:g} s: stopped", errno.ETIMEDOUT)
                elif ended in ready:
                    break
                for fd in ready:
                    if not _read_into(outputs[fd], fd):
                        reading.remove(fd)  # closed, though the program may run on
                    elif len(outputs[fd]) > MAX_OUTPUT:
                        problem = (f"more than {MAX_OUTPUT >> 20} MiB of output: stopped",
                                   errno.EFBIG)
        finally:
            os.close(ended)
            group.kill()  # whatever it left running, or all of it
    finally:
        _, status = os.waitpid(pid, 0)
        for fd in (out_r, err_r):  # every writer is gone: what is left in the pipes
            os.set_blocking(fd, False)
            while len(outputs[fd]) <= MAX_OUTPUT and _read_into(outputs[fd], fd):
                pass
            os.close(fd)
    return (status, problem, outputs[out_r].decode("utf-8", "replace"),
            outputs[err_r].decode("utf-8", "replace"))


def _read_into(output: bytearray, fd: int) -> bool:
    """Append what pipe *fd* holds to *output*; False at its end (or, non-blocking,
    when it is empty)."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    output += chunk
    return bool(chunk)
