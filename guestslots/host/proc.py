"""One helper for every host subprocess guestslots runs (not QEMU itself).

It logs the command line and turns each way of failing (not found, killed by a
signal, non-zero exit, too slow) into one exception that says which.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A helper command failed; the message says how, with the tail of its output."""

    def __init__(self, command: Sequence[str], reason: str, output: str = "") -> None:
        self.command = list(command)
        self.reason = reason
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(f"{shlex.join(command)}: {reason}" + (f"\n{tail}" if tail else ""))


def run(
    command: Sequence[str],
    *,
    timeout: float = 600,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input: str | None = None,
) -> str:
    """Run *command*, return its stdout; raise :class:`CommandError` on any failure."""
    log.debug("running %s", shlex.join(command))
    try:
        proc = subprocess.run(
            list(command),
            stdin=None if input is not None else subprocess.DEVNULL,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError:
        raise CommandError(command, "command not found (run ./tools/setup)") from None
    except subprocess.TimeoutExpired as e:
        out = e.stderr if isinstance(e.stderr, str) else ""
        raise CommandError(command, f"timed out after {timeout:g} s", out) from None
    if proc.returncode < 0:
        raise CommandError(command, f"killed by signal {-proc.returncode}", proc.stderr)
    if proc.returncode != 0:
        raise CommandError(command, f"exit status {proc.returncode}", proc.stderr + proc.stdout)
    return proc.stdout


def signal_process(pid: int, sig: int, wait: float | None = None) -> bool:
    """Send *sig* to process *pid* through a pidfd (never to a process that reused the
    pid meanwhile); with *wait*, wait that long for it to exit.  Returns whether it is
    gone (without *wait*: whether it was gone already)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone (ProcessLookupError), or not ours to see
        return True
    try:
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            return True
        return bool(select.select([pidfd], [], [], wait)[0]) if wait is not None else False
    finally:
        os.close(pidfd)
