"""The runtime record: rewritten on every change of a running appliance, listed by
``guestslots ps``, removed at shutdown, and cleaned by ``guestslots gc`` once its QEMU
is gone."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from guestslots import Appliance, ApplianceState, ChannelClosed, DiskSetError
from guestslots.host import runtime
from guestslots.testing import testimages as images

from .conftest import Image

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guestslots.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_record_follows_every_change_and_goes_at_shutdown(
    corpus: dict[str, Image],
) -> None:
    image = corpus["mbr-raw-ext4"]
    app = Appliance()
    app.add_drive("/dev/null")
    app.add_drive("/dev/null")
    app.launch()
    path = runtime.record_path(app.id)
    try:
        record = runtime.read(path)
        assert (record.id, record.backend, record.pid) == (app.id, app.backend, app.pid)
        assert [s.state for s in record.slots] == ["empty", "empty"]
        app.hotplug(1, image.path, label="mbr")
        record = runtime.read(path)
        assert record.slots[1].state == "filled"
        assert (record.slots[1].path, record.slots[1].label, record.slots[1].serial) == (
            str(image.path), "mbr", "mbr")
        # the recorded device id is the one QEMU (or libvirt, as an alias) has
        assert record.slots[1].device_id == f"disk-{app.id}-1"
        backend: Any = app._backend
        if app.backend == "qemu":
            devices = backend.machine.execute("qom-list", {"path": "/machine/peripheral"})
            assert f"disk-{app.id}-1" in {d["name"] for d in devices}
        else:
            assert f"ua-disk-{app.id}-1" in backend.domain.XMLDesc(0)
        listed = [json.loads(line) for line in cli("ps", "--json").stdout.splitlines()]
        mine = [row for row in listed if row["id"] == app.id]
        assert mine and mine[0]["running"] and mine[0]["slots"] == "1/2"
        assert mine[0]["owner_alive"] is True
        app.unplug(1)
        assert runtime.read(path).slots[1].state == "empty"
    finally:
        app.shutdown()
    assert not path.exists()


def test_gc_removes_the_record_of_a_qemu_that_is_gone(tmp_path: Path) -> None:
    app = Appliance()
    app.add_drive("/dev/null")
    app.launch()
    record = runtime.read(runtime.record_path(app.id))
    app.shutdown()
    # as if its owner had been killed with its QEMU: the record stayed behind
    stale = dataclasses.replace(record, id="deadbeef")
    path = runtime.write(stale)
    proc = cli("gc")
    assert proc.returncode == 0, proc.stderr
    assert f"removed {path} (its QEMU is gone)" in proc.stdout
    assert not path.exists()


def test_ps_says_which_records_it_cannot_read() -> None:
    bad = runtime.runtime_dir() / "cafebabe.json"
    bad.write_text('{"schema": 99}')
    try:
        proc = cli("ps")
        assert proc.returncode == 0
        assert "written by a newer guestslots (schema 99" in proc.stderr
    finally:
        bad.unlink()


def test_stop_stops_another_process_appliance_by_its_id() -> None:
    app = Appliance()
    app.add_drive("/dev/null")
    app.launch()
    try:
        pid = app.pid
        assert pid is not None
        proc = cli("stop", app.id)
        assert proc.returncode == 0, proc.stderr
        assert f"stopped {app.id}" in proc.stdout
        assert not runtime.record_path(app.id).exists()
        with pytest.raises(ChannelClosed):
            app.list_filesystems()
        assert app.state is ApplianceState.CLOSED
        again = cli("stop", app.id)
        assert again.returncode == 1 and "no running appliance" in again.stderr
    finally:
        app.shutdown()


def test_the_disk_set_is_recorded_and_an_unplugged_slot_leaves_it(
    app: Appliance, tmp_path: Path,
) -> None:
    for i in (0, 1):
        app.hotplug(i, images.ext4(tmp_path / f"d{i}.img", {"n": f"{i}\n"}))
    assert (app.diskset_add(0), app.diskset_add(0), app.diskset_add(1)) == (0, 1, 0)
    with pytest.raises(DiskSetError, match="slot 2 is empty"):
        app.diskset_add(2)
    with pytest.raises(DiskSetError, match="does not exist"):
        app.diskset_remove(len(app.slots()))
    assert runtime.read(runtime.record_path(app.id)).diskset == (0, 1)
    assert in_domain_metadata(app) in ([0, 1], None)
    # each write renames a new file over the record; held open, the old one keeps its
    # inode number (no reuse), so a write would show as another file at the path
    with open(runtime.record_path(app.id), "rb") as written:
        assert (app.diskset_add(1), app.diskset_add_all()) == (1, 0)  # nothing changes
        assert os.path.samestat(os.fstat(written.fileno()),
                                runtime.record_path(app.id).stat())  # nothing written
    with pytest.warns(RuntimeWarning, match="slot 1 was unplugged and left the disk set"):
        app.unplug(1)
    assert (app.diskset_size(), app.diskset_list()) == (1, [0])
    assert runtime.read(runtime.record_path(app.id)).diskset == (0,)
    assert in_domain_metadata(app) in ([0], None)
    assert app.diskset_remove(1) == 1  # an empty slot: already absent (seed 004)
    assert app.diskset_remove_all() == 0 and app.diskset_list() == []
    assert in_domain_metadata(app) in ([], None)


def in_domain_metadata(app: Appliance) -> list[int] | None:
    """On libvirt, the disk set as the domain's metadata says it (None on QEMU)."""
    if app.backend != "libvirt":
        return None
    import libvirt

    from guestslots.backends.libvirt.domxml import DISKSET_NS, diskset_of

    domain = app._backend.domain  # type: ignore[union-attr]
    element = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, DISKSET_NS)
    assert isinstance(element, str) and element.startswith("<diskset")
    found = diskset_of(domain.XMLDesc(0))
    assert found is not None, "no disk set in the domain's metadata"
    return found
