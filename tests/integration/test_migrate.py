"""Live migration into a new local QEMU process, save and restore (issue 13, seed 002):
the appliance carries on there with every slot, mount, vCPU, NIC and its agent
channel, through the same Appliance object; bad parameters are refused before anything
moves; a restore brings back only what matches the save."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guestslots import (
    Appliance,
    ApplianceState,
    GuestslotsError,
    MigrationParamError,
    MigrationParams,
    MigrationProgress,
    QemuTimeout,
    restore,
)
from guestslots.host import runtime
from guestslots.host.qemuversion import known_qemus
from guestslots.model.runtime import RuntimeRecordError
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]

#: test_vcpus's layout: the same saved state.
MAX_VCPUS = 4
MIB = 1 << 20


def launched(slots: int) -> Appliance:
    """An appliance of its own with *slots* empty slots and vCPU ids to plug."""
    app = Appliance(max_vcpus=MAX_VCPUS)
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


def test_libvirt_needs_a_destination_libvirt(mover: Appliance) -> None:
    if mover.backend != "libvirt":
        pytest.skip("the libvirt backend's refusal")
    with pytest.raises(MigrationParamError, match="'destination_uri': the libvirt"):
        mover.migrate()
    assert mover.list_devices()[0] == "/dev/sda"  # nothing moved: still answering


def test_the_appliance_carries_on_in_the_new_process(mover: Appliance, tmp_path: Path) -> None:
    app = mover
    if app.backend != "qemu":
        pytest.skip("a new local QEMU process is the QEMU backend's; test_libvirt_migrate "
                    "moves a libvirt appliance to another libvirt")
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


def test_a_bandwidth_limit_reaches_qemu(mover: Appliance, tmp_path: Path) -> None:
    """The limit is QEMU's max-bandwidth, read back from the QEMU that ran the migration
    (what it does to the rate is measured by tools/bench/bench_migrate.py; this test
    asserted the rate and the duration before)."""
    if mover.backend != "qemu":
        pytest.skip("local migration is the QEMU backend's")
    limited = mover.migrate(MigrationParams(bandwidth=16))
    assert limited.status == "completed" and limited.transferred > 0
    # a migration cancelled at its timeout leaves the VM in the QEMU it ran from, which
    # still has the limit the migration was given
    with pytest.raises(QemuTimeout, match="did not end in [0-9.]+ s: cancelled"):
        mover.migrate(MigrationParams(bandwidth=1), timeout=1)
    machine = mover._backend.machine  # type: ignore[union-attr]
    assert machine.execute("query-migrate-parameters")["max-bandwidth"] == 1 * MIB
    assert mover.list_devices()[0] == "/dev/sda"  # still answering
    # and changing devices at once (found: "device_add not allowed while migrating"
    # until QEMU had finished cancelling, which the call did not wait for)
    index = mover.hotplug(-1, images.ext4(tmp_path / "after.img", {"n": "after\n"}))
    mover.unplug(index)


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
    with pytest.raises(MigrationParamError, match="slot 2 .* is read-only or overlay=True"):
        app.migrate(MigrationParams(disks=[2], disk_directory=str(tmp_path)))
    with pytest.raises(MigrationParamError, match="slot 3 is empty"):
        app.migrate(MigrationParams(disks=[3]))
    # seed 002: what this backend cannot apply is refused, not accepted and ignored
    # (before: a new name and a changed image path were ignored; a stream URI QEMU
    # cannot listen at failed only once the new process had started)
    files = set(os.listdir(record.workdir))
    elsewhere = dataclasses.replace(record, slots=tuple(
        dataclasses.replace(s, path=str(tmp_path / "elsewhere.img")) if s.index == 2 else s
        for s in record.slots))
    with pytest.raises(MigrationParamError, match="host-side settings .* slot 2: path"):
        app.migrate(MigrationParams(destination_config=elsewhere))
    with pytest.raises(MigrationParamError, match="'destination_name': .* cannot rename"):
        app.migrate(MigrationParams(destination_name="copy"))
    with pytest.raises(MigrationParamError, match="'uri': 'bogus:/x'"):
        app.migrate(MigrationParams(uri="bogus:/x"))
    assert app.pid == pid
    assert set(os.listdir(record.workdir)) == files  # no new process was started
    assert app.list_filesystems()["/dev/sdc"] == "ext4"


def slot_path(app: Appliance, index: int) -> str | None:
    return app.slots()[index].path


def read_back(app: Appliance, image: Path, names: tuple[str, ...]) -> dict[str, str | None]:
    """What *image*'s filesystem holds at *names* (None: absent), plugged read-only
    into slot 0 in place of what was there."""
    app.umount_all()
    if app.slots()[0].state.value != "empty":
        app.unplug(0)
    app.hotplug(0, image)
    app.mount_ro("/dev/sda", "/")
    return {name: app.cat(name) if app.exists(name) else None for name in names}


def test_a_migration_copies_the_disk_set_and_the_slots_move_onto_the_copies(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Seed 004's migration with the disk set: the set's disks are copied (a snapshot
    chain collapsed into one file), the other slot stays shared; the guest carries on
    on the copies, and the images keep what was written up to the switch.  On libvirt
    the domain moves to another libvirt (libvirt's storage migration)."""
    app = launched(3)
    try:
        there = {} if app.backend == "qemu" else \
            {"destination_uri": request.getfixturevalue("libvirtd_uri")}
        a = images.ext4(tmp_path / "a.img", {"before": "in the image\n"}, size_mib=32)
        b = images.ext4(tmp_path / "b.img", {"n": "shared\n"}, size_mib=16)
        c = images.qcow2(images.ext4(tmp_path / "c.raw", {"c": "qcow2\n"}, size_mib=16),
                         tmp_path / "c.qcow2")
        app.hotplug(0, a, readonly=False)
        app.hotplug(1, b, readonly=False)
        app.hotplug(2, c, format="qcow2", readonly=False)
        app.diskset_add(0)
        app.diskset_add(2)
        app.mount("/dev/sda", "/")
        app.write("/before-snapshot", "frozen into the image\n")
        [overlay, _] = app.snapshot("s1", diskset=True)
        app.write("/on-the-overlay", "after the snapshot\n")
        app.sync()
        app.write("/in-cache", "only in the page cache\n")
        copies = tmp_path / "copies"
        copies.mkdir()
        with pytest.raises(MigrationParamError, match="disk_directory.*needs a directory"):
            app.migrate(MigrationParams(with_disk_set=True, **there))
        old_pid = app.pid
        assert old_pid is not None
        seen: list[MigrationProgress] = []
        done = app.migrate(MigrationParams(with_disk_set=True, disk_directory=str(copies),
                                           **there), progress=seen.append)
        assert done.status == "completed" and gone(old_pid)
        assert {p.status for p in seen} <= {"copying-disks", "setup", "active",
                                             "pre-switchover", "device", "completed"}
        assert slot_path(app, 0) == str(copies / "slot0.img")
        assert slot_path(app, 1) == str(b)
        assert slot_path(app, 2) == str(copies / "slot2.qcow2")
        record = runtime.read(runtime.record_path(app.id))
        assert [s.path for s in record.slots][:3] == [str(copies / "slot0.img"), str(b),
                                                      str(copies / "slot2.qcow2")]
        assert [s.chain for s in record.slots][:3] == [(), (), ()]
        assert record.diskset == (0, 2)
        # the record knows the copies as the slots' images: a relaunch would take them
        assert not runtime.image_changed(record.slots[0])
        assert not runtime.image_changed(record.slots[2])
        # the same guest, on the copies
        assert app.cat("/in-cache") == "only in the page cache\n"
        app.write("/after", "written on the copy\n")
        app.mkdir_p("/mnt/c")
        app.mount("/dev/sdc", "/mnt/c")
        app.write("/mnt/c/after", "on the qcow2 copy\n")
        app.umount_all()
        app.diskset_remove_all()
        app.unplug(2)
        # each copy is one file: the chain collapsed, no backing file named
        info = images.sh("qemu-img", "info", "--output=json", "-f", "qcow2",
                         copies / "slot2.qcow2")
        assert "backing-filename" not in info
        images.sh("qemu-img", "check", "-f", "qcow2", copies / "slot2.qcow2")
        # the images keep what the guest wrote up to the switch, and nothing after
        flat = tmp_path / "old-chain.img"  # the old chain's top names a.img: flatten it
        images.sh("qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay, flat)
        names = ("/before", "/before-snapshot", "/on-the-overlay", "/in-cache", "/after")
        assert read_back(app, a, names) == {
            "/before": "in the image\n", "/before-snapshot": "frozen into the image\n",
            "/on-the-overlay": None, "/in-cache": None, "/after": None}
        old_chain = read_back(app, flat, names)
        assert old_chain["/on-the-overlay"] == "after the snapshot\n"
        assert old_chain["/after"] is None  # /in-cache: on disk or not, as it happened
        assert read_back(app, copies / "slot0.img", names) == {
            "/before": "in the image\n", "/before-snapshot": "frozen into the image\n",
            "/on-the-overlay": "after the snapshot\n",
            "/in-cache": "only in the page cache\n", "/after": "written on the copy\n"}
    finally:
        app.shutdown()


def test_a_copy_that_fails_leaves_the_appliance_on_its_own_images(
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """On both backends (libvirt: its storage migration to another libvirt, aborted past
    the timeout)."""
    app = launched(2)
    try:
        # libvirt: to another libvirt, held back (1 MiB/s) so that the abort comes first
        where: dict[str, Any] = {} if app.backend == "qemu" else {
            "destination_uri": request.getfixturevalue("libvirtd_uri")}
        slow: dict[str, Any] = {} if app.backend == "qemu" else {"bandwidth": 1}
        # data the mirror must really copy, so that it cannot be ready at once
        noise = {"noise": os.urandom(24 * MIB).hex()[: 24 * MIB]}
        a = images.ext4(tmp_path / "a.img", {"n": "a\n", **noise}, size_mib=64)
        app.hotplug(0, a, readonly=False)
        app.mount("/dev/sda", "/")
        copies = tmp_path / "copies"
        copies.mkdir()
        (copies / "slot1.img").write_text("not ours\n")
        app.hotplug(1, images.ext4(tmp_path / "b.img", {}, size_mib=8), readonly=False)
        pid = app.pid
        # a file in the way: refused before anything moves, nothing of ours left there
        with pytest.raises(GuestslotsError, match="slot1.img"):
            app.migrate(MigrationParams(disks=[0, 1], disk_directory=str(copies), **where))
        assert sorted(os.listdir(copies)) == ["slot1.img"]
        assert (copies / "slot1.img").read_text() == "not ours\n"
        # the copy runs out of time: the jobs and their nodes go, the copy is removed
        with pytest.raises(GuestslotsError, match="copy of the disks did not finish|"
                                                  "abandoned; the appliance runs on here"):
            app.migrate(MigrationParams(disks=[0], disk_directory=str(copies), **where,
                                        **slow), timeout=0.001)
        assert app.pid == pid and sorted(os.listdir(copies)) == ["slot1.img"]
        assert slot_path(app, 0) == str(a)
        app.write("/still", "here\n")
        # nothing left behind in QEMU: the same job and node names are free again
        app.migrate(MigrationParams(disks=[0], disk_directory=str(copies), **where))
        assert slot_path(app, 0) == str(copies / "slot0.img")
        assert app.cat("/still") == "here\n" and app.cat("/n") == "a\n"
    finally:
        app.shutdown()


def plug_two(app: Appliance, tmp_path: Path) -> tuple[Path, Path]:
    """Slot 0: a writable ext4 image (/n: before); slot 1: a read-only one."""
    disk = images.ext4(tmp_path / "rw.img", {"n": "before\n"}, size_mib=32)
    base = images.ext4(tmp_path / "ro.img", {"n": "read-only\n"})
    app.hotplug(0, disk, readonly=False)
    app.hotplug(1, base)
    return disk, base


def test_save_and_restore_bring_back_the_whole_appliance(tmp_path: Path) -> None:
    """On both backends (libvirt: saveFlags/restoreFlags, under the saved name)."""
    app = launched(2)
    try:
        disk, base = plug_two(app, tmp_path)
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
        assert [v.state for v in back.vcpus()][:2] == ["online", "online"]
        back.write("/after", "after the restore\n")
        assert back.list_filesystems()["/dev/sdb"] == "ext4"
        # a restored appliance (its RAM came in the state's stream) saved in turn,
        # restored, and moved to another process
        back = restore(back.save(tmp_path / "saved-3"))
        assert back.cat("/after") == "after the restore\n"
        if back.backend == "qemu":
            back.migrate()
            assert back.cat("/in-cache") == "only in the page cache\n"
    finally:
        back.shutdown()
    # the restored appliance wrote the image: the save no longer matches it
    with pytest.raises(RuntimeRecordError, match="slot 0"):
        restore(saved)


@pytest.mark.single_pass("the QEMU backend's restore with each QEMU (the second-qemu pass "
                         "runs it on the other)")
def test_a_restore_takes_the_qemu_that_saved_it(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever ``$GUESTSLOTS_QEMU`` says now: a saved state is one QEMU's only.
    Before: the restore took the default QEMU and refused the save ("saved with another
    QEMU, appliance image or accelerator"), not saying which QEMU it needed."""
    current = Appliance().qemu_binary
    others = [q for q, version in known_qemus(current)
              if version[:1].isdigit() and os.path.realpath(q) != os.path.realpath(current)]
    if not others:
        pytest.skip("one QEMU on this host (./tools/second-qemu fetches another)")
    app = Appliance("qemu", qemu=current)
    app.add_drive("/dev/null")
    app.launch()
    saved = app.save(tmp_path / "saved")
    monkeypatch.setenv("GUESTSLOTS_QEMU", others[0])
    back = restore(saved)
    try:
        assert back.qemu_binary == current and back.state is ApplianceState.RUNNING
        assert back.list_devices() == ["/dev/sda"]
    finally:
        back.shutdown()
    with pytest.raises(RuntimeRecordError, match=f"saved with QEMU {re.escape(current)}, "
                       f"not restorable by {re.escape(others[0])}"):
        restore(saved, qemu=others[0])  # named: refused, saying which


def test_a_live_save_of_all_disks_runs_on_and_restores_as_of_the_save(
        tmp_path: Path) -> None:
    """Seed 004's VIR_DOMAIN_SAVE_LIVE ("the guest is resumed after") and a save
    without the disk set that saves all disks (issue 33; before: no such arguments).
    The appliance runs on, on its own images (QEMU: in the same process; libvirt:
    restored at once from the save, which it then needs nothing of); the save's
    copies are as of the save, the read-only slot is not copied."""
    app = launched(2)
    try:
        disk, base = plug_two(app, tmp_path)
        app.mount("/dev/sda", "/")
        app.write("/in-cache", "only in the page cache\n")
        pid = app.pid
        saved = Path(app.save(tmp_path / "saved", live=True, disks="all"))
        assert app.state is ApplianceState.RUNNING
        assert (app.pid == pid) == (app.backend == "qemu")
        assert sorted(p.name for p in (saved / "disks").iterdir()) == ["slot0.img"]
        assert runtime.read(runtime.record_path(app.id)).pid == app.pid
        app.write("/after", "after the live save\n")  # on its own image
        assert app.cat("/in-cache") == "only in the page cache\n"
        app.umount_all()
        assert app.slots()[0].path == str(disk)
    finally:
        app.shutdown()
    back = restore(saved)
    try:
        assert back.cat("/in-cache") == "only in the page cache\n"
        assert not back.exists("/after")  # the copy is as of the save
        assert back.slots()[0].path == str(saved / "disks" / "slot0.img")
        assert back.slots()[1].path == str(base)
    finally:
        back.shutdown()
    with Appliance() as check:  # the image kept what was written after the save
        check.add_drive(disk, readonly=True)
        check.launch()
        check.mount_ro("/dev/sda", "/")
        assert check.cat("/after") == "after the live save\n"


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
