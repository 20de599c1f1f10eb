"""The QEMU backend's process: one QEMU, driven over QMP with ``qemu.qmp``.

QMP is asynchronous (events arrive while commands run), so each machine owns
a private asyncio loop on its own thread, and the synchronous API submits
coroutines to it.  QEMU is spawned from that thread with
``PR_SET_PDEATHSIG=SIGKILL``: if the calling process dies, for any reason,
QEMU dies with it.

The backend only carries out: the slot table decides what may be plugged
where, :mod:`guestslots.qmpargs` builds every argument.  What a running QEMU
does is split by area, each a class deriving from the one before:
:class:`MachineProcess` (this module: the process, its loop and QMP session, the
agent socket) <- :mod:`.disks` <- :mod:`.devices` (vCPUs, NICs) <- :mod:`.jobs`
(block jobs: exports, snapshots) <- :mod:`.migration` (saved state, live
migration) <- :class:`~.machine.QemuMachine`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import select
import shlex
import signal
import socket
import subprocess
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, Message, QMPClient, QMPError

from ...errors import LaunchError, QemuError, QemuTimeout, QMPCommandError
from ..common import connect_agent, log_tail
from .qmpargs import (
    MachineConfig,
    qemu_command,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a QEMU whose monitor connection ended may take to exit: it closes its
#: sockets as it exits, a little before the kernel reports the process gone.
LOST_EXIT_TIMEOUT = 5.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def event_data(event: Message) -> dict[str, Any]:
    """An event's data (empty if it has none)."""
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def of_jobs(jobs: Sequence[str]) -> Callable[[Message], bool]:
    """A listener filter: block job events of *jobs*."""
    return lambda event: event_data(event).get("device") in jobs


