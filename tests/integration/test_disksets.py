"""The disk set, its export and its snapshots (seed 004): a consistent copy of exactly
the set's slots, or external snapshots of exactly them, all of one instant, taken while
the appliance runs and the guest writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from guestslots import (
    CONFIG,
    LIVE,
    Appliance,
    DiskSetError,
    FlagError,
    GuestslotsError,
    HostFileError,
    MigrationParams,
    SlotState,
    SnapshotError,
    restore,
)
from guestslots.host import runtime
from guestslots.model.runtime import RuntimeRecordError
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_copies_exactly_the_disk_set_as_of_one_instant(app: Appliance,
                                                               tmp_path: Path) -> None:
    live = images.ext4(tmp_path / "live.img", {"before": "written before\n"}, size_mib=32)
    idle = images.qcow2(images.ext4(tmp_path / "idle.raw", {"n": "idle\n"}),
                        tmp_path / "idle.qcow2")
    other = images.ext4(tmp_path / "other.img", {"n": "other\n"})
    app.hotplug(0, live, readonly=False)
    app.hotplug(1, idle, format="qcow2", readonly=False)
    app.hotplug(2, other, readonly=False)
    app.mount("/dev/sda", "/")
    app.write("/during", "in the page cache, not yet on disk\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiskSetError, match="the disk set is empty"):
        app.export(out)
    assert app.diskset_add(0) == 0 and app.diskset_add(1) == 0
    seen: list[tuple[int, int]] = []
    made = app.export(out, progress=lambda done, total: seen.append((done, total)))
    app.write("/after", "written after the export\n")
    assert made == [str(out / "live.img"), str(out / "idle.qcow2")]
    assert sorted(p.name for p in out.iterdir()) == ["idle.qcow2", "live.img"]  # not slot 2
    assert seen and seen[-1][0] == seen[-1][1] >= 16 << 20  # done, and said so
    # the raw copy is as sparse as its image, not its 32 MiB allocated (QEMU's backup job
    # writes a raw copy's zeroes as allocated ranges; they are freed again)
    assert os.stat(out / "live.img").st_blocks <= os.stat(live).st_blocks + 2048
    # the idle slot's copy is its image's contents; the qcow2 copy is a sound qcow2
    check = subprocess.run(["qemu-img", "check", "--output=json", "-f", "qcow2",
                            str(out / "idle.qcow2")], capture_output=True, text=True,
                           check=True)
    assert json.loads(check.stdout)["check-errors"] == 0
    # the live one was frozen while the copy started: clean, with what was written
    # before (even what was only in the page cache) and nothing after
    app.umount_all()
    app.hotplug(3, out / "live.img")
    assert app.fsck("ext4", "/dev/sdd") == 0
    app.mount_ro("/dev/sdd", "/")
    assert app.cat("/before") == "written before\n"
    assert app.cat("/during") == "in the page cache, not yet on disk\n"
    assert not app.exists("/after")
    app.umount_all()
    # the guest went on: its own disk has everything
    app.mount("/dev/sda", "/")
    assert app.cat("/after") == "written after the export\n"
    # an existing file is never replaced: refused before anything is copied
    before = sha(out / "live.img")
    with pytest.raises(HostFileError, match="exists"):
        app.export(out)
    assert sha(out / "live.img") == before


def test_a_snapshot_of_two_of_three_slots_keeps_exactly_their_images(
    app: Appliance, tmp_path: Path,
) -> None:
    raw = images.ext4(tmp_path / "raw.img", {"before": "written before\n"}, size_mib=32)
    q = images.qcow2(images.ext4(tmp_path / "q.raw", {"n": "q\n"}), tmp_path / "q.qcow2")
    other = images.ext4(tmp_path / "other.img", {"n": "other\n"})
    app.hotplug(0, raw, readonly=False)
    app.hotplug(1, q, format="qcow2", readonly=False)
    app.hotplug(2, other, readonly=False)
    assert (app.diskset_add(0), app.diskset_add(1)) == (0, 0)
    app.mount("/dev/sda", "/")
    app.mkdir("/q")
    app.mount("/dev/sdb", "/q")
    app.write("/during", "in the page cache, not yet on disk\n")
    made = app.snapshot("s1", diskset=True)
    assert made == [str(tmp_path / "raw.s1.qcow2"), str(tmp_path / "q.s1.qcow2")]
    kept = sha(raw), sha(q)
    app.write("/after", "written after the snapshot\n")
    app.write("/q/after", "also after\n")
    app.sync()
    # the images stay as they were at the snapshot; the overlays take the writes
    assert (sha(raw), sha(q)) == kept
    for overlay in made:
        check = subprocess.run(["qemu-img", "check", "-U", "--output=json", overlay],
                               capture_output=True, text=True, check=True)
        assert json.loads(check.stdout)["check-errors"] == 0
    assert not (tmp_path / "other.s1.qcow2").exists()  # not in the set: untouched
    record = runtime.read(runtime.record_path(app.id))
    assert [s.chain for s in record.slots[:3]] == [(made[0],), (made[1],), ()]
    # refusals change nothing
    with pytest.raises(HostFileError, match="exists"):
        app.snapshot("s1", diskset=True)
    with pytest.raises(SnapshotError, match="snapshot name"):
        app.snapshot("../s2", diskset=True)
    app.hotplug(3, images.ext4(tmp_path / "ro.img", {"n": "ro\n"}))  # read-only
    app.diskset_add(3)
    with pytest.raises(SnapshotError, match="slot 3 .* is read-only"):
        app.snapshot("s2", diskset=True)
    assert not (tmp_path / "raw.s2.qcow2").exists()
    app.diskset_remove(3)
    # unplug takes the overlay down with the disk
    app.umount_all()
    with pytest.warns(RuntimeWarning, match="left the disk set"):
        app.unplug(0)
        app.unplug(1)
    # the image as of the snapshot: clean (frozen while it was taken), with what was
    # written before, even what was only in the page cache, and nothing after
    app.hotplug(0, raw)
    assert app.fsck("ext4", "/dev/sda") == 0
    app.mount_ro("/dev/sda", "/")
    assert app.cat("/before") == "written before\n"
    assert app.cat("/during") == "in the page cache, not yet on disk\n"
    assert not app.exists("/after")
    app.umount_all()
    # the overlay, read through its header's backing file by qemu-img, has it all
    flat = tmp_path / "flat.img"
    subprocess.run(["qemu-img", "convert", "-O", "raw", made[0], str(flat)], check=True)
    app.hotplug(1, flat)
    app.mount_ro("/dev/sdb", "/")
    assert app.cat("/after") == "written after the snapshot\n"


def test_a_disk_on_snapshot_overlays_migrates_saves_and_relaunches_on_them(
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """The slot's chain (image, then each overlay on the one below, by node; on libvirt
    a declared backing chain) is built again in every new process: migration (a new
    process, or another libvirt), restore, relaunch after QEMU was killed.  Nothing
    written is lost on the way, the image and older overlays stay as they were, and an
    overlay that is no longer the one guestslots made is refused."""
    disk = images.ext4(tmp_path / "disk.img", {"a": "before s1\n"}, size_mib=32)
    app = Appliance()
    try:
        app.add_drive("/dev/null")
        app.add_drive("/dev/null")
        app.launch()
        app.hotplug(1, disk, readonly=False)
        app.diskset_add(1)
        app.mount("/dev/sdb", "/")
        s1 = app.snapshot("s1", diskset=True)[0]
        app.write("/b", "before s2\n")
        s2 = app.snapshot("s2", diskset=True)[0]
        app.write("/c", "after s2\n")
        app.sync()
        image, older = sha(disk), sha(Path(s1))

        # QEMU: a new local process; libvirt: the domain moves to another libvirt
        there = {} if app.backend == "qemu" else \
            {"destination_uri": request.getfixturevalue("libvirtd_uri")}
        pid = app.pid
        app.migrate(MigrationParams(**there))
        assert app.pid != pid
        assert [app.cat(f) for f in ("/a", "/b", "/c")] == ["before s1\n", "before s2\n",
                                                            "after s2\n"]
        app.write("/d", "after the migration\n")
        record = runtime.read(runtime.record_path(app.id))
        assert record.slots[1].chain == (s1, s2)

        saved = app.save(tmp_path / "saved")
        back = restore(saved)
        try:
            assert back.cat("/d") == "after the migration\n"  # from the page cache
            back.write("/e", "after the restore\n")
            back.sync()
            with pytest.raises(RuntimeRecordError, match="snapshot overlays"):
                restore(saved)  # the top overlay was written since
            back.kill()  # QEMU dies under it
            with pytest.raises(GuestslotsError):
                back.ls("/")
            back.relaunch()
            back.mount("/dev/sdb", "/")
            assert back.cat("/e") == "after the restore\n"
            assert runtime.read(runtime.record_path(back.id)).slots[1].chain == (s1, s2)
            back.write("/f", "after the relaunch\n")
            back.umount_all()
            back.shutdown()
            # an overlay that is not the one made: refused, nothing launched
            os.rename(s2, f"{s2}.kept")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw",
                            "-b", "/etc/passwd", s2, "32M"], check=True)
            with pytest.raises(RuntimeRecordError, match="not the overlay guestslots made"):
                back.relaunch()
            os.replace(f"{s2}.kept", s2)
        finally:
            back.shutdown()
    finally:
        app.shutdown()
    assert (sha(disk), sha(Path(s1))) == (image, older)
    # read through the headers by qemu-img: everything, in the top overlay's chain
    flat = tmp_path / "flat.img"
    subprocess.run(["qemu-img", "convert", "-O", "raw", s2, str(flat)], check=True)
    with Appliance() as check:
        check.add_drive(flat)
        check.launch()
        check.mount_ro("/dev/sda", "/")
        assert check.cat("/f") == "after the relaunch\n"


def test_the_disk_set_calls_take_what_the_seed_says(app: Appliance, tmp_path: Path) -> None:
    """Seed 004, word for word: removing a slot already absent answers 1 (an empty slot
    too: before, an error); flags are reserved (0 only); List returns at most n; a
    disk is named by slot, device or label; a snapshot is of all disks unless it asks
    for the disk set (before: the set); a CONFIG-only unplug leaves the running
    appliance's set alone (before: the slot left it, with a warning, still plugged)."""
    a = images.ext4(tmp_path / "a.img", {"n": "a\n"}, size_mib=16)
    b = images.ext4(tmp_path / "b.img", {"n": "b\n"}, size_mib=16)
    ro = images.ext4(tmp_path / "ro.img", {"n": "ro\n"})
    app.hotplug(0, a, readonly=False, label="data", flags=LIVE | CONFIG)
    app.hotplug(1, b, readonly=False)
    app.hotplug(2, ro)  # read-only
    assert app.diskset_remove(3) == 1  # an empty slot is not in the set
    assert app.diskset_remove(1) == 1
    assert app.diskset_add("/dev/sdb") == 0
    assert app.diskset_add("data") == 0  # slot 0's label
    assert app.diskset_add("/dev/disk/guestslots/data") == 1
    assert (app.diskset_list(), app.diskset_list(1), app.diskset_list(0)) == ([0, 1], [0],
                                                                              [])
    for call in (lambda: app.diskset_add(0, flags=1), lambda: app.diskset_list(flags=2),
                 lambda: app.diskset_remove_all(flags=1), lambda: app.diskset_size(4)):
        with pytest.raises(FlagError, match="flags are reserved: 0 only"):
            call()
    with pytest.raises(DiskSetError, match="is a partition"):
        app.diskset_add("/dev/sda1")
    with pytest.raises(DiskSetError, match="no slot has the label 'nope'"):
        app.diskset_add("nope")
    assert app.diskset_size() == 2
    # all writable disks by default (the read-only slot 2 keeps nothing to snapshot)
    assert app.diskset_remove("/dev/sdb") == 0
    made = app.snapshot("everything")
    assert made == [str(tmp_path / "a.everything.qcow2"), str(tmp_path / "b.everything.qcow2")]
    assert app.snapshot("the-set", diskset=True) == [str(tmp_path / "a.the-set.qcow2")]
    # the definition loses slot 0; the running appliance keeps it, in the set
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert app.unplug(0, flags=CONFIG) == 0
    assert app.slots()[0].state is SlotState.FILLED and app.slots()[0].config is None
    assert app.diskset_list() == [0]
    assert runtime.read(runtime.record_path(app.id)).diskset == (0,)


def test_a_save_with_a_disk_on_snapshot_overlays_restores_on_its_copy(
        tmp_path: Path) -> None:
    """A slot on snapshot overlays saved with the disk set: the copy is one file in the
    image's format, and the restore plugs it so (before, on libvirt, the restored
    domain kept the chain's qcow2 driver and backing store for the raw copy, and QEMU
    refused it: "Image is not in qcow2 format")."""
    disk = images.ext4(tmp_path / "d.img", {"n": "before\n"}, size_mib=16)
    other = Appliance()
    try:
        other.add_drive("/dev/null")
        other.launch()
        other.hotplug(0, disk, readonly=False)
        other.diskset_add(0)
        other.snapshot("s1")
        other.mount("/dev/sda", "/")
        other.write("/after", "on the overlay\n")
        other.umount_all()
        saved = other.save(tmp_path / "saved", with_disk_set=True)
    finally:
        other.shutdown()
    back = restore(saved)
    try:
        assert back.slots()[0].path == str(tmp_path / "saved" / "disks" / "slot0.img")
        back.mount("/dev/sda", "/")
        assert back.cat("/after") == "on the overlay\n"
    finally:
        back.shutdown()
