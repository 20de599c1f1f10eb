"""The conformance peer's correction of libguestfs 1.48's untranslated btrfs subvolume
names (a libguestfs defect seen in CI: the kernel probed the disks in another order)."""

from __future__ import annotations

from guestslots.testing.peer import btrfsvols_translated


def test_subvolumes_take_the_name_libguestfs_gives_their_device() -> None:
    found = {"/dev/sdf": "btrfs", "/dev/sdg1": "btrfs",
             "btrfsvol:/dev/sdm1/root": "btrfs", "btrfsvol:/dev/sdm1/home/a": "btrfs",
             "/dev/sdj1": "ext4"}
    assert btrfsvols_translated(found) == {
        "btrfsvol:/dev/sdm1/root": "btrfsvol:/dev/sdg1/root",
        "btrfsvol:/dev/sdm1/home/a": "btrfsvol:/dev/sdg1/home/a"}


def test_names_already_right_and_logical_volumes_are_left_alone() -> None:
    found = {"/dev/sda1": "btrfs", "btrfsvol:/dev/sda1/root": "btrfs",
             "/dev/vg/lv": "btrfs", "btrfsvol:/dev/vg/lv/home": "btrfs",
             "/dev/sdb1": "ext4", "btrfsvol:/dev/sdc1/orphan": "btrfs"}
    assert btrfsvols_translated(found) == {}
