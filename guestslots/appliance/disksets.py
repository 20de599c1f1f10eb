"""The disk set: which slots it holds, their export and snapshots, and the
copies of slots' disks that export, save and migration make."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..backends import (
    Snapshots,
)
from ..errors import (
    DeviceNameError,
    FlagError,
    GuestslotsError,
    HostFileError,
)
from ..guest.base import serialised
from ..host.copies import make_target, removed_on_failure, sparse_again
from ..host.proc import CommandError, run
from ..host.room import check_room
from ..model.disksets import DiskSetError
from ..model.drives import DriveSpec
from ..model.names import parse_device
from ..model.snapshots import MAX_CHAIN, SnapshotError, check_name, overlay_path
from ..model.sources import shown
from ..wire import LINK_DIR
from .nics import NicsArea


def _reserved_flags(call: str, flags: int) -> None:
    """Seed 004's disk-set calls take flags "ignored for now": 0, and nothing else, so
    that a later meaning cannot change what an old caller gets."""
    if isinstance(flags, bool) or not isinstance(flags, int) or flags != 0:
        raise FlagError(call, flags, f"flags are reserved: 0 only, not {flags!r}")


class DiskSetArea(NicsArea):
    """The disk set: which slots it holds, their export and snapshots, and the"""

    def _diskset_slot(self, call: str, slot: int | str, flags: int) -> int:
        """The slot index a disk-set call names (an index, its digits, a device name
        such as ``/dev/sdb``, a label or its link), once its reserved *flags* are 0."""
        _reserved_flags(call, flags)
        if isinstance(slot, str) and slot.isdigit():
            return int(slot)
        if not isinstance(slot, str):
            return slot
        try:
            ref = parse_device(slot if slot.startswith("/dev/") else f"{LINK_DIR}/{slot}")
        except DeviceNameError as e:
            raise DiskSetError(f"{call}: {e}") from None
        if ref.partition:
            raise DiskSetError(f"{call}: {slot} is a partition; the disk set holds disks")
        if ref.label is not None:
            index = self._table.labels().get(ref.label)
            if index is None:
                raise DiskSetError(f"{call}: no slot has the label {ref.label!r}")
            return index
        assert ref.index is not None
        return ref.index

    @serialised
    def diskset_add(self, slot: int | str, flags: int = 0) -> int:
        """Add full slot *slot* to this appliance's disk set (the slots that
        snapshots, export and migration act on): 0, or 1 if it was in it already.

        *slot* is a slot index, a device name (``/dev/sdb``) or a slot's label.  An
        empty slot or a name that is no slot is an error.  *flags* are reserved, as
        the seed's: 0 only (:class:`FlagError` otherwise).  The set is kept in the
        runtime record; a slot unplugged from the running appliance leaves it (with a
        warning), and so, at the next launch, does a slot the definition no longer
        has."""
        index = self._diskset_slot("diskset_add", slot, flags)
        before = self._diskset.list()
        done = self._diskset.add(index, self._filled(), len(self._table))
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_remove(self, slot: int | str, flags: int = 0) -> int:
        """Take slot *slot* (as for :meth:`diskset_add`) out of the disk set: 0, or 1
        if it was not in it (an empty slot never is).  *flags*: 0 only."""
        index = self._diskset_slot("diskset_remove", slot, flags)
        before = self._diskset.list()
        done = self._diskset.remove(index, len(self._table))
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_add_all(self, flags: int = 0) -> int:
        """Put every full slot in the disk set: 0.  *flags*: 0 only."""
        _reserved_flags("diskset_add_all", flags)
        before = self._diskset.list()
        done = self._diskset.add_all(self._filled())
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_remove_all(self, flags: int = 0) -> int:
        """Empty the disk set: 0.  *flags*: 0 only."""
        _reserved_flags("diskset_remove_all", flags)
        before = self._diskset.list()
        done = self._diskset.remove_all()
        if self._diskset.list() != before:  # a call that changes nothing writes nothing
            self._update_runtime()
        return done

    @serialised
    def diskset_size(self, flags: int = 0) -> int:
        """How many slots the disk set holds.  *flags*: 0 only."""
        _reserved_flags("diskset_size", flags)
        return self._diskset.size()

    @serialised
    def diskset_list(self, n: int | None = None, flags: int = 0) -> list[int]:
        """The slots in the disk set, in index order; at most *n* of them (the
        seed's ``List(dom, array, n, flags)``; None: all).  *flags*: 0 only."""
        _reserved_flags("diskset_list", flags)
        return self._diskset.list(n)

    def export(self, dest_dir: str | os.PathLike[str], diskset: bool = True, *,
               progress: Callable[[int, int], None] | None = None,
               timeout: float = 3600.0) -> list[str]:
        """Copy the disks of the disk set (every full slot with ``diskset=False``) into
        host directory *dest_dir*, consistent and all of one instant, while the
        appliance runs; return the copies' paths.

        Each copy is what the guest sees on that slot, in the image's format, named
        as the image is (never replacing a file: an existing one is an error and
        nothing is copied).  The guest filesystems on those disks are frozen (written
        out and held) only while the copies start; QEMU's block jobs then copy the
        data as it was at that instant (copy-before-write) while the guest goes on.
        *progress* is called with (bytes copied, bytes in all).  On libvirt, one
        push-mode backupBegin does the same.
        """
        with self._lock:
            backend, _ = self._running("export")
            indices = self._diskset.list() if diskset else self._filled()
            if not indices:
                raise DiskSetError("export: the disk set is empty (diskset_add first)"
                                   if diskset else "export: no slot holds a disk")
            dest = Path(dest_dir)
            if not dest.is_dir():
                raise HostFileError(str(dest), "not a directory")
            exports: list[tuple[int, str, str]] = []
            for index in indices:
                drive = self._table[index].drive
                assert drive is not None
                target = dest / Path(drive.path).name
                if target.exists() or any(e[1] == str(target) for e in exports):
                    raise HostFileError(str(target), "exists (or two slots' images share "
                                        "its name): export never replaces a file")
                exports.append((index, str(target), drive.format))
            check_room(str(dest), [(i, self._drive(i)) for i in indices],
                       zeroes_allocated=True)
            with removed_on_failure() as made, self._watch():
                for index, path, fmt in exports:
                    make_target(path, fmt, backend.disk_size(index, self.call_timeout))
                    made.append(path)
                disks = [f"/dev/{self._table[i].kernel_name}" for i in indices]
                frozen = self._call("freeze", disks=disks)
                thawed: list[bool] = []

                def thaw() -> None:  # in QEMU's event thread, as soon as the jobs run
                    with contextlib.suppress(GuestslotsError):
                        assert self._agent is not None
                        self._agent.call("thaw", mountpoints=frozen)
                        thawed.append(True)

                try:
                    backend.export_disks(exports, thaw, progress, timeout)
                finally:
                    if not thawed:  # again, here, with the usual error handling
                        self._call("thaw", mountpoints=frozen)
                sparse_again(exports)
            return made

    def _make_copies(self, backend: Any, indices: Sequence[int], directory: str,
                     zeroes_allocated: bool = False) -> dict[int, DriveSpec]:
        """New, empty image files in *directory* for the slots *indices* to be copied
        into (the disks' sizes and formats), by slot; on failure none is left.  Copies
        that would not fit in *directory* are refused first (see
        :mod:`guestslots.host.room`; *zeroes_allocated* for a backup job's copies)."""
        check_room(directory, [(i, self._drive(i)) for i in indices], zeroes_allocated)
        copies: dict[int, DriveSpec] = {}
        try:
            for index in indices:
                drive = self._drive(index)
                ext = "qcow2" if drive.format == "qcow2" else "img"
                target = os.path.join(directory, f"slot{index}.{ext}")
                make_target(target, drive.format,
                             backend.disk_size(index, self.call_timeout))
                copies[index] = dataclasses.replace(drive, path=target, chain=())
        except BaseException:
            for copy in copies.values():
                with contextlib.suppress(OSError):
                    os.unlink(copy.path)
            raise
        return copies

    def snapshot(self, name: str, diskset: bool = False, *, timeout: float = 60.0
                 ) -> list[str]:
        """Take external snapshot *name* of every writable slot's disk (with
        ``diskset=True``: of the disk set's slots), all at one instant.

        As the seed has it: a snapshot is of all disks unless it asks for the disk
        set (read-only and ``overlay=True`` slots are left out of "all", as libvirt
        leaves out read-only disks; in the disk set they are refused).  While the
        appliance runs; the overlay files are returned.  Each slot's disk goes on a
        new qcow2 overlay, ``STEM.NAME.qcow2`` beside its image (never replacing a
        file), which takes the guest's writes from then on; the image stays exactly
        as it was at the snapshot.  That works for raw images too.  The guest
        filesystems on those disks are frozen (written out and held) only while one
        QMP ``transaction`` of ``blockdev-snapshot`` switches every disk at once, so
        each image is consistent; other slots are untouched.  Each overlay's header
        names its backing file (for ``qemu-img commit`` and other tools), but QEMU is
        told its backing node and never opens a file a header names.  The runtime
        record lists each slot's overlays; relaunch, migrate, save and restore carry
        them.  On libvirt, one disk-only
        external ``snapshotCreateXML`` of exactly those disks."""
        with self._lock:
            backend, _ = self._running("snapshot")
            check_name(name)
            if not isinstance(backend, Snapshots):
                raise SnapshotError(f"snapshot: the {self.backend} backend cannot take "
                                    "snapshots yet")
            indices = self._diskset.list() if diskset else [
                i for i in self._filled() if not (self._drive(i).readonly
                                                  or self._drive(i).overlay)]
            if not indices:
                raise DiskSetError("snapshot: the disk set is empty (diskset_add first)"
                                   if diskset else "snapshot: no writable slot holds a "
                                   "disk (read-only slots keep nothing to snapshot)")
            plans: list[tuple[int, str, str, str]] = []  # index, overlay, backing, format
            for index, drive in self._writable_drives(
                    "snapshot", indices, SnapshotError,
                    "its writes are thrown away already; nothing to keep").items():
                if drive.remote is not None:
                    raise SnapshotError(f"snapshot: slot {index} ({shown(drive.path)}) is a "
                                        "remote source: its overlays are made beside a local "
                                        "image, and this one has no directory")
                chain = drive.chain
                if len(chain) >= MAX_CHAIN:
                    raise SnapshotError(f"snapshot: slot {index} has {MAX_CHAIN} "
                                        "snapshots already")
                top = chain[-1] if chain else drive.path
                path = overlay_path(drive.path, name)
                if os.path.lexists(path) or path in (p for _, p, _, _ in plans):
                    raise HostFileError(path, "exists: a snapshot's overlay never replaces "
                                        "a file")
                plans.append((index, path, top, "qcow2" if chain else drive.format))
            with removed_on_failure() as made:
                for index, path, top, fmt in plans:
                    size = backend.disk_size(index, self.call_timeout)
                    try:
                        run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", fmt,
                             "-b", os.path.abspath(top), path, str(size)])
                    except CommandError as e:
                        raise HostFileError(path, f"qemu-img create: {e.reason}: "
                                            f"{e.output.strip()}") from None
                    made.append(path)
                disks = [f"/dev/{self._table[i].kernel_name}" for i in indices]
                with self._watch():
                    frozen = self._call("freeze", disks=disks)
                    try:
                        backend.snapshot_disks([(i, p) for i, p, _, _ in plans], timeout)
                    finally:
                        self._call("thaw", mountpoints=frozen)
            for index, path, _, _ in plans:
                slot = self._table[index]
                assert slot.drive is not None
                grown = dataclasses.replace(slot.drive, chain=(*slot.drive.chain, path))
                if slot.config == slot.drive:  # the definition follows, as libvirt's does
                    self._table.set_config(index, grown, running=True)
                self._table.fill(index, grown, slot.kernel_name)
            self._update_runtime()
            return [path for _, path, _, _ in plans]
