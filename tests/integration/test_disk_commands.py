"""Partitions and filesystems made on a blank disk (issue 17): the same guestfish-style
script through libguestfs and through guestslots gives the same answers, and each
tool's resulting disk reads the same through libguestfs; the writing calls are refused
on read-only slots and on devices in use, and the image is untouched then."""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from guestslots import Appliance, GuestslotsError
from guestslots.prepare import DiskSpec, LvSpec, PartSpec, make_image
from guestslots.testing import peer
from guestslots.testing import testimages as images

from .compare import run_ours, same

pytestmark = [pytest.mark.integration]
#: The comparisons with libguestfs run once; the rest (read-only slots, discard, device
#: sizes, what the backend gives the guest) on both backends.
ONCE = pytest.mark.single_pass("compares with libguestfs; the agent is the same on both "
                               "backends")

DISK_MIB = 512  # xfs wants 300 MB at least
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
UUID = "01234567-89ab-cdef-0123-456789abcdef"

GPT_SCRIPT: list[list[Any]] = [
    ["part_init", "/dev/sda", "gpt"], ["part_get_parttype", "/dev/sda"],
    ["part_add", "/dev/sda", "p", 2048, 206847],
    ["part_add", "/dev/sda", "p", 206848, 821247],
    ["part_add", "/dev/sda", "primary", 821248, -2048],
    ["part_add", "/dev/sda", "p", 100, 50], ["part_add", "/dev/sda", "x", 100, 200],
    ["part_list", "/dev/sda"], ["list_partitions"],
    ["part_set_name", "/dev/sda", 1, "EFI"], ["part_get_name", "/dev/sda", 1],
    ["part_get_name", "/dev/sda", 3],
    ["part_set_gpt_type", "/dev/sda", 1, ESP_GUID], ["part_get_gpt_type", "/dev/sda", 1],
    ["part_get_gpt_type", "/dev/sda", 3],
    ["part_set_bootable", "/dev/sda", 3, True], ["part_get_bootable", "/dev/sda", 3],
    ["part_get_bootable", "/dev/sda", 2],
    ["mkfs", "vfat", "/dev/sda1", {"label": "ESP"}],
    ["mkfs", "xfs", "/dev/sda2", {"label": "data"}],
    ["mkfs", "ext4", "/dev/sda3", {"blocksize": 1024, "label": "root"}],
    ["mkfs", "ext2", "/dev/sda3", {"blocksize": 1000}],
    ["set_uuid", "/dev/sda3", UUID], ["vfs_uuid", "/dev/sda3"],
    ["set_uuid", "/dev/sda2", UUID], ["vfs_uuid", "/dev/sda2"],
    ["list_filesystems"], ["vfs_type", "/dev/sda2"],
    ["vfs_label", "/dev/sda1"], ["vfs_label", "/dev/sda2"], ["vfs_label", "/dev/sda3"],
    ["set_label", "/dev/sda3", "newroot"], ["vfs_label", "/dev/sda3"],
    ["set_label", "/dev/sda3", "a-label-longer-than-16"], ["set_label", "/dev/sda2", "xdata"],
    ["vfs_label", "/dev/sda2"],
    ["fsck", "ext4", "/dev/sda3"], ["zerofree", "/dev/sda3"], ["resize2fs", "/dev/sda3"],
    ["part_del", "/dev/sda", 2], ["part_list", "/dev/sda"], ["list_filesystems"],
]

MBR_SCRIPT: list[list[Any]] = [
    ["part_disk", "/dev/sda", "mbr"], ["part_list", "/dev/sda"],
    ["part_get_parttype", "/dev/sda"], ["part_get_mbr_id", "/dev/sda", 1],
    ["mkswap", "/dev/sda1", {"label": "swp"}], ["vfs_type", "/dev/sda1"],
    ["vfs_label", "/dev/sda1"],
    ["part_init", "/dev/sda", "msdos"], ["part_add", "/dev/sda", "p", 2048, 104447],
    ["part_add", "/dev/sda", "e", 104448, -1], ["part_add", "/dev/sda", "l", 106496, 800000],
    ["part_list", "/dev/sda"], ["list_partitions"], ["part_get_name", "/dev/sda", 1],
    ["part_set_bootable", "/dev/sda", 1, True], ["part_get_bootable", "/dev/sda", 1],
    ["part_get_mbr_id", "/dev/sda", 5],
    ["mkfs", "btrfs", "/dev/sda5", {"label": "bt"}], ["mkfs", "ext3", "/dev/sda1"],
    ["list_filesystems"], ["vfs_label", "/dev/sda5"],
]

