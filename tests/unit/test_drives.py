"""Drive checks: formats are never guessed; bad images are refused with a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guestslots.backends.overlays import virtual_size
from guestslots.errors import DriveError, LabelError
from guestslots.model.drives import (
    DriveSpec,
    check_chain,
    check_label,
    make_drive,
    qcow2_backing_name,
    qcow2_named_files,
    sniff_format,
)


def _file(path: Path, head: bytes, size: int = 4096) -> Path:
    path.write_bytes(head + b"\0" * (size - len(head)))
    return path


def test_raw_image_defaults_to_raw_read_only(tmp_path: Path) -> None:
    drive = make_drive(_file(tmp_path / "a.img", b"plain"))
    assert (drive.format, drive.readonly, drive.label) == ("raw", True, None)
    assert os.path.isabs(drive.path)


def test_qcow2_posing_as_raw_is_refused(tmp_path: Path) -> None:
    img = _file(tmp_path / "a.img", b"QFI\xfb")
    with pytest.raises(DriveError, match="looks like a qcow2 image.*format='qcow2'"):
        make_drive(img)
    assert make_drive(img, format="qcow2").format == "qcow2"


def test_claimed_qcow2_that_is_not_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DriveError, match="is not a qcow2 image"):
        make_drive(_file(tmp_path / "a.img", b"raw"), format="qcow2")


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "auto", "QCOW2"])
def test_unsupported_formats(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(DriveError, match="not supported"):
        make_drive(_file(tmp_path / "a.img", b""), format=fmt)


def test_vmdk_descriptor_is_refused_as_raw(tmp_path: Path) -> None:
    with pytest.raises(DriveError, match="vmdk.*convert it first"):
        make_drive(_file(tmp_path / "a.vmdk", b"# Disk DescriptorFile\n"))


def test_missing_directory_empty_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DriveError, match="no such file"):
        make_drive(tmp_path / "nope.img")
    with pytest.raises(DriveError, match="is a directory"):
        make_drive(tmp_path)
    (tmp_path / "empty.img").write_bytes(b"")
    with pytest.raises(DriveError, match="is empty"):
        make_drive(tmp_path / "empty.img")


def test_sniff_format() -> None:
    assert sniff_format(b"QFI\xfb\0\0\0\3") == "qcow2"
    assert sniff_format(b"conectix") == "vpc"
    assert sniff_format(b"\0" * 16) is None


@pytest.mark.parametrize("label", ["a", "data", "Data_2", "x" * 20])
def test_valid_labels(label: str) -> None:
    assert check_label(label) == label


@pytest.mark.parametrize("label", ["", "x" * 21, "2data", "da-ta", "da ta", "../x", "slot3", "é",
                                   "ok\n", "slot3\n"])
def test_invalid_labels(label: str) -> None:
    with pytest.raises(LabelError):
        check_label(label)


def _qcow2_header(version: int = 3, backing_offset: int = 0, incompat: int = 0) -> bytes:
    head = bytearray(512)
    head[0:4] = b"QFI\xfb"
    head[4:8] = version.to_bytes(4, "big")
    head[8:16] = backing_offset.to_bytes(8, "big")
    head[72:80] = incompat.to_bytes(8, "big")
    return bytes(head)


def test_qcow2_headers_naming_other_files() -> None:
    assert qcow2_named_files(_qcow2_header()) == []
    assert qcow2_named_files(_qcow2_header(incompat=1 << 2)) == ["an external data file"]
    assert qcow2_named_files(_qcow2_header(backing_offset=0x200)) == ["a backing file"]
    assert qcow2_named_files(_qcow2_header(2, 0x200)) == ["a backing file"]
    # version 2 has no feature bits: byte 72 is something else there
    assert qcow2_named_files(_qcow2_header(2, incompat=1 << 2)) == []
    # headers QEMU refuses by itself name nothing here
    assert qcow2_named_files(_qcow2_header(7, 0x200, 1 << 2)) == []
    assert qcow2_named_files(b"QFI\xfb\x00\x00\x00\x03") == []


def test_a_qcow2_with_an_external_data_file_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "x.qcow2"
    image.write_bytes(_qcow2_header(incompat=(1 << 2) | 1))
    with pytest.raises(DriveError, match="names an external data file"):
        make_drive(image, "qcow2")
    image.write_bytes(_qcow2_header())
    assert make_drive(image, "qcow2").format == "qcow2"


def _overlay(backing: str, incompat: int = 0) -> bytes:
    name = backing.encode()
    head = bytearray(_qcow2_header(backing_offset=0x200, incompat=incompat))
    head[16:20] = len(name).to_bytes(4, "big")
    return bytes(head) + name


def test_the_backing_name_is_read_from_the_header() -> None:
    assert qcow2_backing_name(_overlay("/img/disk.raw")) == "/img/disk.raw"
    assert qcow2_backing_name(_qcow2_header()) is None
    assert qcow2_backing_name(_overlay("/img/disk.raw")[:0x201]) is None  # cut short


def test_a_snapshot_chain_is_taken_only_as_it_was_made(tmp_path: Path) -> None:
    image, s1, s2 = (str(tmp_path / n) for n in ("disk.raw", "disk.s1.qcow2", "disk.s2.qcow2"))
    Path(s1).write_bytes(_overlay(image))
    Path(s2).write_bytes(_overlay(s1))
    check_chain(image, (s1, s2))
    check_chain(image, ())
    with pytest.raises(DriveError, match=r"names .*disk.s1.qcow2.* not .*disk.raw"):
        check_chain(image, (s2,))  # out of order
    Path(s2).write_bytes(_overlay(s1, incompat=1 << 2))
    with pytest.raises(DriveError, match="external data file"):
        check_chain(image, (s1, s2))
    Path(s2).write_bytes(b"raw data")
    with pytest.raises(DriveError, match="no longer a qcow2 file"):
        check_chain(image, (s1, s2))
    os.unlink(s2)
    os.symlink(s1, s2)
    with pytest.raises(DriveError, match="no longer a qcow2 file"):
        check_chain(image, (s1, s2))  # a link: not the file made
    with pytest.raises(DriveError, match="No such file"):
        check_chain(image, (s1, str(tmp_path / "gone.qcow2")))


def test_the_virtual_size_of_an_image_needs_no_process(tmp_path: Path) -> None:
    """A throwaway overlay's size: a raw file's own, a qcow2 header's, a remote
    source's probe; an unreadable or cut qcow2 header is a DriveError."""
    raw = tmp_path / "a.img"
    raw.write_bytes(b"\0" * 3 * 512)
    assert virtual_size(DriveSpec(str(raw), "raw")) == 1536
    header = bytearray(b"QFI\xfb" + b"\0" * 100)
    header[24:32] = (5 << 20).to_bytes(8, "big")
    qcow2 = tmp_path / "a.qcow2"
    qcow2.write_bytes(bytes(header))
    assert virtual_size(DriveSpec(str(qcow2), "qcow2")) == 5 << 20
    assert virtual_size(DriveSpec("nbd://h/e", "raw", size=7 << 9)) == 7 << 9
    short = tmp_path / "short.qcow2"
    short.write_bytes(b"QFI\xfb")
    with pytest.raises(DriveError, match="cut short"):
        virtual_size(DriveSpec(str(short), "qcow2"))
    with pytest.raises(DriveError, match="cannot be read"):
        virtual_size(DriveSpec(str(tmp_path / "gone.img"), "raw"))
