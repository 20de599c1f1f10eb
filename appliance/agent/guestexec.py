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
  and tty only: no slot's disk, not the appliance's root disk;
- a PID namespace (it sees only its own processes, not the agent), and IPC and UTS
  namespaces;
- without the capabilities that could reach past that (mount, chroot, mknod, raw
  I/O, open by file handle, modules, ptrace, reboot, time, network administration,
  syslog, BPF, perf).

Only a writable root mount runs guest programs (a read-only slot or mount is
refused), and each call has a time limit: when it passes, every process the call
started is killed (its PID namespace ends) and the call fails saying so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import stat
import time

from .common import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, SYSROOT, AgentBase, Fail, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64
#: CAP_DAC_READ_SEARCH (open_by_handle_at reaches any file of a mounted filesystem),
#: CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_CHROOT (a chroot of one's
#: own walks out of the one it is in), CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_BOOT,
#: CAP_SYS_TIME, CAP_MKNOD, CAP_MAC_OVERRIDE, CAP_MAC_ADMIN, CAP_SYSLOG,
#: CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND, CAP_AUDIT_READ, CAP_PERFMON, CAP_BPF
DROPPED_CAPS = (2, 12, 16, 17, 18, 19, 21, 22, 25, 27, 32, 33, 34, 35, 36, 37, 38, 39)
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
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"/dev/{name}")
        os.mkdir("/dev/shm", 0o1777)
        os.chmod("/dev/shm", 0o1777)
    for cap in DROPPED_CAPS:
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def _child(argv: list[str], readonly: bool, out_w: int, err_w: int) -> None:
    """The forked child: new namespaces, then the guest program as their PID 1's
    child.  Never returns."""
    code = 127
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        pid = os.fork()  # the first process of the new PID namespace
        if pid == 0:
            try:
                # dies with the process above (killed at the time limit), and with it
                # every process of the namespace
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                _enter_guest(readonly)
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

    def call_command(self, arguments: list[str], timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run *arguments* (a program of the guest and its arguments) with the guest
        filesystem as ``/``; its standard output, or Fail with its standard error when
        it exits with a status other than 0."""
        if not isinstance(arguments, list) or not arguments or \
                not all(isinstance(a, str) and "\0" not in a for a in arguments):
            raise Fail("command: a program and its arguments are needed", errno.EINVAL)
        if not os.path.ismount(SYSROOT):
            raise Fail("no filesystem is mounted on /: call mount first", errno.ENOENT)
        if os.statvfs(SYSROOT).f_flag & os.ST_RDONLY:
            raise Fail("guest programs run only on a writable root mount (this one is "
                       "read-only)", errno.EROFS)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child(arguments, False, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        outputs = {out_r: bytearray(), err_r: bytearray()}
        reading = [out_r, err_r]
        deadline = time.monotonic() + float(timeout)
        problem = ""
        try:
            while reading and not problem:
                left = deadline - time.monotonic()
                ready = select.select(reading, [], [], left)[0] if left > 0 else []
                if not ready:
                    problem = f"no end in {float(timeout):g} s: stopped"
                for fd in ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        reading.remove(fd)
                    outputs[fd] += chunk
                    if len(outputs[fd]) > MAX_OUTPUT:
                        problem = f"more than {MAX_OUTPUT >> 20} MiB of output: stopped"
        finally:
            if problem:
                os.kill(pid, signal.SIGKILL)  # its namespace's first process dies with it
            _, status = os.waitpid(pid, 0)
            os.close(out_r)
            os.close(err_r)
        out = outputs[out_r].decode("utf-8", "replace")
        err = outputs[err_r].decode("utf-8", "replace")
        what = " ".join(arguments)[:200]
        if problem:
            raise Fail(f"{what}: {problem}", errno.ETIMEDOUT)
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0:
            said = err.strip() or out.strip()
            raise Fail(f"{what}: exit status {rc}: {said[-2000:]}", errno.EIO)
        return out