class Detached:
    """A detached QEMU process, with what :class:`QemuMachine` uses of
    ``asyncio.subprocess.Process``: one this process started (*child*; asyncio's
    child watcher is not told of it, as it may outlive the event loop), or one it
    attached to (its exit status is not this process's to know: -1 once gone)."""

    def __init__(self, pid: int, child: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._child = child
        self._pidfd = os.pidfd_open(pid)

    @property
    def returncode(self) -> int | None:
        if self._child is not None:
            return self._child.poll()
        if self._pidfd < 0:
            return -1  # let go of (:meth:`close`): not this process's any more
        ready, _, _ = select.select([self._pidfd], [], [], 0)
        return -1 if ready else None

    def close(self) -> None:
        """Let go of the process (it runs on): close the descriptor that watched it."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    async def wait(self) -> int:
        if self.returncode is None:
            loop = asyncio.get_running_loop()
            gone: asyncio.Future[None] = loop.create_future()

            def exited() -> None:
                if not gone.done():
                    gone.set_result(None)

            loop.add_reader(self._pidfd, exited)
            try:
                await gone
            finally:
                loop.remove_reader(self._pidfd)
        code = self.returncode
        return -1 if code is None else code

    def kill(self) -> None:
        if self._pidfd >= 0:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


def _quiet_lost_connection(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """This machine's loop's handler of errors nobody awaited: qemu.qmp's reader of a
    QEMU that died (EOF) holds the error until the session is closed, and an
    ``Appliance`` dropped without ``shutdown()`` never closes it, so Python would print
    "exception was never retrieved" with a traceback at exit.  The death is reported
    to whoever calls the appliance; here it is only logged."""
    if isinstance(context.get("exception"), (EOFError, ConnectionError)):
        log.debug("QMP: %s: %r", context.get("message"), context.get("exception"))
        return
    loop.default_exception_handler(context)


class MachineProcess:
    """A running QEMU: its process, its QMP session, and the agent socket it connected."""

    def __init__(self, cfg: MachineConfig, workdir: Path, incoming: bool = False,
                 owner: str = "0", log_name: str = "qemu.log",
                 hold_fds: tuple[int, ...] = ()) -> None:
        self.cfg = cfg
        #: The appliance id in every device id (:mod:`guestslots.model.ids`).
        self.owner = owner
        self.workdir = workdir
        self.incoming = incoming
        self.command = qemu_command(cfg, incoming)
        self.qemu_log = workdir / log_name
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_lost_connection)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="guestslots-qemu", daemon=True
        )
        self._thread.start()
        self._proc: asyncio.subprocess.Process | Detached | None = None
        #: Descriptors QEMU inherits (the work directory's lock, for a detached QEMU).
        self.hold_fds = hold_fds
        self._qmp = QMPClient("guestslots")
        # The default listener keeps every event forever and cannot be removed:
        # make it accept none; calls that wait for an event register their own.
        self._qmp.events.event_filter = lambda _event: False
        self.agent_sock: socket.socket | None = None
        #: Slots whose last attach or detach was abandoned (QEMU did not answer in
        #: time): QEMU may still carry it out, so the slot is cleaned before its next use.
        self._unsure: set[int] = set()
        #: Each slot's external snapshot overlays (their format node names, oldest
        #: first): the device's disk is the last; unplug removes them top down.
        self._chains: dict[int, list[str]] = {}
        #: Slots whose source has a ``tls-creds-x509`` object of its own (``nbds``).
        self._tls: set[int] = set()

    # ---- plumbing

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None,
             what: str = "") -> T:
        """Run *coro* on the QMP loop; past *timeout* it is cancelled and
        :class:`QemuTimeout` names *what* was awaited."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise QemuTimeout(
                f"{what or 'a QMP call'}: QEMU did not answer in {timeout:g} s "
                "(is it stopped or overloaded?)",
                exitcode=self.exitcode, command=self.command, log_tail=self.log_tail(),
            ) from None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exitcode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def log_tail(self) -> str:
        parts = []
        qemu = log_tail(self.qemu_log, 10)
        if qemu:
            parts.append("[qemu] " + qemu.replace("\n", "\n[qemu] "))
        console = log_tail(Path(self.cfg.console_log), 20)
        if console:
            parts.append("[console] " + console.replace("\n", "\n[console] "))
        return "\n".join(parts)

    def error(self, message: str, cls: type[QemuError] = QemuError) -> QemuError:
        return cls(message, exitcode=self.exitcode, command=self.command, log_tail=self.log_tail())

    # ---- lifecycle

    def start(self, timeout: float = 30.0) -> socket.socket:
        """Start QEMU, accept its QMP and agent connections; return the agent socket.

        A detached QEMU (``cfg.detached``) is handed the two sockets listening instead
        and serves them: this process connects to them as any later one does.  On any
        failure QEMU is killed and :class:`LaunchError` says why, with QEMU's exit
        status, command line and log tail.
        """
        if self.cfg.detached:
            return self._start_detached(timeout)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.cfg.agent_socket)
            listener.listen(1)
            self._run(self._start(timeout, self._qmp.start_server(self.cfg.qmp_socket),
                                  self._qmp.accept))
            # QEMU opened its chardevs before it served QMP: the agent
            # connection is already waiting in the backlog.
            listener.settimeout(timeout)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise self.error("QEMU did not connect the agent channel", LaunchError) from None
            self.agent_sock = conn
            return conn
        except BaseException:
            self.kill()
            raise
        finally:
            listener.close()

    def _start_detached(self, timeout: float) -> socket.socket:
        listeners = []
        try:
            for path in (self.cfg.qmp_socket, self.cfg.agent_socket):
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listeners.append(listener)
                listener.bind(path)
                listener.listen(1)
            fds = (listeners[0].fileno(), listeners[1].fileno())
            self.command = qemu_command(self.cfg, self.incoming, listening=fds)
            self.hold_fds = (*self.hold_fds, *fds)
            self._run(self._start(timeout, None, self._connect_qmp))
            return self._connect_agent(timeout)
        except BaseException:
            self.kill()
            raise
        finally:
            for listener in listeners:  # QEMU has them now
                listener.close()

    async def _connect_qmp(self) -> None:
        await self._qmp.connect(self.cfg.qmp_socket)

    def _connect_agent(self, timeout: float) -> socket.socket:
        try:
            conn = connect_agent(self.cfg.agent_socket, timeout)
        except OSError as e:
            raise self.error(f"cannot connect to the agent channel: {e}", LaunchError) \
                from None
        self.agent_sock = conn
        return conn

    async def _start(self, timeout: float, listen: Awaitable[None] | None,
                     connect: Callable[[], Awaitable[None]]) -> None:
        if listen is not None:
            await listen
        log.debug("starting %s", shlex.join(self.command))
        with open(self.qemu_log, "wb") as logf:
            try:
                if self.cfg.detached:  # outlives this process, in a session of its own
                    child = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=logf, start_new_session=True,
                                             pass_fds=self.hold_fds)
                    self._proc = Detached(child.pid, child)
                else:
                    self._proc = await asyncio.create_subprocess_exec(
                        *self.command,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=logf,
                        stderr=logf,
                        preexec_fn=_die_with_parent,
                    )
            except OSError as e:
                raise LaunchError(
                    f"cannot run {self.command[0]}: {e.strerror}", command=self.command
                ) from None
        accept = asyncio.ensure_future(connect())
        died = asyncio.ensure_future(self._proc.wait())
        done, _ = await asyncio.wait(
            {accept, died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if accept not in done:
            accept.cancel()
            with contextlib.suppress(BaseException):
                await accept
            if died in done:
                raise self.error("QEMU exited during start-up", LaunchError)
            raise self.error(f"QEMU did not connect to QMP in {timeout:g} s", LaunchError)
        if accept.exception() is not None:  # QEMU closed QMP before its greeting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(died, 5)
            if died.done():
                raise self.error("QEMU exited during start-up", LaunchError) from None
            raise self.error(f"QEMU's QMP session failed: {accept.exception()}",
                             LaunchError) from None
        died.cancel()

    def adopt(self, pid: int, timeout: float = 10.0) -> socket.socket:
        """Take over detached QEMU *pid*, which another process started: connect to the
        QMP and agent sockets it serves (one client at a time); return the agent
        socket.  :class:`LaunchError` if it does not answer (gone, or another process
        is connected)."""
        try:
            self._proc = Detached(pid)
        except ProcessLookupError:
            raise self.error(f"QEMU (pid {pid}) is gone", LaunchError) from None
        try:
            try:
                self._run(self._qmp.connect(self.cfg.qmp_socket), timeout,
                          "QEMU's QMP greeting")
            except QemuTimeout:
                raise self.error(f"QEMU (pid {pid}) did not greet on QMP in {timeout:g} s "
                                 "(is another process attached?)", LaunchError) from None
            except OSError as e:
                raise self.error(f"cannot connect to QEMU (pid {pid}): {e}", LaunchError) \
                    from None
            return self._connect_agent(timeout)
        except BaseException:
            self.close()  # QEMU runs on: it is not this process's to stop
            raise

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to *timeout* for QEMU to exit; return its status, or None."""
        if self._proc is None or self._proc.returncode is not None or self._loop.is_closed():
            return self.exitcode

        async def wait() -> int | None:
            assert self._proc is not None
            try:
                return await asyncio.wait_for(self._proc.wait(), timeout)
            except TimeoutError:
                return None

        return self._run(wait())

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop QEMU: wait for the guest to power off, then ``quit``, then SIGKILL."""
        try:
            running = self._proc is not None and self._proc.returncode is None
            if running and self.wait_exit(timeout) is None:
                with contextlib.suppress(Exception):
                    self._run(self._qmp.execute("quit"), timeout=5)
                if self.wait_exit(5) is None:
                    self.kill()
        finally:
            self.close()

    def kill(self) -> None:
        """Kill QEMU now (no-op if it already exited) and release everything."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self.wait_exit(10)
        self.close()

    def close(self) -> None:
        if self.agent_sock is not None:
            self.agent_sock.close()
            self.agent_sock = None
        if isinstance(self._proc, Detached):
            self._proc.close()
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._run(self._qmp.disconnect(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ---- QMP

    async def _execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await self._qmp.execute(command, args)
        except ExecuteError as e:
            raise QMPCommandError(command, args or {}, e.error_class, str(e)) from None
        except QMPError as e:
            await self._lost()
            raise self.error(f"QMP {command}: connection to QEMU lost ({e})") from None

    async def _lost(self) -> None:
        """The monitor connection ended under a command: QEMU is exiting (it closes its
        sockets before the kernel reports it gone, and under load that gap is long
        enough for the caller to find it still running).  Wait a little for its end,
        so that the caller's check finds it gone.  (One that runs on is left to the
        caller: a detached QEMU is not this process's to kill.)"""
        if self._proc is None or self._proc.returncode is not None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), LOST_EXIT_TIMEOUT)

    def execute(
        self, command: str, args: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> Any:
        """Run one QMP command and return its result."""
        return self._run(self._execute(command, args), timeout, f"QMP {command}")
