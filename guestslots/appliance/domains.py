"""A libvirt domain's disk in a slot: a running domain's at one point in time."""

from __future__ import annotations

from ..domains import DEFAULT_URI, PointInTime, domain_disks, is_running
from ..errors import DriveError
from ..model.flags import LIVE
from .slots import SlotsArea


class DomainsArea(SlotsArea):
    """A libvirt domain's disk in a slot: a running domain's at one point in time."""

    def hotplug_domain(self, index: int, domain: str, disk: str | None = None,
                       uri: str = DEFAULT_URI, label: str | None = None) -> int:
        """Plug disk *disk* (its target, ``vda``...; None: the domain's first disk) of
        libvirt domain *domain* at *uri* into empty slot *index* (``-1``: the first
        empty one), read-only, into the running appliance; return the slot index.

        A running domain's disk is seen as it was at this call, whatever its guest
        writes afterwards, and the domain is not stopped: a pull-mode backup job
        (libvirt's ``backupBegin``) exports that point in time over NBD until the
        slot is unplugged or the appliance stops.  libvirt runs one backup job per
        domain, so one disk of a running domain can be plugged at a time.  A
        shut-off domain's disk is opened from its file, read-only.
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
            if not is_running(domain, uri):
                if chosen.type not in ("file", "block") or not chosen.source:
                    raise DriveError(f"domain {domain} ({uri}), disk {chosen.target}",
                                     f"a shut-off domain's {chosen.type} disk cannot be "
                                     "opened from here")
                return self.hotplug(index, chosen.source, format=chosen.format,
                                    readonly=True, label=label, flags=LIVE)
            export = PointInTime(domain, chosen.target, uri)
            url = export.begin()
            try:
                index = self.hotplug(index, url, format="raw", readonly=True, label=label,
                                     flags=LIVE)
            except BaseException:
                export.end()
                raise
            self._on_empty[index] = export.end
            return index
