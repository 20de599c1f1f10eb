"""relaunch (seed 001): after QEMU died, the same appliance again, from its runtime
record: every slot at its index with its image, label and access, the NICs with the
same device ids; refused when the record's QEMU still runs or an image changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import guestslots
from guestslots import Appliance, ApplianceState, GuestslotsError, StateError
from guestslots.host import runtime
from guestslots.model.runtime import RuntimeRecordError
from guestslots.testing import testimages as images

from .conftest import Image, fs_device, whoami
from .test_faults import wait_gone

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


def layout(app: Appliance) -> list[tuple[Any, ...]]:
    return [(s.index, s.device, s.state, s.path, s.format, s.readonly, s.label, s.serial)
            for s in app.slots()]


def nic_ids(app: Appliance) -> list[tuple[Any, ...]]:
    return [(n.slot, n.device_id, n.network, n.mac, n.address) for n in app.nics()]


def test_relaunch_after_qemu_was_killed_brings_every_slot_back(
    corpus: dict[str, Image], tmp_path: Path,
) -> None:
    data = images.ext4(tmp_path / "data.img", {"first": "1\n"})
    ro = corpus["gpt-qcow2-ext4"]
    app = Appliance()
    try:
        for _ in range(3):
            app.add_drive("/dev/null")
        app.launch()
        app.hotplug(1, data, readonly=False, label="data")
        app.hotplug(2, ro.path, format=ro.format)
        app.add_nic(1)
        assert (app.diskset_add(1), app.diskset_add(2)) == (0, 0)
        app.mount("/dev/sdb", "/")
        app.write("/kept", b"written before the crash\n")
        app.sync()
        before, nics, pid, ident = layout(app), nic_ids(app), app.pid, app.id

        app.kill()  # QEMU dies under the appliance
        with pytest.raises(GuestslotsError):
            app.ls("/")
        assert app.state is ApplianceState.CLOSED

        app.relaunch()
        assert app.pid != pid and app.id == ident
        assert layout(app) == before
        assert nic_ids(app) == nics and all(n.up for n in app.nics())
        with app.mounted("/dev/sdb", "/", readonly=True):
            assert app.cat("/kept") == "written before the crash\n"
        assert whoami(app, fs_device(app, 2, ro)) == "gpt-qcow2-ext4"
        record = runtime.read(runtime.record_path(app.id))
        assert record.pid == app.pid and [s.device_id for s in record.slots] == [
            f"disk-{ident}-{i}" for i in range(3)]
        assert app.diskset_list() == [1, 2] and record.diskset == (1, 2)  # kept too
        with pytest.raises(StateError, match="relaunch"):
            app.relaunch()  # it runs: nothing to bring back
    finally:
        app.shutdown()


_CHILD = textwrap.dedent("""
    import os, sys
    import guestslots
    app = guestslots.Appliance()
    for _ in range(2):
        app.add_drive("/dev/null")
    app.launch()
    app.hotplug(1, sys.argv[1], format=sys.argv[2], label="base")
    app.add_nic()
    print(app.pid, app.id, flush=True)
    app.kill()      # QEMU crashes...
    os._exit(0)     # ...and so does its owner, leaving the runtime record behind