MiB = 1 << 20
DEVICE_SCRIPT: list[list[Any]] = [
    ["blockdev_getsize64", "/dev/sda"], ["blockdev_getsz", "/dev/sda"],
    ["blockdev_getss", "/dev/sda"], ["blockdev_getro", "/dev/sda"],
    ["pwrite_device", "/dev/sda", "written at 1 MiB", MiB],
    ["pread_device", "/dev/sda", 16, MiB], ["pread_device", "/dev/sda", 100, DISK_MIB * MiB - 10],
    ["pread_device", "/dev/sda", 4, -1], ["pwrite_device", "/dev/sda", "past its end",
                                          DISK_MIB * MiB],
    ["part_disk", "/dev/sda", "mbr"], ["pread_device", "/dev/sda", 2, 510],
    ["blockdev_getsize64", "/dev/sda1"], ["blockdev_getsz", "/dev/sda1"],
    ["blockdev_flushbufs", "/dev/sda"],
    ["blockdev_setro", "/dev/sda1"], ["blockdev_getro", "/dev/sda1"],
    ["pwrite_device", "/dev/sda1", "refused", 0],
    ["blockdev_setrw", "/dev/sda1"], ["blockdev_getro", "/dev/sda1"],
    ["pwrite_device", "/dev/sda1", "allowed", 0], ["pread_device", "/dev/sda1", 7, 0],
    ["pwrite_device", "/dev/sda", "\0" * 64, 446],  # the MBR's four partition entries
    ["list_partitions"], ["blockdev_rereadpt", "/dev/sda"], ["list_partitions"],
    ["blockdev_getsize64", "/dev/sda9"], ["pread_device", "/dev/sda1", 1, 0],
]

#: What each tool's resulting disk is read back with, through libguestfs.
READBACK: list[list[Any]] = [
    ["part_get_parttype", "/dev/sda"], ["part_list", "/dev/sda"], ["list_filesystems"],
    *[[call, f"/dev/sda{n}"] for n in (1, 3, 5) for call in ("vfs_type", "vfs_label")],
    ["vfs_uuid", "/dev/sda3"],
    *[[call, "/dev/sda", n] for n in (1, 3) for call in ("part_get_bootable",)],
    ["part_get_name", "/dev/sda", 1], ["part_get_gpt_type", "/dev/sda", 1],
]


