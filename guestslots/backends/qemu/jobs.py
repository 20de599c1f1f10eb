"""A running QEMU's block jobs: full backups of slots (export, save with the disk
set) and external snapshots, each set of one instant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ...errors import QemuTimeout
from .devices import MachineDevices
from .process import of_jobs
from .qmpargs import (
    chain_node,
    overlay_node_args,
    slot_ids,
)

log = logging.getLogger(__name__)


class MachineJobs(MachineDevices):
    """A running QEMU's block jobs: full backups of slots (export, save with the disk"""

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
                                    of_jobs(list(jobs))) as listener:
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
