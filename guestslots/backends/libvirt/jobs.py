"""A libvirt domain's block jobs: push backups of slots (export) and disk-only
external snapshots, each set of one instant."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import libvirt
from lxml import etree

from ...errors import GuestslotsError, QemuTimeout
from ...model.names import index_to_letters
from ...model.snapshots import SnapshotError
from . import bounded, connection
from .devices import DomainDevices
from .domxml import (
    backup_xml,
    live_disk,
    slot_alias,
    snapshot_xml,
)

log = logging.getLogger(__name__)


class DomainJobs(DomainDevices):
    """A libvirt domain's block jobs: push backups of slots (export) and disk-only"""

    def export_disks(self, exports: list[tuple[int, str, str]], started: Callable[[], None],
                     progress: Callable[[int, int], None] | None, timeout: float) -> None:
        """libvirt's push-mode backup (``backupBegin``, one transaction in QEMU) into the
        existing target files; its end is libvirt's job-completed event, its progress
        the job's statistics meanwhile."""
        domain = self._running()
        wanted = {f"sd{index_to_letters(index)}" for index, _, _ in exports}
        live = etree.fromstring(domain.XMLDesc(0))
        others = [str(target.get("dev")) for target in live.iterfind("devices/disk/target")
                  if target.get("dev") not in wanted]
        ended, stats = connection.job_end(self.domain_name)
        try:
            domain.backupBegin(backup_xml(exports, others), None,
                               libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL)
        except libvirt.libvirtError as e:
            raise GuestslotsError(f"export: libvirt refused the backup: "
                                  f"{e.get_error_message()}") from None
        finally:
            started()
        deadline = time.monotonic() + timeout
        while not ended.wait(min(0.5, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    domain.abortJob()
                ended.wait(10)
                raise self.error(f"export did not finish in {timeout:g} s: aborted",
                                 QemuTimeout)
            if progress is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    job = domain.jobStats(0)
                    progress(int(job.get("data_processed", 0)), int(job.get("data_total", 0)))
        # libvirt reports the job completed before it has closed the target files:
        # wait (bounded) until the domain has no job any more, the files let go
        settle = time.monotonic() + 30
        while domain.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
            if time.monotonic() >= settle:
                raise self.error("export: libvirt's backup job did not end in 30 s "
                                 "after it completed", QemuTimeout)
            ended.clear()
            ended.wait(0.05)
        if stats.get("type") not in (None, libvirt.VIR_DOMAIN_JOB_COMPLETED):
            raise self.error(f"export failed: {stats.get('errmsg', stats)}")
        if progress is not None:
            total = stats.get("data_total") or stats.get("disk_total") or 0
            progress(int(str(total)), int(str(total)))

    def disk_size(self, index: int, timeout: float) -> int:
        return int(self._running().blockInfo(f"sd{index_to_letters(index)}")[0])

    def snapshot_disks(self, overlays: list[tuple[int, str]], timeout: float) -> None:
        """libvirt's disk-only external snapshot of exactly those slots (index, overlay
        file made by the caller, reused), all at one instant, no snapshot metadata
        kept (the runtime record keeps the chain); the other disks ``snapshot='no'``.
        On failure nothing changes (``ATOMIC``)."""
        domain = self._running()
        wanted = {f"sd{index_to_letters(index)}" for index, _ in overlays}
        live = etree.fromstring(domain.XMLDesc(0))
        others = [str(target.get("dev")) for target in live.iterfind("devices/disk/target")
                  if target.get("dev") not in wanted]
        xml = snapshot_xml(f"guestslots-{int(time.time() * 1000)}", overlays, others)
        flags = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
        try:
            bounded.call(lambda: domain.snapshotCreateXML(xml, flags), timeout,
                         "the snapshot of slots " + ", ".join(str(i) for i, _ in overlays),
                         self._log_tail())
        except libvirt.libvirtError as e:
            raise SnapshotError(f"snapshot: libvirt refused it: {e.get_error_message()}"
                                ) from None
        now = domain.XMLDesc(0)
        for index, _ in overlays:  # the disks as they are now, for their unplug
            disk = live_disk(now, slot_alias(index, self.spec.appliance_id))
            if disk is not None:
                self._attached[index] = disk
