"""Guest calls that run the guest's own programs: command, command-lines, sh,
sh-lines (libguestfs's names and meanings).

Guest code runs inside the appliance only, never on the host, with the guest
filesystem as ``/`` in namespaces made for the call: its own ``/proc``, a read-only
``/sys``, a ``/dev`` with only null, zero, full, random, urandom and tty (no disk
of any slot), its own process IDs, and a network of its own with loopback only
unless ``network=True``.  All of its processes are in one cgroup with memory,
process and CPU limits, killed whole when the call ends: nothing it started runs
after the call returns.  It keeps a few capabilities (no mount, device nodes,
modules, raw I/O or sockets, real-time priority or OOM protection), runs under a
seccomp filter (no user namespaces, io_uring, keyrings or unusual socket families)
and cannot make the kernel load a module.  Only on a writable root mount, and with
a time limit (default 600 s).  Paired with the agent's ``guestexec`` and
``confine`` areas.
"""

from __future__ import annotations

from .base import GuestCalls, serialised

DEFAULT_TIMEOUT = 600.0


class GuestExecCalls(GuestCalls):
    """command and sh: guest programs, with the guest filesystem as /."""

    @serialised
    def command(self, arguments: list[str], timeout: float = DEFAULT_TIMEOUT,
                network: bool = False) -> str:
        """Run the guest's program *arguments* [0] with the rest as its arguments, the
        mounted guest filesystem as ``/``; return its standard output.  A non-zero exit
        status is an error with its standard error.  Runs inside the appliance only,
        on a writable root mount only, for at most *timeout* seconds; every process it
        started is gone when the call returns.  Its network is loopback only; with
        *network* true it shares the appliance's NICs (add_nic), and through QEMU's
        user networking it can then reach services the host has on 127.0.0.1."""
        return str(self._call("command", wait_for=float(timeout) + 30,
                              arguments=list(arguments), timeout=float(timeout),
                              network=bool(network)))

    def command_lines(self, arguments: list[str], timeout: float = DEFAULT_TIMEOUT,
                      network: bool = False) -> list[str]:
        """As :meth:`command`, its output split into lines."""
        return self.command(arguments, timeout, network).splitlines()

    def sh(self, command: str, timeout: float = DEFAULT_TIMEOUT,
           network: bool = False) -> str:
        """Run *command* with the guest's ``/bin/sh -c``, as :meth:`command` runs a
        program."""
        return self.command(["/bin/sh", "-c", command], timeout, network)

    def sh_lines(self, command: str, timeout: float = DEFAULT_TIMEOUT,
                 network: bool = False) -> list[str]:
        """As :meth:`sh`, its output split into lines."""
        return self.sh(command, timeout, network).splitlines()
