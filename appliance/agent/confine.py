"""What confines a guest program, beyond the namespaces :mod:`.guestexec` makes.

A guest's programs are attacker-controlled code when the image is untrusted, while
other slots of the same appliance hold other trust domains.  Each call of
``command`` / ``sh`` gets:

- **one cgroup (v2), killed whole**: every process the call starts is in it, and no
  guest process can leave it (``/sys/fs/cgroup`` is not mounted in the guest's
  mount namespace, and it has a cgroup namespace of its own).  When the program
  ends, is stopped at its time limit or writes too much, the agent writes
  ``cgroup.kill`` and waits until ``cgroup.events`` says ``populated 0``: the call
  returns only when nothing of it runs.  Clearing the parent-death signal, changing
  credentials or double forks change nothing.
- **limits** (:data:`MEMORY_SHARE`, :data:`PIDS_MAX`, :data:`CPU_SHARE`,
  :data:`CPU_WEIGHT`): ``memory.max`` with ``memory.oom.group`` (an out-of-memory
  kills the call's processes, never the agent, udevd or the kernel),
  ``pids.max`` (a fork bomb stops there), ``cpu.max`` and the lowest
  ``cpu.weight`` (the agent, and the kernel's work for other slots, come first).
- **only the capabilities in** :data:`KEPT_CAPS` (the bounding set is cut to them,
  so that the program's root has no others), ``no_new_privs``, no real-time
  scheduling (``RLIMIT_RTPRIO`` 0 and no ``CAP_SYS_NICE``), and an
  ``oom_score_adj`` of 1000 that it cannot lower (no ``CAP_SYS_RESOURCE``).
- **a seccomp filter** (:func:`load_filter`, libseccomp's own Python binding) for
  what no call needs: user namespaces, io_uring, the kernel's keyrings (one root
  keyring would carry keys across calls), socket families other than UNIX, INET,
  INET6 and NETLINK (routing only): no packet sockets, vsock, AF_ALG...
- **no module autoload** while it runs (:func:`module_autoload_off`): the kernel's
  modprobe helper is unset for the call, so no socket family, protocol, binary
  format or line discipline a program asks for loads a module.

The agent serves one call at a time, so one call's cgroup and the module switch are
never shared with another call.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import select
import time
from collections.abc import Iterator

from .common import MS_NODEV, MS_NOEXEC, MS_NOSUID, Fail, libc

CGROUP_FS = "/sys/fs/cgroup"
CONTROLLERS = ("cpu", "memory", "pids")
#: The share of the appliance's memory that one call's processes may use together.
MEMORY_SHARE = 0.5
#: The most processes (and threads) one call may have at once.
PIDS_MAX = 1024
#: The share of the appliance's CPUs one call may use (``cpu.max``).
CPU_SHARE = 0.9
#: ``cpu.weight`` of a call (1 to 10000; the agent's own is 100).
CPU_WEIGHT = 1
#: How long the call's processes get to die once killed (a process in a FUSE wait
#: dies when its request is aborted: see :mod:`.watchdog`).
KILL_WAIT = 10.0

#: The capabilities a guest program keeps, and why: ownership and permission changes
#: of the guest's files as root (dpkg, useradd, chown, chmod), running as the guest's
#: users (su, runuser), signals to its own processes (its PID namespace), immutable
#: and append-only flags (chattr), binding low ports in its own network namespace,
#: audit messages of login tools (no audit daemon reads them), file capabilities that
#: packages set (setcap), and dropping its own capabilities.  Every other one is
#: gone: mount, chroot, mknod, raw I/O, modules, ptrace, namespaces, raw sockets,
#: memory locking, real-time scheduling, resource limits and OOM protection, time,
#: network administration, BPF, perf, syslog...
KEPT_CAPS = {
    0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 3: "CAP_FOWNER", 4: "CAP_FSETID",
    5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 8: "CAP_SETPCAP",
    9: "CAP_LINUX_IMMUTABLE", 10: "CAP_NET_BIND_SERVICE", 29: "CAP_AUDIT_WRITE",
    31: "CAP_SETFCAP",
}

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER = 0x10000000
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
#: AF_MAX of Linux 6.1: families from here on do not exist (refused anyway).
AF_MAX = 46
NETLINK_ROUTE = 0
MODPROBE = "/proc/sys/kernel/modprobe"


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise Fail("/proc/meminfo has no MemTotal", errno.EIO)


def _cgroups_ready() -> None:
    """Mount cgroup2 (once) and give the root's children the controllers."""
    if not os.path.exists(f"{CGROUP_FS}/cgroup.controllers"):
        rc = libc.mount(b"cgroup2", CGROUP_FS.encode(), b"cgroup2",
                        MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        if rc != 0:
            e = ctypes.get_errno()
            raise Fail(f"cannot mount cgroup2 to confine guest programs: {os.strerror(e)}", e)
    enabled = _read(f"{CGROUP_FS}/cgroup.subtree_control").split()
    missing = [c for c in CONTROLLERS if c not in enabled]
    if missing:
        _write(f"{CGROUP_FS}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


class CallGroup:
    """The cgroup of one guest-program call (see the module's text)."""

    _made = 0

    def __init__(self) -> None:
        _cgroups_ready()
        CallGroup._made += 1
        # a new name each call: a group that could not be emptied is left behind
        self.path = f"{CGROUP_FS}/guest-call-{CallGroup._made}"
        os.mkdir(self.path, 0o700)
        self.memory_max = int(_mem_total() * MEMORY_SHARE) & ~0xFFFF
        period = 100_000
        quota = int(period * CPU_SHARE * (os.cpu_count() or 1))
        for name, value in (("memory.max", str(self.memory_max)),
                            ("memory.oom.group", "1"),
                            ("pids.max", str(PIDS_MAX)),
                            ("cpu.max", f"{quota} {period}"),
                            ("cpu.weight", str(CPU_WEIGHT))):
            _write(f"{self.path}/{name}", value)
        with contextlib.suppress(FileNotFoundError):  # a kernel without swap accounting
            _write(f"{self.path}/memory.swap.max", "0")

    def join(self, pid: int = 0) -> None:
        """Put process *pid* (0: the caller) into the group."""
        _write(f"{self.path}/cgroup.procs", str(pid))

    def populated(self) -> bool:
        return "populated 1" in _read(f"{self.path}/cgroup.events")

    def kill(self) -> None:
        """Kill every process of the group and wait until none is left (Fail if one
        outlives :data:`KILL_WAIT`)."""
        _write(f"{self.path}/cgroup.kill", "1")
        deadline = time.monotonic() + KILL_WAIT
        fd = os.open(f"{self.path}/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            while b"populated 0" not in os.pread(fd, 4096, 0):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail(f"a guest program's processes did not end {KILL_WAIT:g} s "
                               "after they were killed", errno.EBUSY)
                poller.poll(left * 1000)  # cgroup.events changed, or the time is up
        finally:
            os.close(fd)

    def oom_killed(self) -> bool:
        """Whether the group ran out of memory and was killed for it."""
        for line in _read(f"{self.path}/memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key in ("oom_kill", "oom_group_kill") and int(value) > 0:
                return True
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


@contextlib.contextmanager
def module_autoload_off() -> Iterator[None]:
    """No kernel module is loaded on demand inside the block (the kernel does not call
    a modprobe helper whose path is empty)."""
    saved = _read(MODPROBE).strip()
    _write(MODPROBE, "\n")
    try:
        yield
    finally:
        _write(MODPROBE, saved + "\n")


def restrict_process() -> None:
    """In the child, before anything of the guest runs: first in line for the OOM
    killer, no real-time priority."""
    _write("/proc/self/oom_score_adj", "1000")
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))


def drop_capabilities() -> None:
    """Cut the bounding set to :data:`KEPT_CAPS`: the program exec'd next (as root, or
    anything it runs) gets no other capability."""
    last = int(_read("/proc/sys/kernel/cap_last_cap"))
    for cap in range(last + 1):
        if cap not in KEPT_CAPS and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"dropping capability {cap}: {os.strerror(e)}")


