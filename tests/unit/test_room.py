"""Room for copies of slots' disks (guestslots.host.room): what qemu-img measures of
an image chain, opened as QEMU opens it, against a directory's free space."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guestslots import HostFileError
from guestslots.host.room import chain_options, check_room, copy_size, free_bytes, shortfall
from guestslots.model.drives import DriveSpec
from guestslots.testing import testimages as images

GiB = 1 << 30


def test_the_chain_is_opened_layer_by_layer_read_only_and_shared() -> None:
    raw = chain_options(DriveSpec("/i.img", "raw"))
    assert raw == {"driver": "raw", "file": {"driver": "file", "filename": "/i.img"},
                   "read-only": True, "force-share": True}  # raw takes no backing
    assert chain_options(DriveSpec("/i.qcow2", "qcow2"))["backing"] is None
    top = chain_options(DriveSpec("/i.qcow2", "qcow2", chain=("/s1", "/s2")))
    assert top["file"]["filename"] == "/s2" and top["driver"] == "qcow2"
    middle = top["backing"]
    assert middle["file"]["filename"] == "/s1" and "read-only" not in middle
    assert middle["backing"] == {"driver": "qcow2", "backing": None,
                                 "file": {"driver": "file", "filename": "/i.qcow2"}}


def test_a_copy_is_measured_by_what_the_guest_sees_not_by_the_file(tmp_path: Path) -> None:
    bomb = images.cluster_bomb(tmp_path / "bomb.qcow2", 1)
    assert os.stat(bomb).st_size < 32 << 20
    assert copy_size(DriveSpec(str(bomb), "qcow2")) >= 512 * GiB
    sparse = tmp_path / "sparse.qcow2"
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", sparse, "1T")
    # its metadata for a qcow2 copy (about 1/8192 of the disk), not its virtual size
    assert copy_size(DriveSpec(str(sparse), "qcow2")) < GiB
    assert copy_size(DriveSpec(str(sparse), "qcow2"), zeroes_allocated=True) < GiB
    raw = tmp_path / "sparse.img"
    with open(raw, "wb") as f:
        f.truncate(GiB)
    assert copy_size(DriveSpec(str(raw))) < GiB  # its data (none): mirrored, it stays so
    assert copy_size(DriveSpec(str(raw)), zeroes_allocated=True) == GiB  # a backup's copy


def test_no_file_a_header_names_is_opened(tmp_path: Path) -> None:
    """A qcow2 naming a host file as its backing: the measure is of its own clusters
    (the backing file is neither opened nor counted)."""
    host_file = tmp_path / "host.img"
    with open(host_file, "wb") as f:
        f.write(b"\x11" * (8 << 20))
    named = tmp_path / "names.qcow2"
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", host_file,
              named, "8M")
    assert copy_size(DriveSpec(str(named), "qcow2")) < 1 << 20
    gone = tmp_path / "names-nothing.qcow2"
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b",
              tmp_path / "absent", gone, "8M")
    assert copy_size(DriveSpec(str(gone), "qcow2")) < 1 << 20


def test_a_file_that_is_not_the_format_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.qcow2"
    junk.write_bytes(b"not a qcow2" * 100)
    with pytest.raises(HostFileError, match="cannot measure what a copy of it takes") as e:
        copy_size(DriveSpec(str(junk), "qcow2"))
    assert e.value.path == str(junk)


def test_shortfall_says_what_each_copy_needs_and_what_is_free() -> None:
    assert shortfall([(0, 10 << 20), (2, 20 << 20)], 30 << 20) == ""
    why = shortfall([(0, 10 << 20), (2, 600 * GiB)], 50 * GiB)
    assert "about 614,410 MiB (slot 0 10 MiB, slot 2 614,400 MiB" in why
    assert "51,200 MiB free" in why and "nothing was copied" in why


def test_check_room_refuses_a_bomb_and_passes_real_data(tmp_path: Path) -> None:
    free = free_bytes(str(tmp_path))
    bomb = images.cluster_bomb(tmp_path / "bomb.qcow2", free + 1)
    small = images.ext4(tmp_path / "small.img", {"n": "small\n"}, size_mib=8)
    check_room(str(tmp_path), [(0, DriveSpec(str(small)))])
    with pytest.raises(HostFileError, match="free: nothing was copied") as e:
        check_room(str(tmp_path), [(0, DriveSpec(str(small))),
                                   (1, DriveSpec(str(bomb), "qcow2"))])
    assert e.value.path == str(tmp_path) and "slot 1" in str(e.value)
    with pytest.raises(HostFileError, match="No such file"):
        free_bytes(str(tmp_path / "absent"))
