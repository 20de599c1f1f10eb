"""The description a save writes and a restore checks (issue 13)."""

from __future__ import annotations

import json

import pytest

from guestslots.model.runtime import RuntimeRecord, RuntimeRecordError, SlotRecord
from guestslots.model.saved import FORMAT, SavedAppliance


def saved() -> SavedAppliance:
    record = RuntimeRecord(
        id="9f2c41d7", backend="qemu", pid=4242, started=1.5, updated=2.5, workdir="/w",
        slots=(SlotRecord(0, "/dev/sda", "disk-9f2c41d7-0", "filled", "/img", "raw", False,
                          False, None, "slot0", "1:2:3:4"),
               SlotRecord(1, "/dev/sdb", "disk-9f2c41d7-1", "empty")),
        vcpus_max=4, vcpus_plugged=(0, 1), diskset=(0,))
    return SavedAppliance("key", record, {0: "sda"}, {0: "1:2:3:5"})


def test_a_description_reads_back_as_written() -> None:
    text = saved().to_json()
    assert json.loads(text)["format"] == FORMAT
    assert SavedAppliance.from_json(text, "x") == saved()


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: "{", "not a complete JSON document"),
    (lambda d: json.dumps([1]), "not a saved guestslots appliance"),
    (lambda d: json.dumps({**d, "format": FORMAT + 1}), "this guestslots reads format"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "state_key"}), "incomplete"),
    (lambda d: json.dumps({**d, "kernel_names": {}}), "do not match its slots"),
    (lambda d: json.dumps({**d, "identities": {"0": 7}}), "malformed"),
    (lambda d: json.dumps({**d, "record": {"schema": 99}}), "newer guestslots"),
])
def test_a_bad_description_is_refused_saying_why(change: object, why: str) -> None:
    doc = json.loads(saved().to_json())
    with pytest.raises(RuntimeRecordError, match=why):
        SavedAppliance.from_json(change(doc), "saves/a/appliance.json")  # type: ignore[operator]
