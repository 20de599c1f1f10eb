"""The runtime record (seed 001): its document, and the records a reader refuses."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from guestslots.host import runtime
from guestslots.model.runtime import SCHEMA, RuntimeRecord, RuntimeRecordError, SlotRecord


def record() -> RuntimeRecord:
    return RuntimeRecord(
        id="9f2c41d7", backend="qemu", pid=4242, started=1.5, updated=2.5,
        workdir="/tmp/guestslots-x", qmp_socket="/tmp/guestslots-x/qmp.sock",
        agent_socket="/tmp/guestslots-x/agent.sock", layout_key="k",
        owner={"host": "h", "boot_id": "b", "pid": 1, "start": 2},
        slots=(SlotRecord(0, "/dev/sda", "slot0", "filled", "/img", "raw", True, False, None,
                          "slot0"),
               SlotRecord(1, "/dev/sdb", "slot1", "empty")),
        vcpus_max=4, vcpus_plugged=(0, 1), diskset=(0,))


def test_a_record_reads_back_as_written() -> None:
    text = record().to_json()
    doc = json.loads(text)
    assert doc["schema"] == SCHEMA and doc["vcpus"] == {"max": 4, "plugged": [0, 1]}
    assert doc["slots"][0]["device_id"] == "slot0"
    assert doc["diskset"] == [0]
    assert RuntimeRecord.from_json(text) == record()


def test_a_detached_appliance_is_recorded_so_and_older_records_are_not() -> None:
    detached = dataclasses.replace(record(), detached=True, owner={}, vcpu_unplugged=True)
    doc = json.loads(detached.to_json())
    assert doc["detached"] is True and doc["owner"] == {}
    assert RuntimeRecord.from_json(detached.to_json()) == detached
    older = RuntimeRecord.from_json(json.dumps({**doc, "schema": 4}))
    assert (older.detached, older.vcpu_unplugged) == (False, False)
    with pytest.raises(RuntimeRecordError, match="detached is 'yes'"):
        RuntimeRecord.from_json(json.dumps({**doc, "detached": "yes"}))


def test_the_qemu_binary_is_recorded_and_older_records_name_none() -> None:
    """(A restore, relaunch or attach takes it: a saved state is one QEMU's only.)"""
    on_10 = dataclasses.replace(record(), qemu="/opt/qemu-10/qemu-system-x86_64")
    doc = json.loads(on_10.to_json())
    assert doc["qemu"] == "/opt/qemu-10/qemu-system-x86_64"
    assert RuntimeRecord.from_json(on_10.to_json()) == on_10
    assert RuntimeRecord.from_json(json.dumps({**doc, "schema": 6})).qemu == ""
    with pytest.raises(RuntimeRecordError, match="qemu is None"):
        RuntimeRecord.from_json(json.dumps({**doc, "qemu": None}))


def test_a_restore_runs_only_a_qemu_this_host_knows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save directory may come from elsewhere: the QEMU its record names is run only if
    it is the system's, $GUESTSLOTS_QEMU or tools/second-qemu's."""
    import guestslots.appliance as appliance

    named = tmp_path / "qemu-system-x86_64"
    named.write_text("#!/bin/sh\n")
    named.chmod(0o755)
    on_it = dataclasses.replace(record(), qemu=str(named))
    monkeypatch.delenv("GUESTSLOTS_QEMU", raising=False)
    options: dict[str, object] = {}
    appliance._recorded_qemu(on_it, options)
    assert options == {}  # unknown here: the default, not the file's choice
    monkeypatch.setattr(appliance, "second_qemu", lambda: str(named))
    appliance._recorded_qemu(on_it, options)
    assert options == {"qemu": str(named)}
    chosen: dict[str, object] = {"qemu": "/usr/bin/qemu-system-x86_64"}
    appliance._recorded_qemu(on_it, chosen)  # the caller's choice stands
    assert chosen == {"qemu": "/usr/bin/qemu-system-x86_64"}


def test_a_schema_2_record_has_an_empty_disk_set() -> None:
    doc = json.loads(record().to_json())
    del doc["diskset"]
    assert RuntimeRecord.from_json(json.dumps({**doc, "schema": 2})).diskset == ()
    with pytest.raises(RuntimeRecordError, match="diskset holds"):
        RuntimeRecord.from_json(json.dumps({**doc, "diskset": [-1]}))


@pytest.mark.parametrize(("text", "why"), [
    (record().to_json()[:40], "truncated"),
    ("[1, 2]", "not a guestslots runtime record"),
    (json.dumps({**json.loads(record().to_json()), "schema": SCHEMA + 1}),
     f"written by a newer guestslots \\(schema {SCHEMA + 1}"),
    (json.dumps({**json.loads(record().to_json()), "schema": "1"}), "is not a number"),
    (json.dumps({k: v for k, v in json.loads(record().to_json()).items() if k != "slots"}),
     "incomplete or malformed"),
    (json.dumps({**json.loads(record().to_json()), "pid": True}), "incomplete or malformed"),
    (json.dumps({**json.loads(record().to_json()), "slots": [{"index": 0}]}),
     "incomplete or malformed"),
])
def test_unusable_records_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(RuntimeRecordError, match=f"^here: .*{why}"):
        RuntimeRecord.from_json(text, "here")


@pytest.mark.parametrize("trap", ["symlink", "open"])
def test_the_records_directory_must_be_a_private_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trap: str
) -> None:
    # a shared /tmp is where the fallback lives: a planted symlink (to a directory of
    # ours elsewhere) or a directory others may write must not receive our records
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    if trap == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        (tmp_path / "guestslots").symlink_to(elsewhere)
    else:
        (tmp_path / "guestslots").mkdir()
        os.chmod(tmp_path / "guestslots", 0o777)
    with pytest.raises(RuntimeRecordError, match="not a private directory"):
        runtime.runtime_dir()


def test_a_recorded_image_is_checked_before_a_relaunch(tmp_path: Path) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(b"x" * 4096)

    def slot(**kw: object) -> SlotRecord:
        fields: dict[str, object] = {"index": 1, "device": "/dev/sdb", "device_id": "d",
                                     "state": "filled", "path": str(image), "format": "raw",
                                     "readonly": True, "overlay": False,
                                     "identity": runtime.image_identity(str(image)), **kw}
        return SlotRecord(**fields)  # type: ignore[arg-type]

    read_only, writable = slot(), slot(readonly=False)
    assert runtime.image_changed(read_only) == runtime.image_changed(writable) == ""
    image.write_bytes(b"y" * 8192)  # same file, new contents
    assert "changed since it was recorded" in runtime.image_changed(read_only)
    assert runtime.image_changed(writable) == ""  # the guest wrote to it: expected
    image.rename(tmp_path / "b.img")
    image.write_bytes(b"x" * 4096)
    assert "another file" in runtime.image_changed(writable)
    image.unlink()
    assert "cannot be opened" in runtime.image_changed(read_only)
    # an older record names no identity: read with the field empty (seed 001), only
    # checked to open (before: refused, "written by an older guestslots")
    assert runtime.image_changed(
        SlotRecord(1, "/dev/sdb", "d", "filled", str(tmp_path / "b.img"))) == ""
    assert "cannot be opened" in runtime.image_changed(
        SlotRecord(1, "/dev/sdb", "d", "filled", str(tmp_path / "gone.img")))


def test_a_slots_snapshot_chain_round_trips_and_older_records_have_none() -> None:
    snapped = dataclasses.replace(record(), slots=(
        dataclasses.replace(record().slots[0], chain=("/img.s1.qcow2", "/img.s2.qcow2")),
        record().slots[1]))
    doc = json.loads(snapped.to_json())
    assert doc["slots"][0]["chain"] == ["/img.s1.qcow2", "/img.s2.qcow2"]
    assert RuntimeRecord.from_json(snapped.to_json()) == snapped
    for slot in doc["slots"]:
        del slot["chain"]
    assert RuntimeRecord.from_json(json.dumps({**doc, "schema": 3})).slots[0].chain == ()
    doc["slots"][0]["chain"] = "/img.s1.qcow2"
    with pytest.raises(RuntimeRecordError, match="slot chain is"):
        RuntimeRecord.from_json(json.dumps(doc))


def test_the_record_of_a_slot_and_of_a_nic() -> None:
    """What the Appliance writes for each slot and NIC (model.runtime.slot_record and
    nic_record: moved here from the Appliance's record writer)."""
    from guestslots.model.drives import DriveSpec
    from guestslots.model.ids import device_id
    from guestslots.model.nics import Nic
    from guestslots.model.runtime import NicRecord, nic_record, slot_record
    from guestslots.model.slots import SlotTable

    table = SlotTable(2)
    table.reserve(None)
    table.reserve(None)
    full = table.fill(1, DriveSpec("/img/a.qcow2", "qcow2", readonly=False, label="data",
                                   chain=("/img/s1.qcow2",)), "sdb")
    record = slot_record(full, "9f2c41d7", "ino:7;mtime:1")
    assert (record.index, record.device, record.state, record.path, record.format,
            record.readonly, record.overlay, record.label, record.identity, record.chain) == (
        1, "/dev/sdb", "filled", "/img/a.qcow2", "qcow2", False, False, "data",
        "ino:7;mtime:1", ("/img/s1.qcow2",))
    assert record.device_id == device_id("disk", "9f2c41d7", 1)
    empty = slot_record(table[0], "9f2c41d7", "stale")
    assert (empty.state, empty.path, empty.identity, empty.chain) == ("empty", None, None, ())
    nic = Nic(0, "nic-9f2c41d7-0", "user", "52:54:00:9f:2c:00", "10.0.2.15/24", "10.0.2.2",
              None)
    assert nic_record(nic) == NicRecord(0, "nic-9f2c41d7-0", "user", "52:54:00:9f:2c:00",
                                        "10.0.2.15/24", "10.0.2.2", None)