def blank(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(DISK_MIB << 20)
    return path


def both_on_blank_disks(app: Appliance, tcg: bool, tmp_path: Path,
                        script: list[list[Any]]) -> tuple[Path, Path, list[Any]]:
    """*script* through libguestfs and guestslots, each on a blank writable disk of its
    own, compared answer by answer: (our disk, libguestfs's disk, our answers)."""
    mine, peers, ours = both_on_blank_disks_plugged(app, tcg, tmp_path, script, 1)
    app.unplug(0)
    return mine[0], peers[0], ours


def both_on_blank_disks_plugged(
    app: Appliance, tcg: bool, tmp_path: Path, script: list[list[Any]], count: int,
) -> tuple[list[Path], list[Path], list[Any]]:
    """*script* through libguestfs and guestslots, each on *count* blank writable disks
    of its own (ours stay plugged in slots 0...), compared answer by answer."""
    mine = [blank(tmp_path / f"mine{i}.img") for i in range(count)]
    peers = [blank(tmp_path / f"peers{i}.img") for i in range(count)]
    theirs = peer.calls({"force_tcg": tcg, "image": str(peers[0]),
                         "more": [str(p) for p in peers[1:]], "readonly": False,
                         "mount": False, "calls": script})
    for index, image in enumerate(mine):
        app.hotplug(index, image, readonly=False)
    ours = run_ours(app, script)
    same(ours, theirs, script)
    return mine, peers, ours


@ONCE
@pytest.mark.parametrize("script", [GPT_SCRIPT, MBR_SCRIPT], ids=["gpt", "mbr"])
def test_a_disk_partitioned_and_formatted_as_with_libguestfs(
    app: Appliance, tcg: bool, tmp_path: Path, script: list[list[Any]],
) -> None:
    mine, peers, ours = both_on_blank_disks(app, tcg, tmp_path, script)
    assert sum(r[0] == "ok" for r in ours) > len(script) * 2 // 3  # not a run of errors
    # each result read by the same reader: libguestfs reads guestslots's disk as its own
    read = {name: peer.calls({"force_tcg": tcg, "image": str(image), "readonly": True,
                              "mount": False, "calls": READBACK})
            for name, image in (("mine", mine), ("peers", peers))}
    assert read["mine"] == read["peers"]
    # Deliberate differences: libguestfs answers part-get-mbr-id on GPT with the type
    # GUID's first digits read as hex (0xC12A7328 as an int), and part-get-gpt-type on
    # MBR with the GUID sgdisk would convert the type to; both are errors here.
    app.hotplug(0, mine)
    wrong, what = (("part_get_mbr_id", "MBR") if script is GPT_SCRIPT
                   else ("part_get_gpt_type", "GUID"))
    with pytest.raises(GuestslotsError, match=f"only be used on {what}"):
        getattr(app, wrong)("/dev/sda", 1)


@ONCE
def test_block_devices_read_and_written_as_with_libguestfs(
    app: Appliance, tcg: bool, tmp_path: Path,
) -> None:
    mine, peers, ours = both_on_blank_disks(app, tcg, tmp_path, DEVICE_SCRIPT)
    assert [r[0] for r in ours].count("error") == 5  # the four refusals and no /dev/sda9
    for img in (mine, peers):  # the same bytes, but for the MBR's random disk identifier
        with open(img, "r+b") as f:
            f.seek(440)
            f.write(bytes(4))
    assert filecmp.cmp(mine, peers, shallow=False)
    # libguestfs answers /dev/sdb here with its own appliance disk's size (4 GiB); here
    # the appliance's disk is no slot and has no name
    app.hotplug(0, mine)
    with pytest.raises(GuestslotsError, match="slot 1 .* is empty"):
        app.blockdev_getsize64("/dev/sdb")


def test_a_device_is_downloaded_and_uploaded_whole(app: Appliance, tmp_path: Path) -> None:
    """``download`` / ``upload`` of a ``/dev/...`` path move a device's bytes, as in
    libguestfs; only slot devices, and an upload only onto an unused writable one."""
    fs = images.ext4(tmp_path / "fs.img", {"whoami": "inside\n"}, size_mib=8)
    disk = images.partitioned(tmp_path / "disk.img", "gpt", fs)
    start = images.PART_START
    app.hotplug(0, disk, readonly=False)
    app.download("/dev/sda1", tmp_path / "part.img")
    assert (tmp_path / "part.img").read_bytes()[: fs.stat().st_size] == fs.read_bytes()
    assert (tmp_path / "part.img").stat().st_size == app.blockdev_getsize64("/dev/sda1")
    other = images.ext4(tmp_path / "other.img", {"whoami": "uploaded\n"}, size_mib=8)
    app.mount("/dev/sda1", "/")
    with pytest.raises(GuestslotsError, match="in use: /dev/sda1 is mounted on /"):
        app.upload(other, "/dev/sda1")
    app.umount_all()
    app.upload(other, "/dev/sda1")
    app.mount_ro("/dev/sda1", "/")
    assert app.cat("/whoami") == "uploaded\n"
    app.umount_all()
    with open(disk, "rb") as f:
        f.seek(start)
        assert f.read(other.stat().st_size) == other.read_bytes()
    with pytest.raises(GuestslotsError, match="No space left"):
        app.upload(tmp_path / "disk.img", "/dev/sda1")  # more than the partition holds
    app.download("/dev/vda", tmp_path / "vda.img")  # libguestfs's alias of /dev/sda
    assert (tmp_path / "vda.img").read_bytes() == disk.read_bytes()
    for path, why in (("/dev/sdb", "slot 1 .* is empty"), ("/dev/zero", "not a device name"),
                      ("/dev/sdzz", "no such device")):
        with pytest.raises(GuestslotsError, match=why):
            app.download(path, tmp_path / "nothing")
    app.unplug(0)
    app.hotplug(0, disk)  # read-only
    with pytest.raises(GuestslotsError, match="read-only"):
        app.upload(other, "/dev/sda1")
    with pytest.raises(GuestslotsError, match="read-only"):
        app.pwrite_device("/dev/sda", b"x", 0)
    assert app.blockdev_getro("/dev/sda") is True
    with pytest.raises(GuestslotsError, match="read-only"):
        app.blockdev_setrw("/dev/sda")


def test_writing_calls_are_refused_on_a_read_only_slot(app: Appliance, tmp_path: Path) -> None:
    img = images.ext4(tmp_path / "ro.img", {"keep": "k\n"}, size_mib=32)
    before = (os.stat(img).st_mtime_ns, hashlib.sha256(img.read_bytes()).hexdigest())
    app.hotplug(0, img)  # read-only
    for call, args in (("part_init", ("/dev/sda", "gpt")), ("part_disk", ("/dev/sda", "mbr")),
                       ("part_add", ("/dev/sda", "p", 2048, 4096)),
                       ("mkfs", ("ext4", "/dev/sda")), ("mkswap", ("/dev/sda",)),
                       ("set_label", ("/dev/sda", "x")), ("set_uuid", ("/dev/sda", UUID)),
                       ("zerofree", ("/dev/sda",)), ("resize2fs", ("/dev/sda",)),
                       ("fsck", ("ext4", "/dev/sda", True))):
        with pytest.raises(GuestslotsError, match="read-only"):
            getattr(app, call)(*args)
    assert app.fsck("ext4", "/dev/sda") == 0  # a report only: allowed
    app.mount_ro("/dev/sda", "/")
    assert app.cat("/keep") == "k\n"
    app.umount_all()
    app.unplug(0)
    assert (os.stat(img).st_mtime_ns, hashlib.sha256(img.read_bytes()).hexdigest()) == before


def test_a_device_in_use_is_not_made_again(app: Appliance, tmp_path: Path) -> None:
    img = blank(tmp_path / "busy.img")
    app.hotplug(0, img, readonly=False)
    app.part_disk("/dev/sda", "gpt")
    app.mkfs("ext4", "/dev/sda1")
    app.mount("/dev/sda1", "/")
    app.write("/precious", "data\n")
    for call, args in (("mkfs", ("xfs", "/dev/sda1")), ("mkfs", ("ext4", "/dev/sda")),
                       ("part_init", ("/dev/sda", "msdos")), ("part_disk", ("/dev/sda", "gpt")),
                       ("part_del", ("/dev/sda", 1)), ("zerofree", ("/dev/sda1",)),
                       ("fsck", ("ext4", "/dev/sda1")), ("set_uuid", ("/dev/sda1", UUID))):
        with pytest.raises(GuestslotsError, match="in use: /dev/sda1 is mounted on /"):
            getattr(app, call)(*args)
    assert app.cat("/precious") == "data\n"
    assert app.part_list("/dev/sda")[0]["part_num"] == 1
    with pytest.raises(GuestslotsError, match="whole disk"):
        app.part_init("/dev/sda1", "gpt")
    with pytest.raises(GuestslotsError, match="not a partition"):
        app.part_to_dev("/dev/sda")
    assert (app.part_to_dev("/dev/sda1"), app.part_to_partnum("/dev/sda1")) == ("/dev/sda", 1)


def test_df_ll_and_file_describe_the_mounted_guest(app: Appliance, tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {"etc/hostname": "guest\n", "big": bytes(range(256)) * 1200,
             "notes.gz": gzip.compress(b"some notes\n")}
    img = images.ext4(tmp_path / "look.img", files, size_mib=32,
                      symlinks={"link": "etc/hostname"})
    app.hotplug(0, img)
    app.mount_ro("/dev/sda", "/")
    header, row = app.df().splitlines()
    assert header.split() == ["Filesystem", "1K-blocks", "Used", "Available", "Use%",
                              "Mounted", "on"]
    dev, blocks, used, avail, pct, mountpoint = row.split()
    st = app.statvfs("/")
    assert (dev, mountpoint) == ("/dev/sda", "/")
    assert int(blocks) == st["blocks"] * st["frsize"] // 1024
    assert int(avail) == st["bavail"] * st["frsize"] // 1024
    assert int(used) >= 300  # the 300 KiB file
    assert re.fullmatch(r"[0-9]+%", pct)
    human = app.df_h().splitlines()
    assert human[0].split()[:2] == ["Filesystem", "Size"]
    assert re.fullmatch(r"/dev/sda +[0-9.]+M +[0-9.]+[KM] +[0-9.]+M +[0-9]+% /", human[1])
    listing = app.ll("/")
    assert listing.startswith("total ")
    assert re.search(r"^lrwxrwxrwx .* link -> etc/hostname$", listing, re.M), listing
    assert re.search(r"^-rw-r--r-- +1 root root +307200 .* big$", listing, re.M), listing
    assert app.file("/etc/hostname") == "ASCII text"
    assert app.file("/link") == "symbolic link"
    assert app.file("/etc") == "directory"
    assert app.file("/notes.gz").startswith("ASCII text (gzip compressed data")
    app.umount_all()
    with pytest.raises(GuestslotsError, match="no filesystem is mounted"):
        app.ll("/")


VOLUME_SCRIPT: list[list[Any]] = [
    ["part_disk", "/dev/sda", "gpt"], ["part_disk", "/dev/sdb", "gpt"],
    ["pvcreate", "/dev/sda1"], ["pvcreate", "/dev/sdb1"], ["pvs"],
    ["vgcreate", "vg0", ["/dev/sda1", "/dev/sdb1"]], ["vgs"],
    ["vgcreate", "vg0", ["/dev/sda1"]],
    ["lvcreate", "root", "vg0", 64], ["lvcreate", "home", "vg0", 32],
    ["lvcreate", "big", "vg0", 100_000], ["lvcreate_free", "rest", "vg0", 50],
    ["lvs"], ["lvresize", "/dev/vg0/home", 48], ["mkfs", "ext4", "/dev/vg0/root"],
    ["list_filesystems"], ["lvremove", "/dev/vg0/home"], ["lvs"],
    ["pvremove", "/dev/sda1"], ["vgremove", "vg0"], ["vgs"], ["lvs"],
    ["pvremove", "/dev/sda1"], ["pvremove", "/dev/sdb1"], ["pvs"],
    ["md_create", "r1", ["/dev/sda1", "/dev/sdb1"]], ["list_md_devices"],
    ["mkfs", "ext4", "/dev/md127", {"label": "onraid"}], ["list_filesystems"],
    ["md_stop", "/dev/md127"], ["list_md_devices"],
    ["md_create", "deg", ["/dev/sda1"], {"missingbitmap": 2, "level": "raid1"}],
    ["list_md_devices"], ["md_stop", "/dev/md127"],
]


COPY_SCRIPT: list[list[Any]] = [
    ["pwrite_device", "/dev/sda", "hello", 0], ["pwrite_device", "/dev/sda", "world", 5 * MiB],
    ["copy_device_to_device", "/dev/sda", "/dev/sdb", {"size": 8 * MiB}],
    ["pread_device", "/dev/sdb", 5, 0], ["pread_device", "/dev/sdb", 5, 5 * MiB],
    ["copy_device_to_device", "/dev/sda", "/dev/sdb",
     {"srcoffset": 5 * MiB, "destoffset": MiB, "size": 5}],
    ["pread_device", "/dev/sdb", 5, MiB],
    ["copy_device_to_device", "/dev/sda", "/dev/sdb",
     {"srcoffset": DISK_MIB * MiB - 3, "size": 10}],  # input too short
    ["copy_device_to_device", "/dev/sda", "/dev/sdb", {"append": True}],  # not for devices
    ["copy_device_to_device", "/dev/sda", "/dev/sdb", {"srcoffset": -1}],
    ["is_zero_device", "/dev/sdb"], ["zero_device", "/dev/sdb"], ["is_zero_device", "/dev/sdb"],
    ["mkfs", "ext4", "/dev/sdb"], ["mount", "/dev/sdb", "/"],
    ["copy_device_to_file", "/dev/sda", "/blob", {"size": 5 * MiB + 5, "sparse": True}],
    ["checksum", "sha256", "/blob"], ["is_zero", "/blob"],
    ["copy_file_to_file", "/blob", "/part", {"srcoffset": 5 * MiB, "size": 5}],
    ["read_file", "/part"],
    ["copy_file_to_file", "/blob", "/part", {"size": 5, "append": True}],
    ["read_file", "/part"],
    ["copy_file_to_device", "/part", "/dev/sda", {"destoffset": 100}],
    ["pread_device", "/dev/sda", 10, 100],
    ["copy_device_to_file", "/dev/sda", "/zeroes", {"srcoffset": MiB, "size": MiB}],
    ["is_zero", "/zeroes"], ["checksum", "sha256", "/zeroes"],
    ["copy_file_to_file", "/absent", "/x"], ["is_zero_device", "/dev/sda"],
]


@ONCE
def test_copies_between_devices_and_files_as_with_libguestfs(
    app: Appliance, tcg: bool, tmp_path: Path,
) -> None:
    mine, peers, ours = both_on_blank_disks_plugged(app, tcg, tmp_path, COPY_SCRIPT, 2)
    assert [r[0] for r in ours].count("error") == 4
    assert filecmp.cmp(mine[0], peers[0], shallow=False)
    # A sparse copy into a file that ends in zeroes: the file is as long as the copy
    # (libguestfs 1.48 stops it after the last block it wrote: 5 MiB + 8 KiB here)
    app.copy_device_to_file("/dev/sda", "/tail", size=6 * MiB, sparse=True)
    assert app.stat("/tail")["size"] == 6 * MiB
    # a device in use, or on a read-only slot, is no destination; zeroing keeps the
    # image sparse (the kernel unmaps: QEMU punches the image's blocks)
    with pytest.raises(GuestslotsError, match="in use: /dev/sdb is mounted on /"):
        app.copy_device_to_device("/dev/sda", "/dev/sdb")
    app.umount_all()
    app.unplug(1)
    app.hotplug(1, mine[1])  # read-only
    with pytest.raises(GuestslotsError, match="read-only"):
        app.copy_device_to_device("/dev/sda", "/dev/sdb")
    with pytest.raises(GuestslotsError, match="read-only"):
        app.zero_device("/dev/sdb")
    app.pwrite_device("/dev/sda", b"\x5a" * (4 * MiB), 8 * MiB)
    app.blockdev_flushbufs("/dev/sda")
    grown = os.stat(mine[0]).st_blocks
    app.zero_device("/dev/sda")
    assert app.is_zero_device("/dev/sda")
    assert os.stat(mine[0]).st_blocks < grown - 4 * MiB // 512


@ONCE
def test_volumes_and_arrays_made_as_with_libguestfs(app: Appliance, tcg: bool,
                                                    tmp_path: Path) -> None:
    both_on_blank_disks_plugged(app, tcg, tmp_path, VOLUME_SCRIPT, 2)
    # a volume group with a mounted LV is not removed; one on a read-only slot is not made
    app.unplug(0)
    app.unplug(1)
    app.hotplug(0, blank(tmp_path / "fresh0.img"), readonly=False)
    app.hotplug(1, blank(tmp_path / "fresh1.img"), readonly=False)
    app.part_disk("/dev/sda", "gpt")
    app.part_disk("/dev/sdb", "gpt")
    app.pvcreate("/dev/sda1")
    app.vgcreate("vgx", ["/dev/sda1"])
    app.lvcreate("lv", "vgx", 16)
    app.mkfs("ext4", "/dev/vgx/lv")
    app.mount("/dev/vgx/lv", "/")
    for call, args in (("lvremove", ("/dev/vgx/lv",)), ("vgremove", ("vgx",)),
                       ("lvremove", ("/dev/vgx",)), ("pvremove", ("/dev/sda1",))):
        with pytest.raises(GuestslotsError, match="in use|mounted"):
            getattr(app, call)(*args)
    app.umount_all()
    app.vgremove("vgx")
    app.unplug(1)
    app.hotplug(1, tmp_path / "fresh1.img")  # read-only now
    refused: list[tuple[str, tuple[Any, ...]]] = [
        ("pvcreate", ("/dev/sdb1",)), ("vgcreate", ("vgy", ["/dev/sdb1"])),
        ("md_create", ("r9", ["/dev/sdb1"]))]
    for call, args in refused:
        with pytest.raises(GuestslotsError, match="read-only"):
            getattr(app, call)(*args)
    assert app.vgs() == []


def test_an_image_made_from_a_spec(app: Appliance, tmp_path: Path) -> None:
    spec = DiskSpec("96M", "gpt", [
        PartSpec("16M", fstype="vfat", label="ESP", files={"/EFI/boot.txt": "efi\n"}),
        PartSpec("32M", lvm=LvSpec("vg", "data"), fstype="ext4", label="data"),
        PartSpec(None, fstype="ext4", label="root",
                 files={"/etc/hostname": "made\n", "/bin/blob": bytes(range(256))}),
    ])
    path = make_image(tmp_path / "made.img", spec, app=app)
    assert [s.drive for s in app.slots()] == [None] * len(app.slots())  # unplugged again
    app.hotplug(0, path)
    assert app.list_filesystems() == {"/dev/sda1": "vfat", "/dev/sda3": "ext4",
                                      "/dev/vg/data": "ext4"}
    assert [app.vfs_label(d) for d in ("/dev/sda1", "/dev/vg/data", "/dev/sda3")] == [
        "ESP", "data", "root"]
    assert app.part_get_parttype("/dev/sda") == "gpt"
    assert [p["part_size"] for p in app.part_list("/dev/sda")][:2] == [16 << 20, 32 << 20]
    app.mount_ro("/dev/sda3", "/")
    assert app.cat("/etc/hostname") == "made\n"
    assert app.read_file("/bin/blob") == bytes(range(256))
    app.umount_all()
    app.mount_ro("/dev/sda1", "/")
    assert app.cat("/EFI/boot.txt") == "efi\n"


def test_trim_frees_the_image_and_a_grown_disk_is_filled(app: Appliance, tmp_path: Path) -> None:
    img = make_image(tmp_path / "grow.img", DiskSpec("64M", "gpt", [
        PartSpec(None, fstype="ext4", files={"/keep": "kept\n"})]), app=app)
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda1", "/")
    app.write("/big", os.urandom(16 << 20))
    app.sync()
    full = os.stat(img).st_blocks * 512
    app.rm("/big")
    app.sync()  # the freed blocks are free once the journal committed them
    app.fstrim("/")
    assert os.stat(img).st_blocks * 512 < full - (12 << 20)  # the 16 MiB went back
    before = app.statvfs("/")["blocks"]
    app.umount_all()
    start = app.part_list("/dev/sda")[0]["part_start"] // 512
    app.unplug(0)
    os.truncate(img, 128 << 20)  # the disk grows; the partition and filesystem fill it
    app.hotplug(0, img, readonly=False)
    app.part_expand_gpt("/dev/sda")
    app.part_del("/dev/sda", 1)
    app.part_add("/dev/sda", "p", start, -34)
    app.e2fsck_f("/dev/sda1")
    app.resize2fs("/dev/sda1")
    app.mount("/dev/sda1", "/")
    assert app.statvfs("/")["blocks"] > before * 1.8
    assert app.cat("/keep") == "kept\n"
    app.umount_all()
    app.e2fsck_f("/dev/sda1")
    app.resize2fs_M("/dev/sda1")  # and shrunk to its smallest
    app.mount("/dev/sda1", "/")
    assert app.statvfs("/")["blocks"] < before
    assert app.cat("/keep") == "kept\n"
    app.umount_all()
    app.unplug(0)


def test_a_mounted_xfs_grows_to_fill_its_device(app: Appliance, tmp_path: Path) -> None:
    img = make_image(tmp_path / "xfs.img", DiskSpec("320M", None, [PartSpec(fstype="xfs")]),
                     app=app)
    os.truncate(img, 480 << 20)
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda", "/")
    before = app.statvfs("/")["blocks"]
    app.xfs_growfs("/")
    assert app.statvfs("/")["blocks"] > before * 1.4
    with pytest.raises(GuestslotsError, match="not a mount point"):
        app.xfs_growfs("/nowhere")
