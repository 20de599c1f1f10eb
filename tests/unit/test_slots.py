"""Slot-table rules: every refusal changes nothing."""

from __future__ import annotations

import copy

import pytest

from guestslots.errors import DeviceNameError, LabelError, SlotError
from guestslots.model.drives import DriveSpec
from guestslots.model.slots import MAX_SLOTS, SlotState, SlotTable


def drive(name: str = "a", label: str | None = None, readonly: bool = True) -> DriveSpec:
    return DriveSpec(f"/images/{name}.img", "raw", readonly, label)


def table(*drives: DriveSpec | None) -> SlotTable:
    t = SlotTable()
    for d in drives:
        t.reserve(d)
    return t


def snapshot(t: SlotTable) -> list[object]:
    return copy.deepcopy(list(t))


def test_reserve_in_call_order() -> None:
    t = table(None, None, drive("base", "base"))
    assert [s.device for s in t] == ["/dev/sda", "/dev/sdb", "/dev/sdc"]
    assert [s.state for s in t] == [SlotState.EMPTY, SlotState.EMPTY, SlotState.FILLED]
    assert t[2].serial == "base"


def test_serial_is_label_or_slot_name() -> None:
    t = table(drive("a"), drive("b", "data"))
    assert (t[0].serial, t[1].serial) == ("slot0", "data")


def test_plug_minus_one_is_first_empty_and_unplug_minus_one_highest_full() -> None:
    t = table(drive("a"), None, None, drive("d"))
    assert t.plug_index(-1, drive("x")) == 1
    assert t.unplug_index(-1) == 3
    t.empty(3)
    assert t.unplug_index(-1) == 0
    with pytest.raises(SlotError, match="no full slot"):
        SlotTable().unplug_index(-1)


def test_plug_errors_change_nothing() -> None:
    t = table(drive("a", "base"), None)
    before = snapshot(t)
    with pytest.raises(SlotError, match="already full"):
        t.plug_index(0, drive("x"))
    with pytest.raises(SlotError, match="not reserved: slots 0-1 are reserved"):
        t.plug_index(2, drive("x"))
    with pytest.raises(SlotError, match="out of range"):
        t.plug_index(MAX_SLOTS, drive("x"))
    with pytest.raises(SlotError, match="out of range"):
        t.plug_index(-2, drive("x"))
    with pytest.raises(LabelError, match="already used by slot 0"):
        t.plug_index(1, drive("x", "base"))
    t.fill(1, drive("y"))
    with pytest.raises(SlotError, match="no empty slot"):
        t.plug_index(-1, drive("z"))
    t.empty(1)
    assert snapshot(t) == before


def test_unplug_errors() -> None:
    t = table(None)
    with pytest.raises(SlotError, match="already empty"):
        t.unplug_index(0)
    with pytest.raises(SlotError, match="not reserved"):
        t.unplug_index(1)


def test_index_must_be_an_integer() -> None:
    t = table(None)
    with pytest.raises(SlotError, match="integer"):
        t.plug_index(True, drive())
    with pytest.raises(SlotError, match="integer"):
        t.unplug_index("0")  # type: ignore[arg-type]


def test_label_freed_by_unplug_and_reusable() -> None:
    t = table(drive("a", "data"), None)
    t.empty(0)
    assert t.plug_index(1, drive("b", "data")) == 1


def test_max_slots() -> None:
    t = SlotTable()
    for _ in range(MAX_SLOTS):
        t.reserve(None)
    with pytest.raises(SlotError, match=f"all {MAX_SLOTS} slots"):
        t.reserve(None)
    assert t[254].device == "/dev/sdiu"
    with pytest.raises(ValueError):
        SlotTable(256)


def test_duplicate_label_at_reserve() -> None:
    t = table(drive("a", "x"))
    with pytest.raises(LabelError):
        t.reserve(drive("b", "x"))
    assert len(t) == 1


def test_resolve_and_to_kernel_through_churn() -> None:
    t = table(None, None, None)
    # fill in scrambled order: the kernel names follow discovery, not the slots
    t.fill(2, drive("c", "third"), "sda")
    t.fill(0, drive("a"), "sdb")
    t.fill(1, drive("b"), "sdc")
    assert t.to_kernel("/dev/sda1") == "/dev/sdb1"
    assert t.to_kernel("/dev/vdc") == "/dev/sda"
    assert t.to_kernel("/dev/disk/guestslots/third-part2") == "/dev/sda2"
    assert t.to_kernel("/dev/disk/guestslots/slot1") == "/dev/sdc"
    assert t.kernel_to_api() == {"sda": "sdc", "sdb": "sda", "sdc": "sdb"}
    t.empty(0)
    t.fill(0, drive("a2"), "sdd")
    assert t.to_kernel("/dev/sda") == "/dev/sdd"


def test_resolve_refuses_empty_unreserved_unknown_label() -> None:
    t = table(None, None)
    t.fill(1, drive("b"), "sda")
    with pytest.raises(DeviceNameError, match="slot 0 .* is empty"):
        t.resolve("/dev/sda")
    with pytest.raises(DeviceNameError, match="no such device: 2 slots reserved"):
        t.resolve("/dev/sdc")
    with pytest.raises(DeviceNameError, match="no slot has the label"):
        t.resolve("/dev/disk/guestslots/nope")
    # the appliance's root disk (virtio-blk /dev/vda in the VM) has no API name:
    # /dev/vda is an alias of slot 0, never the root disk
    with pytest.raises(DeviceNameError, match="empty"):
        t.to_kernel("/dev/vda")
