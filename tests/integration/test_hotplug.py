"""Hotplug and unplug on the real appliance: the right image behind every name."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from guestslots import Appliance, DeviceBusyError, SlotState
from guestslots.testing import testimages as images

from .conftest import RESERVED, Image, fs_device, whoami

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


def check_all(app: Appliance, placed: dict[int, Image]) -> None:
    """Every full slot shows its own image under its own name, and nothing else is full."""
    full = {s.index for s in app.slots() if s.state is SlotState.FILLED}
    assert full == set(placed)
    filesystems = app.list_filesystems()
    for index, image in placed.items():
        dev = fs_device(app, index, image)
        assert filesystems[dev] == image.fstype, (dev, filesystems)
        assert whoami(app, dev) == image.name


def test_list_devices_is_every_reserved_slot_and_never_the_root_disk(app: Appliance) -> None:
    devices = app.list_devices()
    assert len(devices) == RESERVED
    assert devices[:3] == ["/dev/sda", "/dev/sdb", "/dev/sdc"]
    assert devices[26:28] == ["/dev/sdaa", "/dev/sdab"]
    assert not any(d.startswith("/dev/vd") for d in devices)
    assert app.list_filesystems() == {}
    assert app.list_partitions() == []


def test_hotplug_unplug_in_every_order(app: Appliance, corpus: dict[str, Image]) -> None:
    rng = random.Random(2026)
    imgs = list(corpus.values())
    placed: dict[int, Image] = {}
    # Scrambled fills, partial unplugs and refills into other slots (including
    # slots past 26, so two-letter names are exercised) with a check after each step.
    candidate_slots = [0, 1, 2, 5, 26, 27, 40, 69]
    for _round in range(3):
        free_images = [i for i in imgs if i not in placed.values()]
        rng.shuffle(free_images)
        for image in free_images:
            index = rng.choice([s for s in candidate_slots if s not in placed])
            assert app.hotplug(index, image.path, format=image.format) == index
            placed[index] = image
            check_all(app, placed)
        for index in rng.sample(sorted(placed), k=2):
            assert app.unplug(index) == index
            del placed[index]
            check_all(app, placed)


def test_partitions_are_listed_under_slot_names(app: Appliance, corpus: dict[str, Image]) -> None:
    mbr, gpt = corpus["mbr-raw-ext4"], corpus["gpt-qcow2-ext4"]
    app.hotplug(3, gpt.path, format="qcow2")
    app.hotplug(1, mbr.path)
    app.hotplug(2, corpus["whole-raw-xfs"].path)
    assert app.list_partitions() == ["/dev/sdb1", "/dev/sdd1"]
    assert app.list_filesystems() == {"/dev/sdb1": "ext4", "/dev/sdc": "xfs", "/dev/sdd1": "ext4"}
    assert app.blkid("/dev/sdd")["PTTYPE"] == "gpt"
    assert app.blkid("/dev/sdb")["PTTYPE"] == "dos"
    assert app.vfs_type("/dev/sdc") == "xfs"


def test_minus_one_picks_first_empty_and_highest_full(
    app: Appliance, corpus: dict[str, Image]
) -> None:
    img = corpus["whole-qcow2-ext4"]
    assert app.hotplug(-1, img.path, format="qcow2") == 0
    assert app.hotplug(-1, corpus["mbr-raw-ext4"].path) == 1
    assert app.unplug(-1) == 1
    assert app.unplug(-1) == 0
    assert all(s.state is SlotState.EMPTY for s in app.slots())


def test_data_written_survives_unplug_and_replug(app: Appliance, image_dir: Path) -> None:
    raw = images.ext4(image_dir / "rw.raw", {"whoami": "rw\n"}, size_mib=32)
    img = images.qcow2(raw, image_dir / "rw.qcow2")
    payload = os.urandom(3 * 1024 * 1024 + 17)
    app.hotplug(4, img, format="qcow2", readonly=False, label="scratch")
    app.mount("/dev/disk/guestslots/scratch", "/")
    app.write("/payload.bin", payload)
    app.mkdir("/dir")
    app.umount_all()
    app.unplug(4)
    check = subprocess.run(["qemu-img", "check", "--output=json", "-f", "qcow2", str(img)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout).get("check-errors", 0) == 0
    app.hotplug(9, img, format="qcow2")
    with app.mounted("/dev/sdj", "/"):
        assert app.checksum("sha256", "/payload.bin") == hashlib.sha256(payload).hexdigest()
        assert app.is_dir("/dir")


def test_busy_slot_is_refused_unless_forced_and_force_keeps_data(
    app: Appliance, image_dir: Path
) -> None:
    img = images.ext4(image_dir / "busy.img", {"whoami": "busy\n"})
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda", "/")
    app.write("/unsynced", b"written just before a forced unplug")
    with pytest.raises(DeviceBusyError) as e:
        app.unplug(0)
    assert "/dev/sda is mounted on /" in str(e.value)
    assert e.value.index == 0
    # refused: still plugged and mounted, and the file is still readable
    assert app.slots()[0].state is SlotState.FILLED
    assert app.cat("/unsynced") == "written just before a forced unplug"
    app.unplug(0, force=True)
    assert app.mounts() == []
    app.hotplug(0, img)
    with app.mounted("/dev/sda"):
        assert app.cat("/unsynced") == "written just before a forced unplug"


def test_64_slots_at_once_each_readable(app: Appliance, image_dir: Path) -> None:
    paths = [images.ext4(image_dir / f"many{i}.img", {"whoami": f"many{i}\n"}, size_mib=4)
             for i in range(64)]
    order = list(range(64))
    random.Random(64).shuffle(order)
    for i in order:
        app.hotplug(i, paths[i])
    filesystems = app.list_filesystems()
    assert len(filesystems) == 64
    for i in range(64):
        dev = app.slots()[i].device
        assert filesystems[dev] == "ext4"
        assert whoami(app, dev) == f"many{i}"


def test_labels_and_udev_links(app: Appliance, corpus: dict[str, Image]) -> None:
    gpt, xfs = corpus["gpt-qcow2-ext4"], corpus["whole-raw-xfs"]
    app.hotplug(30, gpt.path, format="qcow2", label="data")
    app.hotplug(2, xfs.path)
    assert app.list_disk_labels() == {"data": "/dev/sdae"}
    slot = app.slots()[30]
    assert (slot.label, slot.serial, slot.device) == ("data", "data", "/dev/sdae")
    assert app.slots()[2].serial == "slot2"
    # the links udev makes inside the appliance point at the right devices
    assert app.resolve_link("/dev/disk/guestslots/data") == "/dev/sdae"
    assert app.resolve_link("/dev/disk/guestslots/data-part1") == "/dev/sdae1"
    assert app.resolve_link("/dev/disk/guestslots/slot30") == "/dev/sdae"
    assert app.resolve_link("/dev/disk/guestslots/slot2") == "/dev/sdc"
    # and labels work as arguments without waiting for udev
    assert whoami(app, "/dev/disk/guestslots/data-part1") == gpt.name
