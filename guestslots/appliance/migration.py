"""Live migration to another process, with copies of slots' disks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from functools import partial

from ..backends import (
    Migrates,
)
from ..errors import (
    GuestslotsError,
)
from ..model.cpus import VcpuError
from ..model.disksets import DiskSetError
from ..model.migration import (
    MigrationParamError,
    MigrationParams,
    MigrationProgress,
    check_destination,
)
from ..model.nics import NicError
from .core import slot_identity
from .saving import SavingArea


class MigrationArea(SavingArea):
    """Live migration to another process, with copies of slots' disks."""

    def migrate(self, params: MigrationParams | None = None, *,
                progress: Callable[[MigrationProgress], None] | None = None,
                timeout: float = 600.0) -> MigrationProgress:
        """Move the running appliance, live, into a new QEMU process on this host.

        The new process gets the identical layout (every plugged slot, vCPU and NIC,
        with the same device ids) and the guest carries on there, its mounts, the
        agent channel and this object with it; the runtime record names the new
        process.  What was reported at the end is returned: total time, downtime,
        bytes sent.

        QEMU backend: the new process is this backend's own.  libvirt backend: the
        domain moves to the libvirt at ``destination_uri`` (libvirt's ``migrate3``
        with the typed parameters: ``uri`` as ``migrate_uri``, ``destination_name``,
        ``destination_config`` as the destination's domain XML, ``bandwidth``,
        ``parallel_connections``), which must run its QEMU on this host (the agent
        channel is a Unix socket here), and stays there: later calls go to that
        libvirt.  Copied slots (below) go by libvirt's storage migration
        (``migrate_disks``), into the copies the destination's XML names.

        *params* (:class:`~guestslots.model.migration.MigrationParams`):
        ``bandwidth`` (MiB/s) limits the stream, ``downtime_limit`` (ms),
        ``parallel_connections``, ``uri`` (default: a Unix socket in the work
        directory), ``destination_config`` (a runtime record; one that would change
        what the guest sees, or a host-side setting the QEMU backend cannot apply,
        is refused before anything moves; so is ``destination_name`` on the QEMU
        backend, which cannot rename).  ``MigrationParams.from_typed`` takes
        libvirt's typed parameter names (``migrate_uri``...).  Both processes share
        the image files, except the slots that ``disks`` names (or the disk set's,
        with ``with_disk_set``): each of those is copied, live, into a new file
        ``slotN.img`` (raw) or ``slotN.qcow2`` in ``disk_directory`` (an existing
        directory; an existing file there is an error) and the new process uses
        the copy: the guest's writes go on reaching both until the switch, which
        happens when the copy is in step, so it is the disk as of the switch (a
        snapshot chain collapses into it).  The slot then names the copy (its
        ``slots()`` path, the runtime record); the old image keeps what the guest
        wrote up to then.  Only writable slots are copied (a read-only or
        ``overlay=True`` slot's image does not change).  Tap NICs are refused
        (their device is held by the running QEMU).
        *progress* gets a :class:`MigrationProgress` about four times a second
        (status ``copying-disks`` while the copies catch up, with their bytes).
        On failure the appliance runs on where it was, on its own images, and the
        copies made are removed."""
        with self._lock:
            backend, agent = self._running("migrate")
            params = params if params is not None else MigrationParams()
            if self._record is not None:
                check_destination(params, self._record, self.backend)
            indices = params.disk_slots(self._diskset.list(), self._filled())
            which = "with_disk_set" if params.with_disk_set else "disks"
            if params.with_disk_set and not indices:
                raise DiskSetError("migrate: with_disk_set, but the disk set is empty "
                                   "(diskset_add first)")
            self._writable_drives("migrate", indices, partial(MigrationParamError, which),
                                  "its image does not change, the new process shares it")
            directory = params.disk_directory
            if indices and not directory:
                raise MigrationParamError("disk_directory", "copying slots' images needs "
                                          "a directory for the copies")
            if directory and not indices:
                raise MigrationParamError("disk_directory", "no slot is copied (disks or "
                                          "with_disk_set): nothing would go there")
            if directory and not os.path.isdir(directory):
                raise MigrationParamError("disk_directory", f"{directory} is not a "
                                          "directory")
            if not isinstance(backend, Migrates):
                raise GuestslotsError(f"migrate: the {self.backend} backend cannot move "
                                      "an appliance to another process yet")
            taps = [slot for slot, nic in self._nics.live.items() if nic.network == "tap"]
            if taps:
                raise NicError(taps[0], "a tap NIC's device is held by the running QEMU: "
                               "remove it before migrating")
            rules = self._tcg_limits_after_unplug()
            if rules is not None and not rules.save_after_unplug:
                raise VcpuError(None, "migrate: a vCPU was unplugged since this appliance "
                                f"started, and {rules.because('cannot then save its state')}; "
                                "shut down and launch again")
            backend.check_migration(params)  # before copies are made for nothing
            copies = self._make_copies(backend, indices, os.path.abspath(directory or "."))
            info: MigrationProgress
            try:
                with self._watch():
                    if copies:
                        sock, info = backend.migrate(self._layout(), params, progress,
                                                     timeout, copies)
                    else:
                        sock, info = backend.migrate(self._layout(), params, progress,
                                                     timeout)
            except BaseException:
                for copy in copies.values():
                    with contextlib.suppress(OSError):
                        os.unlink(copy.path)
                raise
            for index, copy in copies.items():  # the new process has them, not the images
                slot = self._table[index]
                if slot.config == slot.drive:  # the definition follows, as libvirt's does
                    self._table.set_config(index, copy, running=True)
                self._table.fill(index, copy, slot.kernel_name)
                self._identities[index] = slot_identity(copy.path)
            with self._watch():
                agent.switch(sock)
                agent.call("ping", wait_for=30)  # the channel is in step over there
            self._update_runtime()
            if copies:
                self._say(f"appliance {self.id} migrated with copies of slots "
                          + ", ".join(f"{i} ({c.path})" for i, c in copies.items()))
            return info