""")


def dead_appliance(image: str, fmt: str) -> str:
    """The id of an appliance (slot 1: *image*, labelled base; a NIC) whose QEMU and
    owner died in another process, leaving its runtime record behind.  Once its QEMU
    is gone: a killed QEMU takes a moment to exit (CI's libvirt pass found it still
    running, and the relaunch was refused)."""
    done = subprocess.run([sys.executable, "-c", _CHILD, image, fmt],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    pid, ident = done.stdout.split()[-2:]
    wait_gone(int(pid))
    return ident


def test_another_process_relaunches_a_dead_appliance_from_its_record(
    corpus: dict[str, Image],
) -> None:
    image = corpus["mbr-raw-ext4"]
    ident = dead_appliance(str(image.path), image.format)
    path = runtime.record_path(ident)
    assert path.exists()
    with guestslots.relaunch(ident) as app:
        assert app.id == ident
        assert [(s.index, s.state.value, s.path, s.label) for s in app.slots()] == [
            (0, "empty", None, None), (1, "filled", str(image.path), "base")]
        assert [(n.slot, n.device_id) for n in app.nics()] == [(0, f"nic-{ident}-0")]
        assert whoami(app, fs_device(app, 1, image)) == "mbr-raw-ext4"
        assert app.list_disk_labels() == {"base": "/dev/sdb"}
        # its record is this process's now, and it runs: a second relaunch is refused
        with pytest.raises(RuntimeRecordError, match="still running"):
            guestslots.relaunch(ident)
    assert not path.exists()


def test_a_record_of_an_older_guestslots_with_full_slots_relaunches(
    corpus: dict[str, Image],
) -> None:
    """Seed 001: an old file with a missing field is read with an empty default and
    nothing fails.  A schema-1 record (no identity, chain, nics, memory, disk set,
    detached) with a full slot relaunches, with a warning that its image is taken
    unchecked (before: refused, "written by an older guestslots")."""
    image = corpus["mbr-raw-ext4"]
    ident = dead_appliance(str(image.path), image.format)
    path = runtime.record_path(ident)
    doc = json.loads(path.read_text())
    old = {k: v for k, v in doc.items() if k not in (
        "nics", "memory_mb", "diskset", "detached", "vcpu_unplugged")}
    old["schema"] = 1
    old["slots"] = [{k: v for k, v in slot.items() if k not in ("identity", "chain")}
                    for slot in doc["slots"]]
    path.write_text(json.dumps(old))
    try:
        with pytest.warns(RuntimeWarning, match="slot 1: the record .* older "
                          "guestslots.* taken as it is now, unchecked"):
            app = guestslots.relaunch(ident)
        with app:
            assert [(s.index, s.state.value, s.path, s.label) for s in app.slots()] == [
                (0, "empty", None, None), (1, "filled", str(image.path), "base")]
            assert app.nics() == []  # the old record had none to give
            assert whoami(app, fs_device(app, 1, image)) == "mbr-raw-ext4"
    finally:
        path.unlink(missing_ok=True)


def test_a_record_naming_a_changed_image_or_broken_is_refused(
    corpus: dict[str, Image], tmp_path: Path,
) -> None:
    image = tmp_path / "base.img"
    image.write_bytes(corpus["mbr-raw-ext4"].path.read_bytes())
    ident = dead_appliance(str(image), "raw")
    path = runtime.record_path(ident)
    try:
        st = image.stat()
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        with pytest.raises(RuntimeRecordError, match=f"slot 1.*{image}.*changed since"):
            guestslots.relaunch(ident)
        image.rename(tmp_path / "moved.img")  # kept: its inode is not reused
        image.write_bytes(corpus["mbr-raw-ext4"].path.read_bytes())  # another file there
        with pytest.raises(RuntimeRecordError, match="another file is at its path"):
            guestslots.relaunch(path)
        text = path.read_text()
        path.write_text(text[: len(text) // 2])
        with pytest.raises(RuntimeRecordError, match="truncated"):
            guestslots.relaunch(path)
    finally:
        path.unlink(missing_ok=True)


def test_a_read_only_image_changed_while_plugged_is_caught_at_relaunch(
    corpus: dict[str, Image], tmp_path: Path,
) -> None:
    image = tmp_path / "ro.img"
    image.write_bytes(corpus["mbr-raw-ext4"].path.read_bytes())
    app = Appliance()
    try:
        for _ in range(2):
            app.add_drive("/dev/null")
        app.launch()
        app.hotplug(0, image)
        st = image.stat()
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        # a later change rewrites the record: it must keep what slot 0 was when plugged
        app.hotplug(1, corpus["whole-qcow2-ext4"].path, format="qcow2")
        app.kill()
        with pytest.raises(GuestslotsError):
            app.ls("/")
        with pytest.raises(RuntimeRecordError, match="slot 0.*changed since"):
            app.relaunch()
    finally:
        app.shutdown()
