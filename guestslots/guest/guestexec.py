"""Guest calls that run the guest's own programs: command, command-lines, sh,
sh-lines (libguestfs's names and meanings).

Guest code runs inside the appliance only, never on the host, with the guest
filesystem as ``/`` in namespaces made for the call: its own ``/proc``, a read-only
``/sys``, a ``/dev`` with only null, zero, full, random, urandom and tty (no disk
of any slot), its own process IDs, and without the capabilities to mount, make
device nodes, load modules or do raw I/O.  Only on a writable root mount, and with
a time limit (default 600 s) after which every process it started is killed.
Paired with the agent's ``guestexec`` area.
"""

from __future__ import annotations

from .base import GuestCalls, serialised

DEFAULT_TIMEOUT = 600.0


class GuestExecCalls(GuestCalls):
    """command and sh: guest programs, with the guest filesystem as /."""

    @serialised
    def command(self, arguments: list[str], timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run the guest's program *arguments* [0] with the rest as its arguments, the
        mounted guest filesystem as ``/``; return its standard output.  A non-zero exit
        status is an error with its standard error.  Runs inside the appliance only,
        on a writable root mount only, for at most *timeout* seconds."""
        return str(self._call("command", wait_for=float(timeout) + 30,
                              arguments=list(arguments), timeout=float(timeout)))

    def command_lines(self, arguments: list[str],
                      timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """As :meth:`command`, its output split into lines."""
        return self.command(arguments, timeout).splitlines()

    def sh(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run *command* with the guest's ``/bin/sh -c``, as :meth:`command` runs a
        program."""
        return self.command(["/bin/sh", "-c", command], timeout)

    def sh_lines(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """As :meth:`sh`, its output split into lines."""
        return self.sh(command, timeout).splitlines()
