"""Snapshot names and overlay paths (issue 13)."""

from __future__ import annotations

import pytest

from guestslots.model.snapshots import SnapshotError, check_name, overlay_path


def test_an_overlay_sits_beside_its_image_named_after_both() -> None:
    assert overlay_path("/img/disk.raw", "before-upgrade") == "/img/disk.before-upgrade.qcow2"
    assert overlay_path("/img/disk", "s1") == "/img/disk.s1.qcow2"
    assert overlay_path("/img/disk.s1.qcow2", "s2") == "/img/disk.s1.s2.qcow2"
    assert overlay_path("/img/.hidden", "s1") == "/img/.hidden.s1.qcow2"


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".x", "-x", "a b", "x" * 65, "é"])
def test_a_name_that_is_no_file_name_part_is_refused(name: str) -> None:
    with pytest.raises(SnapshotError, match="snapshot name"):
        check_name(name)
