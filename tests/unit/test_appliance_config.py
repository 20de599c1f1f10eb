"""The Appliance before launch: reservations, checks and state errors (no VM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestslots import Appliance, DriveError, LabelError, SlotState, StateError


def test_reservations_before_launch(tmp_path: Path) -> None:
    img = tmp_path / "a.img"
    img.write_bytes(b"\0" * 4096)
    app = Appliance()
    assert app.add_drive("/dev/null") == 0
    assert app.add_drive(img, label="base") == 1
    assert app.list_devices() == ["/dev/sda", "/dev/sdb"]
    slots = app.slots()
    assert [s.state for s in slots] == [SlotState.EMPTY, SlotState.FILLED]
    assert (slots[1].path, slots[1].readonly, slots[1].serial) == (str(img), True, "base")
    assert app.list_disk_labels() == {"base": "/dev/sdb"}
    assert app.max_slots() == 255


def test_bad_drives_before_launch_change_nothing(tmp_path: Path) -> None:
    app = Appliance()
    app.add_drive("/dev/null")
    with pytest.raises(DriveError, match="no such file"):
        app.add_drive(tmp_path / "missing.img")
    with pytest.raises(LabelError, match="an empty slot has no label"):
        app.add_drive("/dev/null", label="x")
    assert len(app.slots()) == 1


def test_calls_that_need_a_running_appliance() -> None:
    app = Appliance()
    app.add_drive("/dev/null")
    with pytest.raises(StateError, match="hotplug: the appliance must be running, but it is "
                                         "not launched"):
        app.hotplug(0, "/dev/null")
    with pytest.raises(StateError, match="unplug"):
        app.unplug(0)
    with pytest.raises(StateError, match="list_filesystems"):
        app.list_filesystems()
    app.shutdown()  # shutting down an appliance never launched is fine
    with pytest.raises(StateError, match="launch: .* but it is shut down"):
        app.launch()
    with pytest.raises(StateError, match="add_drive"):
        app.add_drive("/dev/null")


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend 'xen'"):
        Appliance("xen")
