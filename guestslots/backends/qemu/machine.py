"""The QEMU backend: one QEMU process, driven over QMP with ``qemu.qmp``.

QMP is asynchronous (events arrive while commands run), so each machine owns
a private asyncio loop on its own thread, and the synchronous API submits
coroutines to it.  QEMU is spawned from that thread with
``PR_SET_PDEATHSIG=SIGKILL``: if the calling process dies, for any reason,
QEMU dies with it.

The backend only carries out: the slot table decides what may be plugged
where, :mod:`guestslots.qmpargs` builds every argument.
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

from ...errors import DriveError, LaunchError, QemuError, QemuTimeout, QMPCommandError
from ...model.drives import DriveSpec
from ...model.migration import QmpPlan
from ...model.nics import NicError, NicSpec
from .qmpargs import (
    MachineConfig,
    blockdev_add_args,
    chain_add_args,
    chain_node,
    device_add_args,
    netdev_add_args,
    nic_device_args,
    nic_ids,
    nic_slots_in_use,
    overlay_node_args,
    qemu_command,
    slot_ids,
    vcpu_device_args,
    vcpu_positions,
    vcpu_qdev,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _data(event: Message) -> dict[str, Any]:
    """An event's data (empty if it has none)."""
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def _of_jobs(jobs: Sequence[str]) -> Callable[[Message], bool]:
    """A listener filter: block job events of *jobs*."""
    return lambda event: _data(event).get("device") in jobs


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


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


#: A live migration's capabilities, the same on both sides: events, and every RAM
#: block in the stream (a process that restored a saved state has x-ignore-shared
#: on from then, and the stream's format depends on it).
LIVE_CAPS = [{"capability": "events", "state": True},
             {"capability": "x-ignore-shared", "state": False},
             # set by the plan when wanted; never left over from an earlier migration
             # (a pause before switchover that nobody continues would hang it)
             {"capability": "pause-before-switchover", "state": False},
             {"capability": "multifd", "state": False}]


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


