"""Saving a running appliance with its slots, and restoring it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from ..backends import (
    Layout,
    NotResumed,
    RestoresUnderItsName,
    Saves,
)
from ..errors import (
    GuestslotsError,
    HostFileError,
)
from ..host import savedstate
from ..host.accel import choose_accel
from ..host.build import ensure_appliance
from ..host.copies import sparse_again
from ..model.cpus import VcpuError
from ..model.disksets import DiskSetError
from ..model.drives import DriveSpec
from ..model.runtime import RuntimeRecordError
from ..model.saved import DESCRIPTION, DISKS, SavedAppliance
from ..model.slots import SlotState
from .core import ApplianceState, slot_identity
from .detached import DetachedArea


class SavingArea(DetachedArea):
    """Saving a running appliance with its slots, and restoring it."""

    def save(self, path: str | os.PathLike[str], with_disk_set: bool = False,
             live: bool = False, disks: str = "", *, timeout: float = 120.0) -> str:
        """Save the running appliance into new directory *path*, and stop it (with
        *live*, it runs on).

        As ``virsh save`` does: its memory, devices' state and every plugged slot,
        vCPU and NIC, with a description that :func:`guestslots.restore` checks; an
        existing *path* is an error.  What the guest had in its page cache, its
        mounts, the disk set: all come back with the restore.  The images stay where
        they are; a restore refuses any that changed since.

        With *with_disk_set* (or ``disks="diskset"``), the disk set's disks are
        saved too, and with ``disks="all"`` every writable slot's disk (as seed 004
        has it: a save without the disk set saves all disks): the VM is paused, each
        of those slots' disks, as the guest sees it, is copied into ``PATH/disks/``
        (same format), then the memory is saved, so the copies and the memory are
        of one instant.  The restore plugs the copies in those slots, in place (it
        writes to them: copy the directory first to restore it more than once); the
        original images are free to change.  Only writable slots (a read-only
        slot's image does not change; in the disk set one is refused).

        With *live* (seed 004's ``VIR_DOMAIN_SAVE_LIVE``), the appliance is resumed
        after the save, on its own images, and this object carries on: on QEMU the
        same process runs on (its RAM copied into the save, not moved); on libvirt,
        whose save always stops the domain, the domain is restored from the state
        just saved at once (a new QEMU process).  What the guest writes afterwards
        to a slot not saved with it changes that image, which a restore then
        refuses: save the disks too (``disks="all"``) to keep the save restorable.
        Returns the directory.  On failure the appliance runs on."""
        with self._lock:
            backend, _ = self._running("save")
            if not isinstance(backend, Saves):
                raise GuestslotsError(f"save: the {self.backend} backend cannot save an "
                                      "appliance with its slots yet")
            rules = self._tcg_limits_after_unplug()
            if rules is not None and not rules.save_after_unplug:
                raise VcpuError(None, "save: a vCPU was unplugged since this appliance "
                                f"started, and {rules.because('cannot then save its state')}; "
                                "shut down and launch again")
            if disks not in ("", "diskset", "all"):
                raise DiskSetError(f"save: disks is 'diskset' or 'all', not {disks!r}")
            if with_disk_set and disks == "all":
                raise DiskSetError("save: with_disk_set or disks='all', not both")
            with_disk_set = with_disk_set or disks == "diskset"
            indices = self._diskset.list() if with_disk_set else []
            if with_disk_set and not indices:
                raise DiskSetError("save: with_disk_set, but the disk set is empty "
                                   "(diskset_add first)")
            if disks == "all":
                indices = [i for i in self._filled()
                           if not (self._drive(i).readonly or self._drive(i).overlay)]
            self._writable_drives("save", indices, DiskSetError,
                                  "its image does not change; take it out of the disk set")
            directory = Path(os.path.abspath(path))
            try:
                directory.mkdir()
            except OSError as e:
                raise HostFileError(str(directory), f"cannot make the save directory: "
                                    f"{e.strerror}") from None
            self._update_runtime()
            record, layout = self._record, self._layout()
            assert record is not None
            copies: dict[int, DriveSpec] = {}
            not_resumed: NotResumed | None = None
            sock = None
            try:
                if indices:
                    (directory / DISKS).mkdir()
                copies = self._make_copies(backend, indices, str(directory / DISKS),
                                           zeroes_allocated=True)
                exports = [(i, copy.path, copy.format) for i, copy in copies.items()]
                try:
                    with self._watch():
                        sock = backend.save_appliance(directory, layout, timeout, exports,
                                                      live=live)
                except NotResumed as e:  # saved whole; it did not run on
                    not_resumed = e
                sparse_again(exports)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            # QEMU is gone: the images are as the state expects them from here on
            drives = {i: copies.get(i, d) for i, d in layout.disks}
            if copies:
                record = dataclasses.replace(record, slots=tuple(
                    dataclasses.replace(slot, path=copies[slot.index].path, chain=(),
                                        identity=slot_identity(copies[slot.index].path))
                    if slot.index in copies else slot for slot in record.slots))
            described = SavedAppliance(
                state_key=self._layout_key, record=record,
                kernel_names={s.index: s.kernel_name for s in self._table
                              if s.state is SlotState.FILLED and s.kernel_name},
                identities={i: slot_identity(d.path, d.chain) for i, d in drives.items()})
            (directory / DESCRIPTION).write_text(described.to_json())
            with_slots = f" with slots {', '.join(map(str, indices))}" if indices else ""
            if not_resumed is not None:
                self._teardown()
                self._state = ApplianceState.CLOSED
                self._table.show_config()
                raise GuestslotsError(f"save: appliance {self.id} was saved in "
                                      f"{directory}{with_slots}, but it could not run on "
                                      f"after the save: {not_resumed.cause}")
            if live:
                if sock is not None:  # restored at once, in a new process
                    assert self._agent is not None
                    with self._watch():
                        self._agent.switch(sock)
                        self._agent.call("ping", wait_for=30)
                self._update_runtime()
                self._say(f"appliance {self.id} saved in {directory}{with_slots}; it runs on")
                return str(directory)
            self._teardown()
            self._state = ApplianceState.CLOSED
            self._table.show_config()
            self._say(f"appliance {self.id} saved in {directory}{with_slots}")
            return str(directory)

    def _not_restorable(self, saved: SavedAppliance) -> str:
        """Why *saved*'s state does not fit this appliance: which QEMU, if it is not
        the one that saved it."""
        qemu = saved.record.qemu
        if qemu and os.path.realpath(qemu) != os.path.realpath(self.qemu_binary):
            there = "" if os.access(qemu, os.X_OK) else ", which is gone"
            return (f"saved with QEMU {qemu}{there}, not restorable by {self.qemu_binary} "
                    "(a saved state is one QEMU's only)")
        return "saved with another QEMU, appliance image or accelerator: not restorable here"

    def _restore(self, directory: Path, saved: SavedAppliance) -> None:
        """Boot *saved* (from *directory*) with its layout: see :func:`restore`."""
        with self._lock:
            self._adopt(saved.record)
            self.image = ensure_appliance(self._say)
            self.accel = choose_accel(self.qemu_binary, str(self.image.kernel),
                                      self._accel_request)
            backend = self._new_backend(self.image, self.accel.accel)
            try:
                if isinstance(backend, RestoresUnderItsName) and saved.record.domain:
                    backend.claim_domain_name(saved.record.domain)
                key = savedstate.state_key(backend.layout_key(), self.image.key)
                if key != saved.state_key:
                    raise RuntimeRecordError(str(directory), self._not_restorable(saved))
                if not isinstance(backend, Saves):
                    raise GuestslotsError(f"restore: the {self.backend} backend cannot "
                                          "restore a saved appliance yet")
                drives = {s.index: s.drive for s in self._table if s.drive is not None}
                layout = Layout(disks=tuple(sorted(drives.items())),
                                vcpus=tuple(sorted(self._vcpus.config - {0})),
                                nics=tuple(sorted(self._nics.config.items())))
                backend.restore_layout(layout, directory)
                self._layout_key = key
                started = time.monotonic()
                self._boot(backend, savedstate.SavedState(key, directory))
            except BaseException:
                backend.kill()  # nothing left running, no name held
                raise
            for index, drive in layout.disks:
                self._table.fill(index, drive, saved.kernel_names[index])
                identity = saved.identities[index]  # the image's, then its overlays'
                self._identities[index] = identity.split(";")[0] if identity else None
            self._vcpus.live = {0, *layout.vcpus}
            self._nics.live = dict(layout.nics)
            self._started = time.time()
            self.launched_from = "restored from a save"
            self._update_runtime()
            self._say(f"appliance {self.id} restored in {time.monotonic() - started:.2f} s")
