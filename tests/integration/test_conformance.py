"""Same answers as libguestfs, for the same images attached in the same order,
whatever order guestslots' slots were filled in."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from guestslots import Appliance
from guestslots.testing import peer
from guestslots.testing import testimages as images

pytestmark = [
    pytest.mark.integration,
    pytest.mark.single_pass('compares with libguestfs once (minutes of libguestfs)'),
]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory, volumes: dict[str, list[Path]]
            ) -> list[tuple[Path, str]]:
    d = tmp_path_factory.mktemp("layouts")
    blank = d / "blank.img"
    images.sh("truncate", "-s", "8M", blank)
    lvm_root, (span1, span2), (raid_a, raid_b) = (
        volumes["lvm-root"][0], volumes["vg-span"], volumes["md-raid1"])
    return [
        (span2, "raw"),
        (lvm_root, "raw"),
        (raid_a, "raw"),
        (images.mbr_with_logicals(d, "mbrlog"), "raw"),
        (images.gpt_many(d, "gpt33"), "raw"),
        (images.btrfs(d / "btr.img", {"whoami": "btr\n"}), "raw"),
        (volumes["btrfs-subvols"][0], "raw"),
        (blank, "raw"),
        (images.xfs(d / "xfs.img", {"whoami": "xfs\n"}), "raw"),
        (images.named_image(d, "gptq", "gpt", "qcow2"), "qcow2"),
        (raid_b, "raw"),
        (span1, "raw"),
    ]


def describe(app: Appliance) -> dict[str, Any]:
    filesystems = app.list_filesystems()
    whoami = {}
    for dev, fstype in filesystems.items():
        if fstype in ("unknown", "swap"):
            continue
        with app.mounted(dev):
            whoami[dev] = app.cat("/whoami") if app.is_file("/whoami") else None
    return {"list_devices": app.list_devices(), "list_partitions": app.list_partitions(),
            "list_filesystems": filesystems, "whoami": whoami,
            "list_md_devices": app.list_md_devices(), "pvs": app.pvs(), "vgs": app.vgs(),
            "lvs": app.lvs()}


def test_same_answers_as_libguestfs(layouts: list[tuple[Path, str]]) -> None:
    missing = peer.available()
    if missing:
        pytest.skip(f"cannot compare with libguestfs: {missing}")
    order = list(range(len(layouts)))
    random.Random(5).shuffle(order)
    with Appliance() as app:
        for _ in layouts:
            app.add_drive("/dev/null")
        app.launch()
        for index in order:  # scrambled: the kernel's names differ from the slots'
            path, fmt = layouts[index]
            app.hotplug(index, path, format=fmt)
        ours = describe(app)
        tcg = app.accel is not None and app.accel.accel == "tcg"
    theirs = peer.describe({"force_tcg": tcg, "drives": [[str(p), f] for p, f in layouts]})
    for key in ("list_devices", "list_partitions", "list_filesystems", "whoami",
                "list_md_devices", "pvs", "vgs", "lvs"):
        mine, peers = ours[key], theirs[key]
        if isinstance(mine, dict):
            mine, peers = list(mine.items()), [tuple(x) for x in peers.items()]
        assert mine == peers, key
    mbr = ours["list_devices"][3]
    assert ours["list_filesystems"][f"{mbr}6"] == "swap"
    assert f"{mbr}2" in ours["list_partitions"]  # the extended partition is listed...
    assert f"{mbr}2" not in ours["list_filesystems"]  # ...but holds no filesystem
    assert len(ours["list_partitions"]) == 2 + 1 + 4 + 33 + 1 + 1 + 1
    assert ours["lvs"] == ["/dev/vgroot/data", "/dev/vgroot/root", "/dev/vgspan/big"]
    assert ours["list_md_devices"] == ["/dev/md0"]
    assert ours["whoami"]["/dev/vgspan/big"] == "vg-span-big\n"
    btrfs_disk = ours["list_devices"][6]
    assert ours["whoami"][f"btrfsvol:{btrfs_disk}1/home"] == "btrfs-home\n"
