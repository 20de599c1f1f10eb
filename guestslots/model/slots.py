"""The slot table: which slot holds what, and what may happen next.

Pure model.  Slot *i* is SCSI target *i* on the appliance's virtio-scsi
controller and is named ``/dev/sd`` + letters(i) in the API, whatever name the
kernel gave it.  The appliance's own root disk is not a slot (it is a
virtio-blk disk), so it never takes a name here.

Each slot has a live side (what is plugged in the running appliance: ``state``,
``drive``) and a persistent one (``config``: what the next launch attaches, set by
``add_drive`` and by hotplug/unplug with ``CONFIG``).  While the appliance does not
run, the live side shows the definition.

Every check runs before anything changes; a refused call leaves the table
exactly as it was.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import DeviceNameError, LabelError, SlotError
from .drives import DriveSpec, check_label
from .names import device_name, parse_device

#: 256 virtio-scsi targets; one is kept back as libguestfs did, so programs
#: written for its limit behave the same.
MAX_SLOTS = 255


class SlotState(enum.Enum):
    """The state of a reserved slot."""

    EMPTY = "empty"
    FILLED = "filled"


@dataclass(frozen=True)
class Slot:
    """One reserved slot, as callers see it."""

    index: int
    state: SlotState
    drive: DriveSpec | None = None
    #: The kernel's name for the disk inside the appliance (``sdX``), once known.
    kernel_name: str | None = None
    #: What the next launch attaches to this slot (the persistent definition).
    config: DriveSpec | None = None

    @property
    def device(self) -> str:
        """The API device name, e.g. ``/dev/sdb``."""
        return device_name(self.index)

    @property
    def path(self) -> str | None:
        return self.drive.path if self.drive else None

    @property
    def format(self) -> str | None:
        return self.drive.format if self.drive else None

    @property
    def readonly(self) -> bool | None:
        return self.drive.readonly if self.drive else None

    @property
    def label(self) -> str | None:
        return self.drive.label if self.drive else None

    @property
    def serial(self) -> str | None:
        """The SCSI serial (and device_id): the label, or ``slotN`` if unlabelled."""
        if self.drive is None:
            return None
        return slot_serial(self.index, self.drive.label)


def slot_serial(index: int, label: str | None) -> str:
    """The serial a slot's disk carries: its label, or ``slot<index>``."""
    return label if label is not None else f"slot{index}"


