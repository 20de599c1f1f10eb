"""Bad input gets a clear error; the slot table, the other slots and the appliance are intact."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from guestslots import (
    Appliance,
    DeviceNameError,
    DriveError,
    GuestOSError,
    LabelError,
    SlotError,
    StateError,
)
from guestslots.testing import testimages as images

from .conftest import Image, whoami

pytestmark = pytest.mark.integration


@pytest.fixture
def witness(app: Appliance, corpus: dict[str, Image]) -> Callable[[], None]:
    """A full slot whose image must stay readable whatever else fails."""
    img = corpus["whole-qcow2-ext4"]
    app.hotplug(7, img.path, format="qcow2", label="witness")
    before = app.slots()

    def check() -> None:
        assert app.slots() == before
        assert whoami(app, "/dev/sdh") == img.name

    return check


def _bad_qcow2(path: Path) -> Path:
    path.write_bytes(b"QFI\xfb" + b"\xff" * 4092)  # qcow2 magic, garbage header
    return path


def test_bad_images(app: Appliance, witness: Callable[[], None], image_dir: Path) -> None:
    good = images.ext4(image_dir / "good.img", {"whoami": "good\n"})
    raw_as_qcow2 = images.qcow2(good, image_dir / "good.qcow2")
    backing = image_dir / "with-backing.qcow2"
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", good, backing)
    cases: list[tuple[Path | str, str | None, type[Exception], str]] = [
        (image_dir / "missing.img", None, DriveError, "no such file"),
        (image_dir, None, DriveError, "is a directory"),
        (_bad_qcow2(image_dir / "corrupt.qcow2"), "qcow2", DriveError, "QEMU cannot open it"),
        (raw_as_qcow2, None, DriveError, "looks like a qcow2 image"),
        (good, "qcow2", DriveError, "is not a qcow2 image"),
        (backing, "qcow2", DriveError, "names a backing file"),
        (good, "vmdk", DriveError, "not supported"),
    ]
    for path, fmt, exc, message in cases:
        with pytest.raises(exc, match=message) as e:
            app.hotplug(0, path, format=fmt)
        assert str(path) in str(e.value)
        witness()
    # the slot those attempts aimed at is still usable
    assert app.hotplug(0, good) == 0
    assert whoami(app, "/dev/sda") == "good"


def test_bad_slot_indexes_and_labels(
    app: Appliance, witness: Callable[[], None], corpus: dict[str, Image]
) -> None:
    img = corpus["mbr-raw-ext4"].path
    for index, message in [(70, "slot 70 is not reserved"), (255, "out of range"),
                           (-2, "out of range"), (7, "already full")]:
        with pytest.raises(SlotError, match=message):
            app.hotplug(index, img)
        witness()
    with pytest.raises(SlotError, match="already empty"):
        app.unplug(3)
    with pytest.raises(SlotError, match="not reserved"):
        app.unplug(200)
    with pytest.raises(LabelError, match="already used by slot 7"):
        app.hotplug(1, img, label="witness")
    with pytest.raises(LabelError, match="must start with a letter"):
        app.hotplug(1, img, label="no/slash")
    with pytest.raises(LabelError, match="reserved"):
        app.hotplug(1, img, label="slot1")
    with pytest.raises(DriveError, match="a slot is emptied by unplug"):
        app.hotplug(1, "/dev/null")
    witness()


def test_wrong_state_and_wrong_device_arguments(
    app: Appliance, witness: Callable[[], None]
) -> None:
    with pytest.raises(StateError, match="reserve every slot before launch"):
        app.add_drive("/dev/null")
    with pytest.raises(StateError, match="launch: the appliance must be not launched"):
        app.launch()
    with pytest.raises(DeviceNameError, match="slot 0 .*is empty"):
        app.vfs_type("/dev/sda")
    with pytest.raises(DeviceNameError, match="no such device"):
        app.vfs_type("/dev/sdzz")
    with pytest.raises(DeviceNameError, match="not a device name"):
        app.vfs_type("/dev/root")
    with pytest.raises(GuestOSError, match="not a slot device, LV or md array") as e:
        app.vfs_type("/dev/mapper/root")  # an LV's name, but there is no such LV
    assert e.value.errno == errno.ENODEV
    with pytest.raises(GuestOSError, match="/dev/sdh is on a slot plugged read-only: use "
                                           "mount_ro") as read_only:
        app.mount("/dev/sdh", "/")
    assert read_only.value.errno == errno.EROFS
    with pytest.raises(GuestOSError) as not_mounted:
        app.cat("/anything")  # nothing mounted yet
    assert not_mounted.value.errno == errno.ENOENT
    assert "call mount first" in str(not_mounted.value)
    witness()


def test_error_messages_use_slot_names_not_kernel_names(
    app: Appliance, image_dir: Path
) -> None:
    blank = image_dir / "blank.img"
    images.sh("truncate", "-s", "8M", blank)
    # Plug in reverse order so the kernel's names differ from the slots'.
    for index in (5, 4, 3):
        app.hotplug(index, blank)
    kernel_names = {s.index: s.kernel_name for s in app.slots() if s.kernel_name}
    assert kernel_names[3] != "sdd"  # the kernel named them by discovery order
    with pytest.raises(GuestOSError) as e:
        app.mount_ro("/dev/sdd", "/")
    assert "/dev/sdd" in str(e.value)
    assert f"/dev/{kernel_names[3]}" not in str(e.value)


def test_the_root_disk_cannot_be_named(app: Appliance, corpus: dict[str, Image]) -> None:
    # /dev/vda is an alias of slot 0 (/dev/sda), never the appliance's own root disk
    with pytest.raises(DeviceNameError, match="slot 0"):
        app.blkid("/dev/vda")
    app.hotplug(0, corpus["whole-raw-xfs"].path)
    assert app.vfs_type("/dev/vda") == "xfs"
    # and the agent itself refuses any device that is not a slot disk
    agent = app._agent  # the wire below the translation layer, on purpose
    assert agent is not None
    with pytest.raises(GuestOSError, match="not a slot device"):
        agent.call("blkid", device="/dev/vda")
    with pytest.raises(GuestOSError, match="not a slot device"):
        agent.call("mount", device="/dev/vda", mountpoint="/")


def test_an_image_may_be_in_two_slots_only_if_none_writes(
    app: Appliance, image_dir: Path
) -> None:
    img = images.ext4(image_dir / "shared.img", {"whoami": "shared\n"})
    app.hotplug(1, img, readonly=False)
    with pytest.raises(DriveError, match=r"slot 1 \(/dev/sdb\) holds this image writable"):
        app.hotplug(2, img)
    with pytest.raises(DriveError, match=r"slot 1 \(/dev/sdb\) holds this image writable"):
        app.hotplug(2, img, overlay=True)
    assert app.slots()[2].drive is None
    app.unplug(1)
    app.hotplug(1, img)
    with pytest.raises(DriveError, match=r"slot 1 \(/dev/sdb\) holds this image read-only"):
        app.hotplug(2, img, readonly=False)
    app.hotplug(2, img)  # read-only twice: nobody writes
    assert whoami(app, "/dev/sdc") == "shared"


def test_resolve_link_waits_as_long_as_the_caller_says(app: Appliance) -> None:
    with pytest.raises(GuestOSError, match="did not appear in 1 s") as e:
        app.resolve_link("/dev/disk/guestslots/nosuchlabel", timeout=1)
    assert e.value.errno == errno.ETIMEDOUT
    assert app.list_filesystems() == {}  # the channel is free at once