_filter: object = None


def seccomp_filter() -> object:
    """The seccomp filter for guest programs (see :func:`load_filter`), built once, in
    the agent: the child that loads it no longer sees the appliance's files."""
    global _filter
    if _filter is None:
        _filter = _build_filter()
    return _filter


def load_filter(built: object) -> None:
    """Load filter *built* (:func:`seccomp_filter`) for this process and everything it
    runs, with ``no_new_privs`` set (the filter needs it).  Refused calls fail as a
    kernel without the feature fails them, so programs take their fallbacks."""
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    built.load()  # type: ignore[attr-defined]


def _build_filter() -> object:
    """What no call needs: user namespaces, io_uring, the kernel's keyrings, socket
    families other than UNIX, INET, INET6 and NETLINK, and netlink other than
    routing."""
    try:
        import seccomp  # type: ignore[import-not-found]  # Debian's python3-seccomp
    except ImportError:
        raise Fail("guest programs need seccomp, and this appliance lacks python3-seccomp "
                   "(install it on the host; the appliance is then built again)",
                   errno.ENOSYS) from None
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for arch in (seccomp.Arch.X86, seccomp.Arch.X32):  # 32-bit programs of the guest
        with contextlib.suppress(Exception):
            f.add_arch(arch)
    refused = seccomp.ERRNO(errno.ENOSYS)
    for name in ("keyctl", "add_key", "request_key",
                 "io_uring_setup", "io_uring_enter", "io_uring_register",
                 "clone3"):  # clone3's flags are out of a filter's reach: libc falls back
        f.add_rule(refused, name)
    new_user = seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    for name in ("clone", "unshare"):
        f.add_rule(seccomp.ERRNO(errno.EPERM), name, new_user)
    no_family = seccomp.ERRNO(errno.EAFNOSUPPORT)
    for name in ("socket", "socketpair"):
        for family in range(AF_MAX):
            if family not in (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK):
                f.add_rule(no_family, name, seccomp.Arg(0, seccomp.EQ, family))
        f.add_rule(no_family, name, seccomp.Arg(0, seccomp.GE, AF_MAX))
    f.add_rule(seccomp.ERRNO(errno.EPROTONOSUPPORT), "socket",
               seccomp.Arg(0, seccomp.EQ, AF_NETLINK),
               seccomp.Arg(2, seccomp.NE, NETLINK_ROUTE))
    return f
