"""Live migration into a new local QEMU process, save and restore (issue 13, seed 002):
the appliance carries on there with every slot, mount, vCPU, NIC and its agent
channel, through the same Appliance object; bad parameters are refused before anything
moves; a restore brings back only what matches the save."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestslots import (
    Appliance,
    ApplianceState,
    GuestslotsError,
    MigrationParamError,
    MigrationParams,
    MigrationProgress,
    restore,
)
from guestslots.host import runtime
from guestslots.model.runtime import RuntimeRecordError
from guestslots.testing import testimages as images

pytestmark = pytest.mark.integration

#: test_vcpus's layout: the same saved state.
MAX_VCPUS = 4
MIB = 1 << 20


def launched(slots: int) -> Appliance:
    """An appliance of its own with *slots* empty slots (vCPU ids to plug on QEMU: the
    libvirt backend does not hotplug vCPUs yet)."""
    qemu = (os.environ.get("GUESTSLOTS_BACKEND") or "qemu") == "qemu"
    app = Appliance(max_vcpus=MAX_VCPUS if qemu else 1)
    for _ in range(slots):
        app.add_drive("/dev/null")
    app.launch()
    return app


@pytest.fixture(scope="module")
def mover() -> Iterator[Appliance]:
    app = launched(3)
    yield app
    app.shutdown()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_appliance_carries_on_in_the_new_process(mover: Appliance, tmp_path: Path) -> None:
    app = mover
    if app.backend != "qemu":
        with pytest.raises(GuestslotsError, match="cannot move an appliance"):
            app.migrate()
        return
    disk = images.ext4(tmp_path / "rw.img", {"before": "written before\n"}, size_mib=32)
    base = images.ext4(tmp_path / "ro.img", {"n": "read-only\n"})
    app.hotplug(0, disk, readonly=False)
    app.hotplug(1, base)  # read-only: its writes go to a throwaway overlay
    app.add_vcpu(1)
    app.add_nic(network="user")
    app.mount("/dev/sda", "/")
    app.mkdir("/ro")
    app.mount_ro("/dev/sdb", "/ro")
    app.write("/in-cache", "only in the page cache\n")
    before = runtime.read(runtime.record_path(app.id))
    old_pid = app.pid
    assert old_pid is not None
    seen: list[MigrationProgress] = []
    done = app.migrate(progress=seen.append)
    assert done.status == "completed" and done.total_time_ms > 0
    assert all(p.status in ("setup", "active", "device", "completed") for p in seen)
    assert app.pid != old_pid and gone(old_pid)
    # the same object, the same guest: mounts, cache, vCPUs and NIC are all there
    assert app.cat("/in-cache") == "only in the page cache\n"
    assert app.cat("/ro/n") == "read-only\n"
    assert [v.state for v in app.vcpus()][:2] == ["online", "online"]
    nic = app.nics()[0]
    assert nic.up and nic.address == "10.0.2.15/24"
    app.write("/after", "written in the new process\n")
    # the runtime record names the new process, with the same layout
    after = runtime.read(runtime.record_path(app.id))
    assert after.pid == app.pid and after.qmp_socket != before.qmp_socket
    assert after.slots == before.slots and after.vcpus_plugged == before.vcpus_plugged
    # what the new process wrote is in the image
    app.umount_all()
    app.unplug(0)
    app.hotplug(0, disk)
    app.mount_ro("/dev/sda", "/")
    assert app.cat("/after") == "written in the new process\n"
    assert app.cat("/in-cache") == "only in the page cache\n"


def test_a_bandwidth_limit_holds_the_stream_back(mover: Appliance) -> None:
    if mover.backend != "qemu":
        pytest.skip("local migration is the QEMU backend's")
    free = mover.migrate()
    limit = 16  # MiB/s: well below what an unlimited migration reaches even under load
    limited = mover.migrate(MigrationParams(bandwidth=limit))
    assert limited.status == "completed" and limited.transferred > 0
    # QEMU held the stream to the limit: only the last round, sent while the guest is
    # stopped (at most the downtime's worth), goes unlimited
    rate = limited.transferred / (limited.total_time_ms / 1000)
    assert rate <= limit * MIB * 2, (rate / MIB, limited)
    assert limited.total_time_ms > free.total_time_ms, (free, limited)
    assert mover.list_devices()[0] == "/dev/sda"  # still answering


def test_bad_parameters_are_refused_before_anything_moves(mover: Appliance,
                                                          tmp_path: Path) -> None:
    if mover.backend != "qemu":
        pytest.skip("local migration is the QEMU backend's")
    app = mover
    if app.slots()[2].state.value == "empty":
        app.hotplug(2, images.ext4(tmp_path / "x.img", {"n": "x\n"}))
    pid = app.pid
    record = runtime.read(runtime.record_path(app.id))
    bigger = dataclasses.replace(record, memory_mb=record.memory_mb * 2)
    with pytest.raises(MigrationParamError, match="memory 512 MiB would become 1024"):
        app.migrate(MigrationParams(destination_config=bigger))
    with pytest.raises(MigrationParamError, match="copying images is not offered"):
        app.migrate(MigrationParams(disks=[2]))
    with pytest.raises(MigrationParamError, match="slot 3 is empty"):
        app.migrate(MigrationParams(disks=[3]))
    assert app.pid == pid
    assert app.list_filesystems()["/dev/sdc"] == "ext4"


def test_save_and_restore_bring_back_the_whole_appliance(tmp_path: Path) -> None:
    """On both backends (libvirt: saveFlags/restoreFlags, under the saved name)."""
    app = launched(2)
    try:
        disk = images.ext4(tmp_path / "rw.img", {"n": "before\n"}, size_mib=32)
        base = images.ext4(tmp_path / "ro.img", {"n": "read-only\n"})
        app.hotplug(0, disk, readonly=False)
        app.hotplug(1, base)
        app.diskset_add(0)
        app.mount("/dev/sda", "/")
        app.mkdir("/ro")
        app.mount_ro("/dev/sdb", "/ro")
        app.write("/in-cache", "only in the page cache\n")
        with pytest.raises(GuestslotsError, match="cannot make the save directory"):
            app.save(tmp_path)  # exists
        saved = app.save(tmp_path / "saved")
        assert app.state is ApplianceState.CLOSED
        with pytest.raises(RuntimeRecordError, match="is another file, or changed"):
            os.utime(disk)  # touched since the save: refused, nothing started
            restore(saved)
    finally:
        app.shutdown()
    # saved again, untouched this time
    app = launched(2)
    app.hotplug(0, disk, readonly=False)
    app.hotplug(1, base)
    app.diskset_add(0)
    if app.backend == "qemu":  # vCPU hotplug is the QEMU backend's, so far
        app.add_vcpu(1)
    app.mount("/dev/sda", "/")
    app.write("/in-cache", "only in the page cache\n")
    saved = app.save(tmp_path / "saved-2")
    back = restore(saved)
    try:
        assert back.id == app.id and back.state is ApplianceState.RUNNING
        assert back.cat("/in-cache") == "only in the page cache\n"  # the page cache too
        assert [s.path for s in back.slots()[:2]] == [str(disk), str(base)]
        assert back.diskset_list() == [0]
        if back.backend == "qemu":
            assert [v.state for v in back.vcpus()][:2] == ["online", "online"]
        back.write("/after", "after the restore\n")
        assert back.list_filesystems()["/dev/sdb"] == "ext4"
    finally:
        back.shutdown()
    # the restored appliance wrote the image: the save no longer matches it
    with pytest.raises(RuntimeRecordError, match="slot 0"):
        restore(saved)


def test_a_save_with_the_disk_set_keeps_those_disks_as_of_the_save(tmp_path: Path) -> None:
    """seed 004's save with the disk set, on both backends: the set's disks are copied
    into the save while the guest is paused, so they match the saved memory (even what
    was only in the page cache); the originals are free to change; the restore runs
    on the copies."""
    app = launched(3)
    kept = images.ext4(tmp_path / "kept.img", {"n": "before\n"}, size_mib=32)
    shared = images.ext4(tmp_path / "shared.img", {"n": "shared\n"})
    ro = images.ext4(tmp_path / "ro.img", {"n": "ro\n"})
    try:
        app.hotplug(0, kept, readonly=False)
        app.hotplug(1, shared, readonly=False)
        app.hotplug(2, ro)
        with pytest.raises(GuestslotsError, match="disk set is empty"):
            app.save(tmp_path / "nothing", with_disk_set=True)
        app.diskset_add(2)
        with pytest.raises(GuestslotsError, match="slot 2 .* is read-only"):
            app.save(tmp_path / "nothing", with_disk_set=True)
        assert not (tmp_path / "nothing").exists()  # refused before anything was made
        app.diskset_remove(2)
        app.diskset_add(0)
        app.mount("/dev/sda", "/")
        app.write("/in-cache", "only in the page cache\n")
        saved = Path(app.save(tmp_path / "saved", with_disk_set=True))
    finally:
        app.shutdown()
    copy = saved / "disks" / "slot0.img"
    assert sorted(p.name for p in (saved / "disks").iterdir()) == ["slot0.img"]
    original = sha(kept)
    os.utime(kept)  # the original moves on: the save does not depend on it
    with open(kept, "r+b") as f:
        f.write(b"\0" * 4096)
    back = restore(saved)
    try:
        assert [s.path for s in back.slots()[:3]] == [str(copy), str(shared), str(ro)]
        assert back.cat("/in-cache") == "only in the page cache\n"
        assert back.cat("/n") == "before\n"
        back.write("/after", "after the restore\n")
        back.umount_all()
        assert back.fsck("ext4", "/dev/sda") == 0
    finally:
        back.shutdown()
    assert sha(kept) != original
    # the restore wrote to the copy: the save no longer matches it
    with pytest.raises(RuntimeRecordError, match=f"slot 0.*{copy}"):
        restore(saved)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
