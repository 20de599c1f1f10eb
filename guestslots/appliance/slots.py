"""Slots: hotplug and unplug by index, what each slot holds, its device names."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ..errors import (
    DeviceBusyError,
    DriveError,
    FlagError,
    GuestslotsError,
    StateError,
)
from ..guest.base import serialised
from ..host.sources import make_drive
from ..model.drives import NULL_DRIVE, DriveSpec
from ..model.flags import CONFIG, CURRENT, LIVE, Affect, NotRunning
from ..model.flags import resolve as resolve_flags
from ..model.slots import Slot
from .core import (
    ApplianceCore,
    ApplianceState,
    slot_identity,
    warn,
)


class SlotsArea(ApplianceCore):
    """Slots: hotplug and unplug by index, what each slot holds, its device names."""

    def max_slots(self) -> int:
        """The most slots this appliance can reserve (255: 256 SCSI targets, less one)."""
        return self._table.max_slots

    @serialised
    def slots(self) -> list[Slot]:
        """Every reserved slot: index, device, state, path, format, readonly, label, serial."""
        return list(self._table)

    @serialised
    def list_devices(self) -> list[str]:
        """The device of every reserved slot, empty ones included, in slot order."""
        return [slot.device for slot in self._table]

    @serialised
    def list_disk_labels(self) -> dict[str, str]:
        """Label -> device, for every full slot that has a label."""
        return {label: self._table[i].device for label, i in self._table.labels().items()}

    def hotplug(
        self,
        index: int,
        path: str | os.PathLike[str],
        format: str | None = None,
        readonly: bool = True,
        label: str | None = None,
        overlay: bool = False,
        flags: int = CURRENT,
        sslverify: bool = True,
    ) -> int:
        """Fill reserved empty slot *index* (``-1``: the first empty one) with an image
        (a file or a URL, as :meth:`add_drive` takes).

        Returns the slot index.  With ``LIVE`` it returns once the disk is usable in
        the appliance.  *flags*, as libvirt's: ``LIVE`` plugs it into the running
        appliance, ``CONFIG`` makes it part of the definition the next launch starts
        from, both do both, ``CURRENT`` (the default) is ``LIVE`` when running and
        ``CONFIG`` before launch; ``LIVE`` on an appliance that does not run is an
        error.  The same checks as :meth:`add_drive` apply; on any error the slot
        stays as it was and nothing else changes.
        """
        with self._lock:
            affect = self._affect("hotplug", flags)
            if os.fspath(path) == NULL_DRIVE:
                raise DriveError(NULL_DRIVE, "cannot be hotplugged: a slot is emptied by unplug")
            drive = make_drive(path, format, readonly, label, overlay, sslverify,
                               self._probe_timeout())
            running = self._state is ApplianceState.RUNNING
            if affect & LIVE:
                index = self._table.plug_index(index, drive)
                if affect & CONFIG:
                    self._table.config_plug_index(index, drive)
                    self._check_shared_image(index, drive, config=True)
                self._plug(index, drive)
            else:
                index = self._table.config_plug_index(index, drive)
                self._check_shared_image(index, drive, config=True)
            if affect & CONFIG:
                self._table.set_config(index, drive, running)
            return index

    def _affect(self, call: str, flags: int) -> Affect:
        """What *flags* mean for *call* now (see :mod:`guestslots.model.flags`)."""
        try:
            return resolve_flags(flags, self._state is ApplianceState.RUNNING)
        except NotRunning as e:
            raise StateError(call, f"running for LIVE ({e})", self._state.value) from None
        except ValueError as e:
            raise FlagError(call, flags, str(e)) from None

    def _check_shared_image(self, index: int | None, drive: DriveSpec,
                            config: bool = False) -> None:
        """Refuse an image that another slot holds (live, or with *config* in the
        definition) when either may write to it: QEMU would refuse it with a bare lock
        message, at a hotplug or in the middle of a launch."""
        for slot in self._table:
            other = slot.config if config else slot.drive
            if other is None or slot.index == index:
                continue
            with contextlib.suppress(OSError):
                if not os.path.samefile(other.path, drive.path):
                    continue
                if not (other.readonly or other.overlay) or not (
                        drive.readonly or drive.overlay):
                    held = "read-only" if other.readonly or other.overlay else "writable"
                    where = " in the definition" if config else ""
                    raise DriveError(
                        drive.path,
                        f"slot {slot.index} ({slot.device}) holds this image {held}{where}; "
                        "an image may be in several slots only if none of them writes to it",
                    )

    def _plug(self, index: int, drive: DriveSpec) -> None:
        backend, agent = self._running("hotplug")
        self._check_shared_image(index, drive)
        # which file this is, taken before QEMU opens it and kept: a record rewritten at a
        # later change must not take in a read-only image that changed meanwhile
        identity = slot_identity(drive.path)
        with self._watch():
            if backend.clean_slot(index, self.call_timeout):
                # an abandoned hotplug may have run after all: the guest must have seen
                # that disk go before the new one comes, or the new slot would be
                # matched with the old disk's device
                agent.call("wait_disk", target=index, plugged=False, timeout=60)
            backend.attach_disk(index, drive, timeout=self.call_timeout)
            try:
                found = agent.call("disk_plugged", target=index, readonly=drive.readonly,
                                   activate=self.auto_activate, timeout=60)
            except BaseException:
                with contextlib.suppress(GuestslotsError):
                    backend.detach_disk(index, timeout=self.call_timeout)
                raise
        self._table.fill(index, drive, found["name"])
        self._identities[index] = identity
        self._forget_inspection()
        self._update_runtime()
        self._report_volumes(index, found)

    def _report_volumes(self, index: int, found: dict[str, Any]) -> None:
        """Say which md arrays and volume groups the new disk completed (the agent
        assembles and activates them before it answers); its failures are warnings."""
        for array in found.get("arrays", []):
            self._say(f"slot {index}: md array {array} assembled")
        for vg in found.get("activated", []):
            self._say(f"slot {index}: volume group {vg} activated")
        for vg in found.get("incomplete", []):
            self._say(f"slot {index}: volume group {vg} waits for more PVs: not activated yet")
        for warning in found.get("warnings", []):
            message = f"slot {index}: {self._out(warning)}"
            warn(message, stacklevel=5)

    def unplug(self, index: int, force: bool = False, flags: int = CURRENT) -> int:
        """Empty full slot *index* (``-1``: the highest full one); return the index.

        *flags* as for :meth:`hotplug`: ``LIVE`` unplugs from the running appliance,
        ``CONFIG`` removes the drive from the definition the next launch starts
        from, ``CURRENT`` is ``LIVE`` when running and ``CONFIG`` otherwise.

        A slot whose device is in use is refused with :class:`DeviceBusyError`
        (naming what uses it) unless ``force=True``: in use means mounted, a
        member of a running md array, or a PV of an active volume group.
        ``force=True`` unmounts what is on it (and on the LVs of its volume
        groups, wherever they are), deactivates those volume groups and stops
        those arrays first.  Either way everything written is synced before the
        disk leaves, so no data is lost, and no device-mapper or md device is
        left behind.  A slot unplugged from the running appliance leaves the disk
        set (a ``RuntimeWarning`` says so); a ``CONFIG``-only unplug of a running
        appliance's slot changes only the definition, and the slot leaves the set at
        the next launch.
        """
        with self._lock:
            affect = self._affect("unplug", flags)
            running = self._state is ApplianceState.RUNNING
            if not affect & LIVE:
                index = self._table.config_unplug_index(index)
                self._table.set_config(index, None, running)
                if not running:  # the running appliance's set keeps a slot still plugged
                    self._left_diskset(index)
                return index
            index = self._table.unplug_index(index)
            if affect & CONFIG:
                self._table.config_unplug_index(index)
            slot = self._table[index]
            backend, agent = self._running("unplug")
            users = self._call("prepare_unplug", device=f"/dev/{slot.kernel_name}", force=force)
            if users:
                raise DeviceBusyError(index, slot.device, [self._out(u) for u in users])
            with self._watch():
                backend.detach_disk(index, timeout=self.call_timeout)
                agent.call("wait_disk", target=index, plugged=False, timeout=60)
            self._table.empty(index)
            self._identities.pop(index, None)
            self._ended_sources(index)
            self._forget_inspection()
            self._left_diskset(index)
            self._update_runtime()
            if affect & CONFIG:
                self._table.set_config(index, None, running)
            return index