class SlotTable:
    """The reserved slots of one appliance, and the rules for changing them."""

    def __init__(self, max_slots: int = MAX_SLOTS) -> None:
        if not 1 <= max_slots <= MAX_SLOTS:
            raise ValueError(f"max_slots must be 1-{MAX_SLOTS}, not {max_slots}")
        self.max_slots = max_slots
        self._slots: list[Slot] = []

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self._slots))

    def __getitem__(self, index: int) -> Slot:
        return self._slots[self._check_reserved(index)]

    # ---- checks (raise, change nothing) ----

    def _check_reserved(self, index: int) -> int:
        if not isinstance(index, int) or isinstance(index, bool):
            raise SlotError(-1, f"slot index must be an integer, not {index!r}")
        if index < 0 or index >= self.max_slots:
            raise SlotError(index, f"slot index {index} is out of range (0-{self.max_slots - 1})")
        if index >= len(self._slots):
            n = len(self._slots)
            have = f"slots 0-{n - 1} are" if n else "no slot is"
            raise SlotError(
                index,
                f"slot {index} is not reserved: {have} reserved; reserve slots before launch "
                "with add_drive('/dev/null')",
            )
        return index

    def check_label_free(self, label: str | None, index: int | None = None,
                         config: bool = False) -> None:
        """Raise :class:`LabelError` if *label* is used by a slot other than *index*
        (in the running appliance, or with *config* in the definition)."""
        if label is None:
            return
        check_label(label)
        for slot in self._slots:
            drive = slot.config if config else slot.drive
            if drive is not None and drive.label == label and slot.index != index:
                where = " in the definition" if config else ""
                raise LabelError(f"label {label!r} is already used by slot {slot.index}{where}")

    def config_plug_index(self, index: int, drive: DriveSpec) -> int:
        """Resolve and check the target of a hotplug into the definition (``CONFIG``):
        ``-1`` is the first slot the definition leaves empty."""
        if index == -1:
            for slot in self._slots:
                if slot.config is None:
                    index = slot.index
                    break
            else:
                raise SlotError(-1, f"no slot is empty in the definition: all "
                                    f"{len(self._slots)} reserved slots have a drive")
        slot = self[index]
        if slot.config is not None:
            raise SlotError(index, f"slot {index} ({slot.device}) already has a drive in the "
                                   f"definition ({slot.config.path}); unplug it with CONFIG "
                                   "first")
        self.check_label_free(drive.label, index, config=True)
        return index

    def config_unplug_index(self, index: int) -> int:
        """Resolve and check an unplug from the definition: ``-1`` is the highest slot
        the definition fills."""
        if index == -1:
            for slot in reversed(self._slots):
                if slot.config is not None:
                    return slot.index
            raise SlotError(-1, "no slot has a drive in the definition")
        slot = self[index]
        if slot.config is None:
            raise SlotError(index, f"slot {index} ({slot.device}) is already empty in the "
                                   "definition")
        return index

    def plug_index(self, index: int, drive: DriveSpec) -> int:
        """Resolve and check the target of a hotplug: ``-1`` is the first empty slot."""
        if index == -1:
            for slot in self._slots:
                if slot.state is SlotState.EMPTY:
                    index = slot.index
                    break
            else:
                n = len(self._slots)
                raise SlotError(-1, f"no empty slot: all {n} reserved slots are full")
        slot = self[index]
        if slot.state is SlotState.FILLED:
            raise SlotError(
                index,
                f"slot {index} ({slot.device}) is already full ({slot.path}); unplug it first",
            )
        self.check_label_free(drive.label, index)
        return index

    def unplug_index(self, index: int) -> int:
        """Resolve and check the target of an unplug: ``-1`` is the highest full slot."""
        if index == -1:
            for slot in reversed(self._slots):
                if slot.state is SlotState.FILLED:
                    return slot.index
            raise SlotError(-1, "no full slot to unplug")
        slot = self[index]
        if slot.state is SlotState.EMPTY:
            raise SlotError(index, f"slot {index} ({slot.device}) is already empty")
        return index

    # ---- changes ----

    def reserve(self, drive: DriveSpec | None) -> int:
        """Reserve the next slot, empty or holding *drive*; return its index."""
        if len(self._slots) >= self.max_slots:
            raise SlotError(len(self._slots), f"all {self.max_slots} slots are already reserved")
        if drive is not None:
            self.check_label_free(drive.label)
        index = len(self._slots)
        state = SlotState.EMPTY if drive is None else SlotState.FILLED
        self._slots.append(Slot(index, state, drive, config=drive))
        return index

    def fill(self, index: int, drive: DriveSpec, kernel_name: str | None = None) -> Slot:
        """Record *drive* in slot *index* (the caller checked with :meth:`plug_index`)."""
        config = self._slots[self._check_reserved(index)].config
        slot = Slot(index, SlotState.FILLED, drive, kernel_name, config)
        self._slots[index] = slot
        return slot

    def empty(self, index: int) -> Slot:
        config = self._slots[self._check_reserved(index)].config
        slot = Slot(index, SlotState.EMPTY, config=config)
        self._slots[index] = slot
        return slot

    def set_config(self, index: int, drive: DriveSpec | None, running: bool) -> Slot:
        """Make *drive* (or nothing) what the next launch attaches to slot *index*;
        while the appliance does not run, the live side shows it too."""
        old = self._slots[self._check_reserved(index)]
        if running:
            slot = Slot(index, old.state, old.drive, old.kernel_name, drive)
        else:
            state = SlotState.EMPTY if drive is None else SlotState.FILLED
            slot = Slot(index, state, drive, None, drive)
        self._slots[index] = slot
        return slot

    def show_config(self) -> None:
        """The appliance stopped: the live side shows the definition again."""
        self._slots = [
            Slot(s.index, SlotState.EMPTY if s.config is None else SlotState.FILLED, s.config,
                 None, s.config)
            for s in self._slots
        ]

    # ---- names ----

    def labels(self) -> dict[str, int]:
        """Label -> slot index, for every full slot with a label."""
        return {s.label: s.index for s in self._slots if s.label is not None}

    def kernel_to_api(self) -> dict[str, str]:
        """Kernel disk name (``sdX``) -> API disk name, for every full slot."""
        return {
            s.kernel_name: s.device.removeprefix("/dev/")
            for s in self._slots
            if s.kernel_name is not None
        }

    def resolve(self, name: str) -> tuple[Slot, int]:
        """Resolve an API device argument to (full slot, partition number).

        Raises :class:`DeviceNameError` for anything that is not a full,
        reserved slot: the appliance's root disk has no API name at all.
        """
        ref = parse_device(name)
        if ref.label is not None:
            index = self.labels().get(ref.label)
            if index is None:
                raise DeviceNameError(name, f"no slot has the label {ref.label!r}")
        else:
            assert ref.index is not None
            index = ref.index
        if not 0 <= index < len(self._slots):
            n = len(self._slots)
            plural = "s" if n != 1 else ""
            raise DeviceNameError(
                name, f"no such device: {n} slot{plural} reserved (slot {index} asked)"
            )
        slot = self._slots[index]
        if slot.state is SlotState.EMPTY:
            raise DeviceNameError(name, f"slot {index} ({slot.device}) is empty")
        return slot, ref.partition

    def to_kernel(self, name: str) -> str:
        """Translate an API device argument to the kernel's device path in the appliance."""
        slot, partition = self.resolve(name)
        if slot.kernel_name is None:
            raise DeviceNameError(name, f"slot {slot.index} has no device in the appliance yet")
        return f"/dev/{slot.kernel_name}" + (str(partition) if partition else "")
