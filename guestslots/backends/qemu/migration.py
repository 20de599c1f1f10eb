"""A running QEMU's state: saved and restored, and live migration from one local
QEMU to another (mirrors of copied slots first)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qemu.qmp import Message

from ...errors import QemuTimeout, QMPCommandError
from .jobs import MachineJobs
from .migration_plan import QmpPlan
from .process import event_data, of_jobs

log = logging.getLogger(__name__)

#: A live migration's capabilities, the same on both sides: events, and every RAM
#: block in the stream (a process that restored a saved state has x-ignore-shared
#: on from then, and the stream's format depends on it).
LIVE_CAPS = [{"capability": "events", "state": True},
             {"capability": "x-ignore-shared", "state": False},
             # set by the plan when wanted; never left over from an earlier migration
             # (a pause before switchover that nobody continues would hang it)
             {"capability": "pause-before-switchover", "state": False},
             {"capability": "multifd", "state": False}]


class MachineMigration(MachineJobs):
    """A running QEMU's state: saved and restored, and live migration from one local"""

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
                                     "BLOCK_JOB_CANCELLED"), of_jobs(jobs)) as listener:
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
                    waiting.discard(event_data(event).get("id"))
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
                                of_jobs(plan.jobs)) as listener:
            for command, args in plan.switchover:
                await self._execute(command, args)
            pending, failed = set(plan.jobs), []
            while pending:
                event = await listener.get()
                data = event_data(event)
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

        async def cancel(listener: Any) -> None:
            """Cancel the migration and wait (10 s at most) for QEMU to say it ended:
            until then the VM refuses device changes ("not allowed while migrating")."""
            with contextlib.suppress(Exception):
                await self._execute("migrate_cancel")
                await asyncio.wait_for(listener.get(), 10)

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
                        await cancel(listener)
                        raise self.error(f"the migration did not end in {timeout:g} s: "
                                         "cancelled", QemuTimeout)
                    try:
                        event = await asyncio.wait_for(listener.get(), min(left, 0.25))
                    except TimeoutError:
                        if progress is not None:
                            progress(await self._execute("query-migrate"))
                        continue
                    if event_data(event).get("status") != "pre-switchover":
                        break
                    try:
                        if switch_over is None:
                            raise self.error("the migration paused before switchover, "
                                             "and nothing was planned there")
                        await self._switch_over(*switch_over)
                    except BaseException:
                        await cancel(listener)
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
