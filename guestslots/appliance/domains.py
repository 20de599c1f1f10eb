"""A libvirt domain's disks in slots: a running domain's at one point in time."""

from __future__ import annotations

import contextlib

from ..domains import (
    DEFAULT_URI,
    DomainDisk,
    PointInTime,
    Shared,
    domain_disks,
    in_target_order,
    is_running,
)
from ..errors import DriveError, GuestslotsError, SlotError
from ..model.flags import LIVE
from ..model.slots import SlotState
from .slots import SlotsArea


class DomainsArea(SlotsArea):
    """A libvirt domain's disks in slots: a running domain's at one point in time."""

    def hotplug_domain(self, index: int, domain: str, disk: str | None = None,
                       uri: str = DEFAULT_URI, label: str | None = None) -> int:
        """Plug disk *disk* (its target, ``vda``...; None: the domain's first disk) of
        libvirt domain *domain* at *uri* into empty slot *index* (``-1``: the first
        empty one), read-only, into the running appliance; return the slot index.

        A running domain's disk is seen as it was at this call, whatever its guest
        writes afterwards, and the domain is not stopped: a pull-mode backup job
        (libvirt's ``backupBegin``) exports that point in time over NBD until the
        slot is unplugged or the appliance stops.  libvirt runs one backup job per
        domain: to see several disks of a running domain at one point in time, plug
        them together with :meth:`hotplug_domain_disks`.  A shut-off domain's disk is
        opened from its file, read-only.
        """
        with self._lock:
            self._affect("hotplug_domain", LIVE)
            disks = domain_disks(domain, uri)
            if not disks:
                raise DriveError(f"domain {domain} ({uri})", "has no disks")
            chosen = next((d for d in disks if d.target == disk), None) if disk else disks[0]
            if chosen is None:
                raise DriveError(f"domain {domain} ({uri})", f"has no disk {disk} (it has "
                                 f"{', '.join(d.target for d in disks)})")
            return self._plug_domain(domain, uri, [(index, chosen, label)])[0]

    def hotplug_domain_disks(self, domain: str, uri: str = DEFAULT_URI) -> list[int]:
        """Plug every disk of libvirt domain *domain* at *uri*, in target order
        (``vda``, ``vdb``...), into the first empty slots, read-only, at one point in
        time (one backup job, ended when the last of them is unplugged); return their
        slot indices.  As ``virt-inspector -d`` / ``guestfish -d`` add a domain."""
        with self._lock:
            self._affect("hotplug_domain_disks", LIVE)
            disks = in_target_order(domain_disks(domain, uri))
            if not disks:
                raise DriveError(f"domain {domain} ({uri})", "has no disks")
            empty = [s.index for s in self._table if s.state is SlotState.EMPTY]
            if len(empty) < len(disks):
                raise SlotError(-1, f"domain {domain} has {len(disks)} disks and "
                                f"{len(empty)} slots are empty")
            return self._plug_domain(domain, uri, [(i, d, None) for i, d in
                                                    zip(empty, disks, strict=False)])

    def _plug_domain(self, domain: str, uri: str,
                     plan: list[tuple[int, DomainDisk, str | None]]) -> list[int]:
        """Plug each (slot, disk, label) of *plan*; on any failure, none stays plugged."""
        plugged: list[int] = []
        try:
            if not is_running(domain, uri):
                for index, disk, label in plan:
                    if disk.type not in ("file", "block") or not disk.source:
                        raise DriveError(f"domain {domain} ({uri}), disk {disk.target}",
                                         f"a shut-off domain's {disk.type} disk cannot be "
                                         "opened from here")
                    plugged.append(self.hotplug(index, disk.source, format=disk.format,
                                                readonly=True, label=label, flags=LIVE))
                return plugged
            export = PointInTime(domain, [d.target for _, d, _ in plan], uri)
            urls = export.begin()
            shared = Shared(export, len(plan))
            try:
                for index, disk, label in plan:
                    plugged.append(self.hotplug(index, urls[disk.target], format="raw",
                                                readonly=True, label=label, flags=LIVE))
                    self._on_empty[plugged[-1]] = shared.release
            except BaseException:
                shared.expect(len(plugged))
                raise
            return plugged
        except BaseException:
            for index in plugged:  # each unplug releases the export once
                with contextlib.suppress(GuestslotsError):  # the first error is the news
                    self.unplug(index, force=True)
            raise