class QemuMachine:
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
        qemu = tail(self.qemu_log, 10)
        if qemu:
            parts.append("[qemu] " + qemu.replace("\n", "\n[qemu] "))
        console = tail(Path(self.cfg.console_log), 20)
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
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(self.cfg.agent_socket)
        except OSError as e:
            conn.close()
            raise self.error(f"cannot connect to the agent channel: {e}", LaunchError) \
                from None
        conn.settimeout(None)
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
        died.cancel()
        accept.result()

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
            raise self.error(f"QMP {command}: connection to QEMU lost ({e})") from None

    def execute(
        self, command: str, args: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> Any:
        """Run one QMP command and return its result."""
        return self._run(self._execute(command, args), timeout, f"QMP {command}")

    # ---- slots

    def attach(self, index: int, drive: DriveSpec, overlay: str | None = None,
               timeout: float = 30.0) -> None:
        """Plug *drive* into slot *index* (over *overlay*, if given; on its snapshot
        overlays, ``drive.chain``, if it has them); on failure nothing is left
        attached.  Past *timeout*, :class:`QemuTimeout`; the slot is then cleaned
        before its next use, whatever QEMU did meanwhile."""
        ids = slot_ids(index, self.owner)
        blockdev = blockdev_add_args(index, drive, overlay, owner=self.owner)
        device = device_add_args(index, drive, owner=self.owner)
        layers = chain_add_args(index, drive, owner=self.owner)
        if layers:
            device["drive"] = layers[-1]["node-name"]
        image_node = ids.base_node if overlay is not None else ids.fmt_node
        self._guarded(index, self._attach(index, blockdev, device, drive, image_node, layers),
                      timeout, f"hotplug of slot {index} ({drive.path})")

    def _guarded(self, index: int, coro: Coroutine[Any, Any, None], timeout: float,
                 what: str) -> None:
        """Run a slot operation; if it is abandoned, remember that the slot is unsure."""
        try:
            self._run(coro, timeout, what)
        except QemuTimeout:
            self._unsure.add(index)
            raise

    async def _attach(
        self,
        index: int,
        blockdev: dict[str, Any],
        device: dict[str, Any],
        drive: DriveSpec,
        image_node: str,
        layers: list[dict[str, Any]],
    ) -> None:
        ids = slot_ids(index, self.owner)
        if index in self._unsure:
            await self._clean_slot(index)
        checked = drive.format == "qcow2"
        before = await self._unnamed_nodes() if checked else set()
        try:
            await self._execute("blockdev-add", blockdev)
        except QMPCommandError as e:
            raise DriveError(
                drive.path, f"QEMU cannot open it as {drive.format}: {e.desc}"
            ) from None
        added: list[str] = []
        try:
            if checked:
                await self._refuse_other_files(drive, image_node, before)
            for layer, path in zip(layers, drive.chain, strict=True):
                before = await self._unnamed_nodes()
                try:
                    await self._execute("blockdev-add", layer)
                except QMPCommandError as e:
                    raise DriveError(path, f"QEMU cannot open this snapshot overlay of "
                                     f"slot {index}: {e.desc}") from None
                added.append(layer["node-name"])
                await self._refuse_other_files(
                    DriveSpec(path, "qcow2", False), layer["node-name"], before, overlay=True)
            try:
                await self._execute("device_add", device)
            except QMPCommandError as e:
                # e.g. 'Failed to get "write" lock': another process holds the image
                raise DriveError(drive.path, f"QEMU cannot attach it to slot {index}: "
                                 f"{e.desc}") from None
        except BaseException:
            for node in [*reversed(added), ids.fmt_node]:
                with contextlib.suppress(Exception):
                    await self._execute("blockdev-del", {"node-name": node})
            raise
        if added:
            self._chains[index] = added

    def clean(self, index: int, timeout: float = 10.0) -> bool:
        """Clean slot *index* if an abandoned operation left it unsure (see
        :meth:`_clean_slot`); True if it was unsure."""
        if index not in self._unsure:
            return False
        self._guarded(index, self._clean_slot(index, timeout), timeout + 5,
                      f"cleaning slot {index}")
        return True

    async def _clean_slot(self, index: int, timeout: float = 10.0) -> None:
        """Remove whatever an abandoned attach or detach of slot *index* left in QEMU:
        its device (waiting until QEMU deleted it), then its block nodes."""
        ids = slot_ids(index, self.owner)
        devices = await self._execute("qom-list", {"path": "/machine/peripheral"})
        if any(d.get("name") == ids.qdev for d in devices):
            await self._device_del(ids.qdev, timeout)
        await self._delete_nodes(index)
        self._unsure.discard(index)

    async def _unnamed_nodes(self) -> set[str]:
        """The block nodes QEMU named itself (``#block...``): files it opened because an
        image's header said so (the appliance root's overlay has one: its backing)."""
        nodes = await self._execute("query-named-block-nodes", {"flat": True})
        return {str(n.get("node-name")) for n in nodes if str(n.get("node-name")).startswith("#")}

    async def _refuse_other_files(self, drive: DriveSpec, image_node: str,
                                  before: set[str], overlay: bool = False) -> None:
        """Refuse the image if QEMU opened anything for it that we did not name.

        :func:`guestslots.drives.make_drive` refuses headers that name other files
        before QEMU sees them; this checks what QEMU really opened: every node a
        slot's blockdev-add creates is named by us, so a node that QEMU named itself
        and that was not there before (*before*) is a file the image made it open
        (an external data file, a backing file...).  A snapshot *overlay* names its
        backing file (it is opened on the node below instead): only its data file
        counts.
        """
        nodes = await self._execute("query-named-block-nodes", {"flat": True})
        for node in nodes:
            name = str(node.get("node-name", ""))
            image = node.get("image", {})
            named = []
            if name == image_node:
                if image.get("backing-filename") and not overlay:
                    named.append(f"a backing file ({image['backing-filename']})")
                data_file = image.get("format-specific", {}).get("data", {}).get("data-file")
                if data_file:
                    named.append(f"an external data file ({data_file})")
            elif name.startswith("#") and name not in before:
                named.append(f"{node.get('file')} (a file its header names)")
            if named:
                raise DriveError(
                    drive.path,
                    f"made QEMU open {' and '.join(named)}; images that name other files "
                    "are refused (a hostile image could name any host file): flatten it "
                    "with qemu-img convert first",
                )

    def detach(self, index: int, timeout: float = 30.0) -> None:
        """Unplug slot *index*'s disk: device_del, wait for DEVICE_DELETED, blockdev-del."""
        self._guarded(index, self._detach(index, timeout), timeout + 5, f"unplug of slot {index}")

    async def _detach(self, index: int, timeout: float) -> None:
        if index in self._unsure:
            await self._clean_slot(index, timeout)  # removes whatever is left of it
            return
        ids = slot_ids(index, self.owner)
        await self._device_del(ids.qdev, timeout)
        await self._delete_nodes(index)

    async def _delete_nodes(self, index: int) -> None:
        """Remove slot *index*'s block nodes that exist: its snapshot overlays, newest
        first (each holds the one below), then the image's."""
        ids = slot_ids(index, self.owner)
        present = {str(n.get("node-name")) for n in
                   await self._execute("query-named-block-nodes", {"flat": True})}
        for node in [*reversed(self._chains.pop(index, [])), ids.fmt_node]:
            if node in present:
                await self._execute("blockdev-del", {"node-name": node})

    async def _device_del(self, qdev: str, timeout: float) -> None:
        """device_del, and wait for QEMU's DEVICE_DELETED (it may come before the reply)."""

        def ours(event: Message) -> bool:
            data = event.get("data")
            return isinstance(data, dict) and data.get("device") == qdev

        with self._qmp.listener("DEVICE_DELETED", ours) as listener:
            await self._execute("device_del", {"id": qdev})
            try:
                await asyncio.wait_for(listener.get(), timeout)
            except TimeoutError:
                raise self.error(
                    f"DEVICE_DELETED for {qdev} did not come in {timeout:g} s"
                ) from None

    # ---- vCPUs

    def attach_vcpu(self, vcpu: int, timeout: float = 30.0) -> None:
        """Plug vCPU *vcpu* (its position from ``query-hotpluggable-cpus``)."""

        async def attach() -> None:
            positions = vcpu_positions(await self._execute("query-hotpluggable-cpus"))
            if vcpu >= len(positions):
                raise self.error(f"QEMU has no vCPU position {vcpu} (it has {len(positions)})")
            if "qom-path" in positions[vcpu]:
                raise self.error(f"vCPU {vcpu} is already plugged in QEMU")
            await self._execute("device_add", vcpu_device_args(vcpu, positions[vcpu], self.owner))

        self._run(attach(), timeout, f"hotplug of vCPU {vcpu}")

    def detach_vcpu(self, vcpu: int, timeout: float = 30.0) -> None:
        """Unplug vCPU *vcpu* and wait until QEMU has really removed it: a CPU's unplug
        needs the guest's cooperation (its ACPI eject), so the end is confirmed by
        asking QEMU again after each event that may mean it, not by one event."""
        qdev = vcpu_qdev(vcpu, self.owner)

        async def gone() -> bool:
            positions = vcpu_positions(await self._execute("query-hotpluggable-cpus"))
            return vcpu < len(positions) and "qom-path" not in positions[vcpu]

        async def detach() -> None:
            with self._qmp.listener(("DEVICE_DELETED", "ACPI_DEVICE_OST")) as listener:
                await self._execute("device_del", {"id": qdev})
                while not await gone():
                    try:
                        await asyncio.wait_for(listener.get(), timeout)
                    except TimeoutError:
                        raise self.error(f"vCPU {vcpu} was not removed in {timeout:g} s "
                                         "(the guest did not eject it)") from None

        self._run(detach(), timeout + 5, f"unplug of vCPU {vcpu}")

    # ---- NICs

    def nic_slots_in_use(self, timeout: float = 30.0) -> frozenset[int]:
        """The NIC slots QEMU has taken (their PCI slot or device id is in use)."""

        async def query() -> frozenset[int]:
            buses = await self._execute("query-pci")
            devices = [d for bus in buses if bus.get("bus") == 0 for d in bus.get("devices", [])]
            peripherals = await self._execute("qom-list", {"path": "/machine/peripheral"})
            return nic_slots_in_use(devices, peripherals, self.owner)

        return self._run(query(), timeout, "query-pci")

    def attach_nic(self, slot: int, nic: NicSpec, tap_fd: int | None = None,
                   timeout: float = 30.0) -> None:
        """Plug NIC slot *slot*: its netdev (a tap NIC's open file descriptor *tap_fd*
        passed to QEMU over the QMP socket with SCM_RIGHTS, QEMU opens nothing), then
        its virtio-net device; on failure nothing is left."""
        qdev, netdev = nic_ids(slot, self.owner)
        fdname = f"{qdev}-fd" if tap_fd is not None else None

        async def attach() -> None:
            if fdname is not None:
                assert tap_fd is not None
                self._qmp.send_fd_scm(tap_fd)
                await self._execute("getfd", {"fdname": fdname})
            try:
                try:
                    await self._execute("netdev_add", netdev_add_args(slot, nic, self.owner,
                                                                      fdname))
                except QMPCommandError as e:
                    raise NicError(slot, f"QEMU cannot make its {nic.network} network: "
                                   f"{e.desc}") from None
                try:
                    await self._execute("device_add", nic_device_args(slot, nic, self.owner))
                except QMPCommandError as e:
                    with contextlib.suppress(Exception):
                        await self._execute("netdev_del", {"id": netdev})
                    raise NicError(slot, f"QEMU cannot plug its NIC: {e.desc}") from None
            finally:
                if fdname is not None:  # netdev_add took its own copy
                    with contextlib.suppress(Exception):
                        await self._execute("closefd", {"fdname": fdname})

        self._run(attach(), timeout, f"hotplug of NIC slot {slot}")

    def detach_nic(self, slot: int, timeout: float = 30.0) -> None:
        """Unplug NIC slot *slot*: device_del, wait for QEMU's DEVICE_DELETED (the guest
        ejects the PCI device), then remove its netdev."""
        qdev, netdev = nic_ids(slot, self.owner)

        async def detach() -> None:
            await self._device_del(qdev, timeout)
            await self._execute("netdev_del", {"id": netdev})

        self._run(detach(), timeout + 5, f"unplug of NIC slot {slot}")

    # ---- exports (full block backups, all of one instant)

    def disk_size(self, index: int, timeout: float = 30.0) -> int:
        """The virtual size in bytes of what slot *index*'s disk shows the guest."""
        node = self.top_node(index)
        for info in self.execute("query-named-block-nodes", {"flat": True}, timeout):
            if info.get("node-name") == node:
                return int(info["image"]["virtual-size"])
        raise self.error(f"slot {index} has no block node {node}")

    def top_node(self, index: int) -> str:
        """The block node slot *index*'s device reads: its newest snapshot overlay, or
        the image's own."""
        chain = self._chains.get(index)
        return chain[-1] if chain else slot_ids(index, self.owner).fmt_node

    def snapshot(self, overlays: list[tuple[int, str]], timeout: float = 30.0) -> None:
        """Put each slot's disk (index, path of a new, empty qcow2 file of its size) on
        that file, all at one instant: one ``transaction`` of ``blockdev-snapshot``.
        The overlay is opened with no backing (its header's is never followed); the
        slot's current node becomes its backing.  On failure nothing changes."""

        async def snap() -> None:
            added: list[str] = []
            news: dict[int, str] = {}
            try:
                for index, path in overlays:
                    node = chain_node(index, self.owner, len(self._chains.get(index, [])) + 1)
                    await self._execute("blockdev-add", overlay_node_args(node, path, None))
                    added.append(node)
                    news[index] = node
                await self._execute("transaction", {"actions": [
                    {"type": "blockdev-snapshot",
                     "data": {"node": self.top_node(index), "overlay": node}}
                    for index, node in news.items()]})
            except BaseException:
                for node in added:
                    with contextlib.suppress(Exception):
                        await self._execute("blockdev-del", {"node-name": node})
                raise
            for index, node in news.items():
                self._chains.setdefault(index, []).append(node)

        self._run(snap(), timeout, "snapshot of slots " + ", ".join(str(i) for i, _ in overlays))

    def export_disks(self, exports: list[tuple[int, str, str]], started: Callable[[], None],
                     progress: Callable[[int, int], None] | None, timeout: float) -> None:
        """Copy what the disks of slots (index, target file, its format) show the guest
        into the target files (made by the caller, of the disks' sizes), as they all are
        at one instant: one ``transaction`` of ``blockdev-backup`` jobs (copy-before-
        write: the guest goes on writing meanwhile).  *started* is called once the jobs
        started (or failed to); *progress* with (bytes copied, bytes in all) while they
        run.  On failure or past *timeout* the jobs are cancelled; the target nodes
        are removed either way."""
        self._run(self._export(exports, started, progress, timeout), timeout + 30,
                  "export of slots " + ", ".join(str(e[0]) for e in exports))

    async def _export(self, exports: list[tuple[int, str, str]], started: Callable[[], None],
                      progress: Callable[[int, int], None] | None, timeout: float) -> None:
        jobs: dict[str, tuple[str, str]] = {}  # job id -> (source node, target node)
        added: list[str] = []
        called = False
        try:
            for index, target, fmt in exports:
                ids = slot_ids(index, self.owner)
                job = node = f"{ids.qdev}-export"
                await self._execute("blockdev-add", {
                    "driver": fmt, "node-name": node,
                    "file": {"driver": "file", "filename": target}})
                added.append(node)
                jobs[job] = (self.top_node(index), node)

            with self._qmp.listener(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"),
                                    _of_jobs(list(jobs))) as listener:
                try:
                    await self._execute("transaction", {"actions": [
                        {"type": "blockdev-backup",
                         "data": {"job-id": job, "device": src, "target": dst, "sync": "full"}}
                        for job, (src, dst) in jobs.items()]})
                finally:
                    called = True
                    started()
                await self._wait_jobs(listener, set(jobs), progress, timeout, "export")
        finally:
            if not called:
                started()
            for node in added:
                with contextlib.suppress(Exception):
                    await self._execute("blockdev-del", {"node-name": node})

    async def _wait_jobs(self, listener: Any, pending: set[str],
                         progress: Callable[[int, int], None] | None, timeout: float,
                         what: str, until: str = "BLOCK_JOB_COMPLETED") -> None:
        """Wait for the block jobs *pending* to reach *until* (their events: the end of
        an export, a mirror's BLOCK_JOB_READY); report progress from
        ``query-block-jobs`` between events; cancel them all on failure or timeout.
        Any other end of a job is a failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        lengths: dict[str, int] = {}
        done: dict[str, int] = {}
        failed: list[str] = []
        try:
            while pending:
                left = deadline - loop.time()
                if left <= 0:
                    raise self.error(f"{what} did not finish in {timeout:g} s: cancelled",
                                     QemuTimeout)
                try:
                    event = await asyncio.wait_for(listener.get(), min(left, 0.5))
                except TimeoutError:
                    if progress is not None:
                        for job in await self._execute("query-block-jobs"):
                            if job.get("device") in pending:
                                lengths[job["device"]] = int(job.get("len", 0))
                                done[job["device"]] = int(job.get("offset", 0))
                        progress(sum(done.values()), sum(lengths.values()))
                    continue
                data = event["data"]
                job = data["device"]
                pending.discard(job)
                lengths[job] = done[job] = int(data.get("len", 0))
                if event["event"] != until or data.get("error"):
                    failed.append(f"{job}: {data.get('error', 'cancelled')}")
        except BaseException:
            for job in pending:  # forced: the target nodes can go right after
                with contextlib.suppress(Exception):
                    await self._execute("block-job-cancel", {"device": job, "force": True})
            with contextlib.suppress(Exception):
                while pending:
                    event = await asyncio.wait_for(listener.get(), 10)
                    pending.discard(event["data"]["device"])
            raise
        if failed:
            raise self.error(f"{what} failed: " + "; ".join(failed))
        if progress is not None:
            total = sum(lengths.values())
            progress(total, total)

    # ---- saved state

    async def _migration(self, command: str, args: dict[str, Any], timeout: float) -> None:
        """Run a migration command and wait for its MIGRATION event to say how it ended."""
        # shared RAM (a file of its own) stays out of the stream and the restoring side
        # maps it; set on both sides always, as QEMU requires (the stream's format
        # depends on it), whatever RAM either side has
        capabilities = [{"capability": "events", "state": True},
                        {"capability": "x-ignore-shared", "state": True}]
        await self._execute("migrate-set-capabilities", {"capabilities": capabilities})

        def final(event: Message) -> bool:
            data = event.get("data")
            return isinstance(data, dict) and data.get("status") in (
                "completed",
                "failed",
                "cancelled",
            )

        with self._qmp.listener("MIGRATION", final) as listener:
            await self._execute(command, args)
            try:
                event = await asyncio.wait_for(listener.get(), timeout)
            except TimeoutError:
                raise self.error(f"{command} did not finish in {timeout:g} s") from None
        data = event.get("data")
        status = data.get("status") if isinstance(data, dict) else None
        if status != "completed":
            raise self.error(f"{command} {status}")

    def save_state(self, path: Path, timeout: float = 120.0) -> None:
        """Stop the VM and write its whole state to *path*; the VM stays stopped.

        Stopping flushes every disk, so the root overlay can be copied while
        the VM is stopped and it matches the saved memory.
        """

        async def save() -> None:
            await self._execute("stop")
            uri = "exec:cat > " + shlex.quote(str(path))
            await self._migration("migrate", {"uri": uri}, timeout)

        self._run(save(), timeout + 10, "saving the appliance state")

    def resume(self) -> None:
        """Let a stopped VM run again."""
        self.execute("cont")

    def restore_state(self, path: Path, timeout: float = 60.0) -> None:
        """Load a state saved by :meth:`save_state` into this (incoming) QEMU, and run it."""

        async def restore() -> None:
            uri = "exec:cat " + shlex.quote(str(path))
            await self._migration("migrate-incoming", {"uri": uri}, timeout)
            status = await self._execute("query-status")
            if not status.get("running"):
                await self._execute("cont")  # the state was saved with the VM stopped

        self._run(restore(), timeout + 10, "restoring the appliance state")

    # ---- live migration (from one local QEMU to another)

    def listen_incoming(self, commands: Sequence[tuple[str, dict[str, Any]]], uri: str,
                        timeout: float = 30.0) -> None:
        """On this (incoming) QEMU: run *commands* (capabilities, parameters), then
        listen for the migration stream at *uri*."""

        async def listen() -> None:
            await self._execute("migrate-set-capabilities", {"capabilities": LIVE_CAPS})
            for command, args in commands:
                await self._execute(command, args)
            await self._execute("migrate-incoming", {"uri": uri})

        self._run(listen(), timeout, "migrate-incoming")

    def start_mirrors(self, commands: Sequence[tuple[str, dict[str, Any]]],
                      jobs: Sequence[str], progress: Callable[[int, int], None] | None,
                      timeout: float) -> None:
        """On this (source) QEMU: run *commands* (NBD client nodes and the mirror jobs
        *jobs*) and wait until every job is ready (its target in step; from then on
        each guest write goes to both).  *progress* gets (bytes copied, bytes in all).
        On failure or past *timeout* the jobs are cancelled; :meth:`abandon_mirrors`
        removes what is left."""

        async def start() -> None:
            with self._qmp.listener(("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED",
                                     "BLOCK_JOB_CANCELLED"), _of_jobs(jobs)) as listener:
                for command, args in commands:
                    await self._execute(command, args)
                await self._wait_jobs(listener, set(jobs), progress, timeout,
                                      "the copy of the disks", until="BLOCK_JOB_READY")

        self._run(start(), timeout + 30, "the copy of the disks")

    def abandon_mirrors(self, jobs: Sequence[str], nodes: Sequence[str],
                        timeout: float = 30.0) -> None:
        """Remove the mirror jobs *jobs* (cancelled, whatever their state) and the
        nodes *nodes* they wrote to; what is already gone is skipped."""

        async def abandon() -> None:
            def ours(event: Message) -> bool:
                data = event.get("data")
                return isinstance(data, dict) and data.get("id") in jobs and \
                    data.get("status") in ("concluded", "null")

            with self._qmp.listener("JOB_STATUS_CHANGE", ours) as listener:
                live = {job["id"]: job["status"] for job in await self._execute("query-jobs")
                        if job.get("id") in jobs}
                for job, status in live.items():
                    if status not in ("concluded", "null"):
                        with contextlib.suppress(QMPCommandError):
                            await self._execute("block-job-cancel",
                                                {"device": job, "force": True})
                waiting = {job for job, status in live.items() if status != "concluded"}
                while waiting:
                    event = await listener.get()
                    waiting.discard(_data(event).get("id"))
            for job in live:
                with contextlib.suppress(QMPCommandError):
                    await self._execute("job-dismiss", {"id": job})
            for node in nodes:
                with contextlib.suppress(QMPCommandError):
                    await self._execute("blockdev-del", {"node-name": node})

        self._run(abandon(), timeout, "removing the disks' copy jobs")

    async def _switch_over(self, plan: QmpPlan, tidy_destination: Callable[[], None],
                           ) -> None:
        """At ``pre-switchover`` (the VM stopped here, not yet started there): end the
        mirrors with their targets in step, remove them, let the destination drop its
        exports (*tidy_destination*, called in a thread), and let the stream finish."""
        with self._qmp.listener(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"),
                                _of_jobs(plan.jobs)) as listener:
            for command, args in plan.switchover:
                await self._execute(command, args)
            pending, failed = set(plan.jobs), []
            while pending:
                event = await listener.get()
                data = _data(event)
                pending.discard(data.get("device"))
                if event["event"] != "BLOCK_JOB_COMPLETED" or data.get("error"):
                    failed.append(f"{data['device']}: {data.get('error', 'cancelled')}")
        if failed:
            raise self.error("the copy of the disks did not end in step: "
                             + "; ".join(failed))
        for command, args in plan.finish_source:
            await self._execute(command, args)
        await asyncio.get_running_loop().run_in_executor(None, tidy_destination)
        for command, args in plan.resume:
            await self._execute(command, args)

    def migrate_out(self, commands: Sequence[tuple[str, dict[str, Any]]],
                    progress: Callable[[dict[str, Any]], None] | None,
                    timeout: float, switch_over: tuple[QmpPlan, Callable[[], None]] | None = None,
                    ) -> dict[str, Any]:
        """On this (source) QEMU: run *commands* (the last one ``migrate``) and wait for
        the MIGRATION event that says how it ended; while it runs, *progress* gets
        ``query-migrate``'s answer about four times a second.  With *switch_over*
        (copied disks: the plan, which set ``pause-before-switchover``, and what tidies
        the destination) the switchover is carried out when the migration pauses
        there.  QEMU's final ``query-migrate`` (total time,
        downtime, bytes).  A failed or cancelled migration leaves the VM running here
        (QEMU resumes it) and raises."""

        def final(event: Message) -> bool:
            data = event.get("data")
            return isinstance(data, dict) and data.get("status") in (
                "completed", "failed", "cancelled", "pre-switchover")

        async def migrate() -> dict[str, Any]:
            await self._execute("migrate-set-capabilities", {"capabilities": LIVE_CAPS})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            with self._qmp.listener("MIGRATION", final) as listener:
                for command, args in commands:
                    await self._execute(command, args)
                while True:
                    left = deadline - loop.time()
                    if left <= 0:
                        with contextlib.suppress(Exception):
                            await self._execute("migrate_cancel")
                        raise self.error(f"the migration did not end in {timeout:g} s: "
                                         "cancelled", QemuTimeout)
                    try:
                        event = await asyncio.wait_for(listener.get(), min(left, 0.25))
                    except TimeoutError:
                        if progress is not None:
                            progress(await self._execute("query-migrate"))
                        continue
                    if _data(event).get("status") != "pre-switchover":
                        break
                    try:
                        if switch_over is None:
                            raise self.error("the migration paused before switchover, "
                                             "and nothing was planned there")
                        await self._switch_over(*switch_over)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await self._execute("migrate_cancel")
                        raise
            info: dict[str, Any] = await self._execute("query-migrate")
            data = event.get("data")
            status = data.get("status") if isinstance(data, dict) else None
            # QEMU announces "completed" before its migration thread has worked out
            # the total time and downtime (and sends no event when it has): ask
            # again until they are there (a few round trips), for at most a second
            settle = loop.time() + 1.0
            while status == "completed" and not info.get("total-time") \
                    and loop.time() < settle:
                info = await self._execute("query-migrate")
            if status != "completed":
                raise self.error(f"the migration {status}: "
                                 f"{info.get('error-desc', 'QEMU did not say why')}")
            return info

        return self._run(migrate(), timeout + 30, "the migration")

    def wait_incoming_done(self, timeout: float) -> None:
        """On the incoming QEMU: wait until the stream is loaded and the VM runs."""

        async def done() -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            with self._qmp.listener(("MIGRATION", "RESUME")) as listener:
                while True:
                    status = await self._execute("query-status")
                    if status.get("running"):
                        return
                    if status.get("status") not in ("inmigrate", "paused", "prelaunch"):
                        raise self.error(f"the migrated VM is {status.get('status')}")
                    if status.get("status") == "paused":  # loaded, not started
                        await self._execute("cont")
                        continue
                    left = deadline - loop.time()
                    if left <= 0:
                        raise self.error(f"the migrated VM did not run in {timeout:g} s",
                                         QemuTimeout)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(listener.get(), left)

        self._run(done(), timeout + 10, "the migrated VM's start")

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None
