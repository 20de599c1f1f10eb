"""Disk specs and guestfish's -N types (pure: nothing is made)."""

from __future__ import annotations

import pytest

from guestslots.prepare import (
    DiskSpec,
    LvSpec,
    PartSpec,
    SpecError,
    parse_prepared,
    parse_size,
)


@pytest.mark.parametrize(("text", "size"), [
    ("512", 512), ("4K", 4096), ("64M", 64 << 20), ("1G", 1 << 30), ("2t", 2 << 40),
    ("10MiB", 10 << 20), (123, 123),
])
def test_sizes_are_read_in_powers_of_1024(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "1.5G", "-1M", "12Q", 0])
def test_a_bad_size_is_refused(bad: str | int) -> None:
    with pytest.raises(SpecError):
        parse_size(bad)


def test_guestfish_n_types_and_their_defaults() -> None:
    assert parse_prepared("disk", 1) == ("test1.img", DiskSpec("1G"))
    assert parse_prepared("disk:100M", 2) == ("test2.img", DiskSpec("100M"))
    assert parse_prepared("part", 1) == (
        "test1.img", DiskSpec("1G", "mbr", [PartSpec(None)]))
    assert parse_prepared("a.img=fs:ext4:64M:gpt", 3) == (
        "a.img", DiskSpec("64M", "gpt", [PartSpec(None, fstype="ext4")]))
    assert parse_prepared("fs", 1)[1].partitions[0].fstype == "ext2"
    assert parse_prepared("lv:/dev/data/vol:200M", 1)[1] == DiskSpec(
        "200M", "mbr", [PartSpec(None, lvm=LvSpec("data", "vol"))])
    assert parse_prepared("lvfs::xfs:400M", 1)[1] == DiskSpec(
        "400M", "mbr", [PartSpec(None, fstype="xfs", lvm=LvSpec("VG", "LV"))])
    for bad in ("cdrom", "fs:ext4:1G:gpt:extra", "lv:notalv"):
        with pytest.raises(SpecError):
            parse_prepared(bad, 1)


def test_partitions_are_laid_out_aligned_and_checked_before_anything_is_made() -> None:
    spec = DiskSpec("64M", "gpt", [PartSpec("16M"), PartSpec("1000K"), PartSpec(None)])
    assert spec.layout() == [(2048, 2048 + 32768 - 1), (34816, 34816 + 2000 - 1),
                             (36864, -2048)]
    spec.check()
    for bad in (DiskSpec("8M", "gpt", [PartSpec("16M")]),
                DiskSpec("1G", "mbr", [PartSpec("1M")] * 5),
                DiskSpec("1G", None, [PartSpec(), PartSpec()]),
                DiskSpec("1G", "gpt", [PartSpec(None), PartSpec("1M")]),
                DiskSpec("1G", "sun", [])):
        with pytest.raises(SpecError):
            bad.check()
