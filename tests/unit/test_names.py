"""Device names: index <-> letters, argument parsing, output translation."""

from __future__ import annotations

import random

import pytest

from guestslots.errors import DeviceNameError
from guestslots.model.names import (
    DeviceRef,
    canonical_volume,
    device_name,
    index_to_letters,
    is_volume,
    letters_to_index,
    parse_device,
    split_btrfsvol,
    translate_out_text,
)


@pytest.mark.parametrize(
    ("index", "letters"),
    [(0, "a"), (1, "b"), (25, "z"), (26, "aa"), (27, "ab"), (51, "az"), (52, "ba"),
     (254, "iu"), (701, "zz"), (702, "aaa")],
)
def test_index_letters_both_ways(index: int, letters: str) -> None:
    assert index_to_letters(index) == letters
    assert letters_to_index(letters) == index


def test_letters_roundtrip_is_a_bijection_over_every_slot() -> None:
    names = [index_to_letters(i) for i in range(1000)]
    assert len(set(names)) == 1000
    assert [letters_to_index(n) for n in names] == list(range(1000))


def test_device_name_with_partition() -> None:
    assert device_name(27) == "/dev/sdab"
    assert device_name(27, 3) == "/dev/sdab3"


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        ("/dev/sda", DeviceRef(0)),
        ("/dev/sdb1", DeviceRef(1, 1)),
        ("/dev/vdb2", DeviceRef(1, 2)),
        ("/dev/hdc", DeviceRef(2)),
        ("/dev/sdab12", DeviceRef(27, 12)),
        ("/dev/disk/guestslots/slot5", DeviceRef(5)),
        ("/dev/disk/guestslots/slot5-part2", DeviceRef(5, 2)),
        ("/dev/disk/guestslots/data", DeviceRef(None, 0, "data")),
        ("/dev/disk/guestslots/data-part1", DeviceRef(None, 1, "data")),
    ],
)
def test_parse_device(name: str, ref: DeviceRef) -> None:
    assert parse_device(name) == ref


@pytest.mark.parametrize(
    "name",
    ["sda", "/dev/sd", "/dev/sda0", "/dev/xda", "/dev/sdA", "/dev/sda1/..", "/dev/mapper/x",
     "/dev/disk/guestslots/", "/dev/disk/guestslots/a-part0", "/dev/disk/guestslots/../sda",
     "/dev/disk/by-id/x", "", "/dev/sda\n", "/dev/disk/guestslots/data\n"],
)
def test_parse_device_refuses(name: str) -> None:
    with pytest.raises(DeviceNameError) as e:
        parse_device(name)
    assert name in str(e.value)


def test_translate_out_is_one_pass_even_when_names_swap() -> None:
    kmap = {"sda": "sdb", "sdb": "sda", "sdc": "sdab"}
    text = "/dev/sda1 and /dev/sdb, /dev/sdc2; /dev/sdz stays; /dev/vda stays"
    assert translate_out_text(text, kmap) == (
        "/dev/sdb1 and /dev/sda, /dev/sdab2; /dev/sdz stays; /dev/vda stays"
    )


def test_translate_out_does_not_split_longer_names() -> None:
    # kernel sdab is not kernel sda followed by "b"
    assert translate_out_text("/dev/sdab1", {"sda": "sdc"}) == "/dev/sdab1"
    assert translate_out_text("/dev/sdab1", {"sdab": "sda"}) == "/dev/sda1"


def test_translate_out_through_random_churn() -> None:
    """Whatever order the kernel named disks in, every name maps back to its slot."""
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(1, 60)
        kernel_names = [index_to_letters(i) for i in range(n)]
        rng.shuffle(kernel_names)  # kernel name of slot i
        kmap = {f"sd{k}": f"sd{index_to_letters(i)}" for i, k in enumerate(kernel_names)}
        for i, k in enumerate(kernel_names):
            assert translate_out_text(f"/dev/sd{k}3", kmap) == device_name(i, 3)


@pytest.mark.parametrize("name", ["/dev/vg/lv", "/dev/my-vg/lv_1.x", "/dev/mapper/vg-lv",
                                  "/dev/md0", "/dev/md127", "/dev/md/data"])
def test_volume_names_pass_untranslated(name: str) -> None:
    assert is_volume(name)


@pytest.mark.parametrize("name", ["/dev/sda", "/dev/sda1", "/dev/disk/guestslots/x",
                                  "/dev/vg/lv/x", "/dev/vg/-lv", "/dev/vg", "/dev/md/",
                                  "/dev/mapper/", "vg/lv", "/dev/vg/l v"])
def test_not_volume_names(name: str) -> None:
    assert not is_volume(name)


@pytest.mark.parametrize(("mapper", "canonical"), [
    ("/dev/mapper/vg-root", "/dev/vg/root"),
    ("/dev/mapper/my--vg-lv--1", "/dev/my-vg/lv-1"),
    ("/dev/mapper/vg---x", "/dev/vg-/x"),
    ("/dev/mapper/a-b-c", "/dev/mapper/a-b-c"),  # not VG-LV: a layer of something else
    ("/dev/mapper/luks", "/dev/mapper/luks"),
    ("/dev/vg/lv", "/dev/vg/lv"),
])
def test_canonical_volume(mapper: str, canonical: str) -> None:
    assert canonical_volume(mapper) == canonical


@pytest.mark.parametrize(("name", "split"), [
    ("btrfsvol:/dev/sda2/root", ("/dev/sda2", "root")),
    ("btrfsvol:/dev/sdab/var/lib/x", ("/dev/sdab", "var/lib/x")),
    ("btrfsvol:/dev/vg/lv/home", ("/dev/vg/lv", "home")),
    ("btrfsvol:/dev/md0/home", ("/dev/md0", "home")),
    ("btrfsvol:/dev/disk/guestslots/data-part2/@", ("/dev/disk/guestslots/data-part2", "@")),
    ("btrfsvol:/dev/sda2", None),
    ("btrfsvol:/dev/sda2/", None),
    ("/dev/sda2/root", None),
    ("btrfsvol:/etc/passwd/x", None),
])
def test_split_btrfsvol(name: str, split: tuple[str, str] | None) -> None:
    assert split_btrfsvol(name) == split
