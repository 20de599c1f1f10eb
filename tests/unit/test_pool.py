"""The pool's pure parts: sizing, image items, results; errors that cross processes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from guestslots import errors
from guestslots.cli.images import _images_under
from guestslots.pool import ImageResult, default_workers, split_item


def test_default_workers_is_one_per_core_unless_memory_is_short() -> None:
    assert default_workers(512, cores=8, available_mib=64 * 1024) == 8
    # 512 MiB of guest RAM and QEMU's own: 2 GiB hold only 2 or 3
    assert default_workers(512, cores=8, available_mib=2048) in (2, 3)
    assert default_workers(512, cores=8, available_mib=100) == 1  # never none
    assert default_workers(256, cores=2, available_mib=64 * 1024) == 2


def test_an_image_is_a_path_or_a_path_and_its_format() -> None:
    assert split_item("a.img", None) == ("a.img", None)
    assert split_item(Path("a.img"), "qcow2") == ("a.img", "qcow2")
    assert split_item(("a.raw", "raw"), "qcow2") == ("a.raw", "raw")  # its own wins


def test_a_result_gives_its_value_or_raises_its_error() -> None:
    good: ImageResult[int] = ImageResult("a", value=3)
    assert good.ok and good.get() == 3
    bad: ImageResult[int] = ImageResult("b", error=errors.DriveError("b", "corrupt"))
    assert not bad.ok
    with pytest.raises(errors.DriveError, match="b: corrupt"):
        bad.get()


@pytest.mark.parametrize("error", [
    errors.SlotError(3, "slot 3 is empty"),
    errors.DriveError("/img", "missing"),
    errors.QemuError("died", exitcode=-9, command=["qemu"], log_tail="tail"),
    errors.GuestOSError("cat", "ENOENT", 2),
    errors.DeviceBusyError(1, "/dev/sdb", ["/dev/sdb1 is mounted"]),
    errors.StateError("hotplug", "running", "not launched"),
    errors.ChannelClosed("cat", "the appliance died"),
])
def test_every_error_survives_pickling_with_its_message_and_facts(
    error: errors.GuestslotsError,
) -> None:
    # a Dask worker's result crosses processes; errors take their own arguments, so
    # the default Exception pickling (args only) could not rebuild them
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_scan_takes_images_by_extension_or_every_file_with_a_format(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.img", "b.QCOW2", "sub/c.raw", "notes.txt", "sub/d"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "link.img").symlink_to(tmp_path / "a.img")
    assert _images_under(str(tmp_path), None) == [
        (str(tmp_path / "a.img"), "raw"), (str(tmp_path / "b.QCOW2"), "qcow2"),
        (str(tmp_path / "sub/c.raw"), "raw")]
    every = _images_under(str(tmp_path), "qcow2")
    assert [Path(p).name for p, _ in every] == ["a.img", "b.QCOW2", "notes.txt", "c.raw", "d"]
    assert {f for _, f in every} == {"qcow2"}
    with pytest.raises(errors.GuestslotsError, match="not a directory"):
        _images_under(str(tmp_path / "a.img"), None)
