"""Device ids: reproducible, parseable, apart between appliances."""

from __future__ import annotations

import pytest

from guestslots.model.ids import device_id, parse_device_id


def test_a_device_id_names_kind_appliance_and_index_and_reads_back() -> None:
    assert device_id("disk", "9f2c41d7", 250) == "disk-9f2c41d7-250"
    assert parse_device_id("disk-9f2c41d7-250") == ("disk", "9f2c41d7", 250)
    assert parse_device_id("cpu-ab-3") == ("cpu", "ab", 3)
    assert len(device_id("disk", "ffffffff", 999)) <= 17  # node names add 10 at most


@pytest.mark.parametrize(("kind", "appliance", "index"), [
    ("tape", "ab", 0), ("disk", "XYZ", 0), ("disk", "123456789", 0), ("disk", "", 0),
    ("disk", "ab", -1), ("disk", "ab", 1000),
])
def test_impossible_ids_are_refused(kind: str, appliance: str, index: int) -> None:
    with pytest.raises(ValueError):
        device_id(kind, appliance, index)


@pytest.mark.parametrize("text", ["slot3", "disk-ab", "disk-ab-3-fmt", "nic-AB-1", ""])
def test_other_names_are_not_device_ids(text: str) -> None:
    assert parse_device_id(text) is None
