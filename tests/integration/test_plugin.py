"""The pytest plugin's fixtures, used as a project using guestslots would."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from guestslots import Appliance, SlotState
from guestslots import testimages as images
from guestslots.pytest_plugin import Disk

pytestmark = pytest.mark.integration


def test_disk_fixture_plugs_for_one_test(
    app: Appliance, disk: Callable[..., Disk], image_dir: Path
) -> None:
    img = images.ext4(image_dir / "plugin.img", {"whoami": "plugin\n"})
    d = disk(img, label="plugged")
    assert app.slots()[d.index].state is SlotState.FILLED
    assert app.list_disk_labels() == {"plugged": d.device}
    with app.mounted(d.device):
        assert app.cat("/whoami") == "plugin\n"


def test_writable_disk_never_changes_the_image(
    app: Appliance, disk: Callable[..., Disk], image_dir: Path
) -> None:
    img = images.qcow2(images.ext4(image_dir / "ovl.raw", {"whoami": "ovl\n"}),
                       image_dir / "ovl.qcow2")
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    d = disk(img, format="qcow2", writable=True)
    assert app.slots()[d.index].drive is not None
    assert app.slots()[d.index].drive.overlay  # type: ignore[union-attr]
    app.mount(d.device, "/")
    app.write("/scribble", b"x" * 100_000)
    app.rm("/whoami")
    app.umount_all()
    app.unplug(d.index)  # the writes go with the overlay
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before
    again = disk(img, format="qcow2")
    with app.mounted(again.device):
        assert app.ls("/") == ["lost+found", "whoami"]


def test_every_test_starts_with_empty_slots(app: Appliance) -> None:
    # the disks plugged by the tests above were unplugged after each of them
    assert all(s.state is SlotState.EMPTY for s in app.slots())
