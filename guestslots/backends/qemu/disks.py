"""A running QEMU's slots: plugging and unplugging drives over QMP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from qemu.qmp import Message

from ...errors import DriveError, QemuTimeout, QMPCommandError
from ...model.drives import DriveSpec
from ...model.sources import shown
from ..overlays import overlay_backing
from .process import MachineProcess
from .qmpargs import (
    blockdev_add_args,
    chain_add_args,
    device_add_args,
    overlay_create_args,
    overlay_job,
    overlay_made_args,
    slot_ids,
)

log = logging.getLogger(__name__)


class MachineDisks(MachineProcess):
    """A running QEMU's slots: plugging and unplugging drives over QMP."""

    # ---- slots

    def attach(self, index: int, drive: DriveSpec, overlay: str | None = None,
               timeout: float = 30.0, overlay_size: int | None = None) -> None:
        """Plug *drive* into slot *index* (over *overlay*, if given; on its snapshot
        overlays, ``drive.chain``, if it has them); on failure nothing is left
        attached.  With *overlay_size*, QEMU makes the overlay first, a qcow2 of that
        size in the empty file *overlay* (``blockdev-create``: no ``qemu-img``
        process).  Past *timeout*, :class:`QemuTimeout`; the slot is then cleaned
        before its next use, whatever QEMU did meanwhile."""
        ids = slot_ids(index, self.owner)
        create = None
        if overlay is not None and overlay_size is not None:
            nodes = overlay_made_args(index, drive, overlay, owner=self.owner)
            create = overlay_create_args(index, overlay_size, overlay_backing(drive),
                                         owner=self.owner)
        else:
            nodes = [blockdev_add_args(index, drive, overlay, owner=self.owner)]
        device = device_add_args(index, drive, owner=self.owner)
        layers = chain_add_args(index, drive, owner=self.owner)
        if layers:
            device["drive"] = layers[-1]["node-name"]
        image_node = ids.base_node if overlay is not None else ids.fmt_node
        self._guarded(index, self._attach(index, nodes, create, device, drive, image_node,
                                          layers),
                      timeout, f"hotplug of slot {index} ({shown(drive.path)})")

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
        nodes: list[dict[str, Any]],
        create: dict[str, Any] | None,
        device: dict[str, Any],
        drive: DriveSpec,
        image_node: str,
        layers: list[dict[str, Any]],
    ) -> None:
        """Add *nodes* in order (the first opens the image: its failure is the
        image's; with *create*, QEMU writes the overlay once its file node is there),
        then *layers*, then the device; on failure remove what was added."""
        ids = slot_ids(index, self.owner)
        if index in self._unsure:
            await self._clean_slot(index)
        checked = drive.format == "qcow2"
        before = await self._unnamed_nodes() if checked else set()
        if drive.remote is not None and drive.remote.tls:
            try:
                await self._execute("object-add", drive.remote.tls_object(ids.tls))
            except QMPCommandError as e:
                raise DriveError(drive.path, "QEMU cannot load the TLS certificates in "
                                 f"{drive.remote.tls_certificates}: {e.desc}") from None
            self._tls.add(index)
        added: list[str] = []
        try:
            for args in nodes:
                try:
                    await self._execute("blockdev-add", args)
                except QMPCommandError as e:
                    what = "it" if not added else "its throwaway overlay"
                    fmt = drive.format if not added else "qcow2"
                    raise DriveError(drive.path,
                                     f"QEMU cannot open {what} as {fmt}: {e.desc}") from None
                added.append(args["node-name"])
                if len(added) == 1 and checked:
                    await self._refuse_other_files(drive, image_node, before)
                if create is not None and args["node-name"] == ids.file_node:
                    await self._create_overlay(drive, create)
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
            for node in reversed(added):
                with contextlib.suppress(Exception):
                    await self._execute("blockdev-del", {"node-name": node})
            with contextlib.suppress(Exception):
                await self._delete_tls(index)
            raise
        if layers:
            self._chains[index] = added[len(nodes):]

    async def _create_overlay(self, drive: DriveSpec, create: dict[str, Any]) -> None:
        """Have QEMU write a throwaway overlay's qcow2 (``blockdev-create`` on its file
        node): the job awaited until it concluded, then dismissed."""
        job = create["job-id"]

        def ours(event: Message) -> bool:
            data = event.get("data")
            return isinstance(data, dict) and data.get("id") == job

        with self._qmp.listener("JOB_STATUS_CHANGE", ours) as listener:
            await self._execute("blockdev-create", create)
            while True:
                data = (await listener.get()).get("data")
                if isinstance(data, dict) and data.get("status") == "concluded":
                    break
        jobs = await self._execute("query-jobs")
        error = next((j.get("error") for j in jobs if j.get("id") == job), None)
        await self._execute("job-dismiss", {"id": job})
        if error:
            raise DriveError(drive.path, f"cannot make its throwaway overlay: {error}")

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
        job = overlay_job(index, self.owner)
        if any(j.get("id") == job for j in await self._execute("query-jobs")):
            with contextlib.suppress(QMPCommandError):  # an overlay QEMU was making
                await self._execute("job-dismiss", {"id": job})
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
        below = [ids.file_node, ids.base_node]
        if ids.fmt_node in present and any(node in present for node in below):
            # added on their own when QEMU made the overlay, they outlive the node
            # above them (nested in it, they went with it)
            present = {str(n.get("node-name")) for n in
                       await self._execute("query-named-block-nodes", {"flat": True})}
        for node in below:
            if node in present:
                await self._execute("blockdev-del", {"node-name": node})
        await self._delete_tls(index)

    async def _delete_tls(self, index: int) -> None:
        """Remove slot *index*'s ``tls-creds-x509`` object, if it has one (after its
        nodes: they hold it)."""
        if index in self._tls:
            with contextlib.suppress(QMPCommandError):  # an abandoned attach's, maybe never made
                await self._execute("object-del", {"id": slot_ids(index, self.owner).tls})
            self._tls.discard(index)

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
