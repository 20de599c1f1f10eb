"""LVM and md RAID on hotplugged slots: activation, names, busy slots, clean unplugs."""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
from pathlib import Path

import pytest

from guestslots import Appliance, DeviceBusyError, GuestOSError, GuestslotsError, SlotState

from .conftest import whoami

pytestmark = pytest.mark.integration

Volumes = dict[str, list[Path]]


def digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_lvm_root_is_activated_and_named_as_libguestfs_names_it(
    app: Appliance, volumes: Volumes
) -> None:
    (image,) = volumes["lvm-root"]
    app.hotplug(5, image)  # slot 5: /dev/sdf, whatever the kernel calls it
    assert app.vgs() == ["vgroot"]
    assert app.lvs() == ["/dev/vgroot/data", "/dev/vgroot/root"]
    assert app.pvs() == ["/dev/sdf2"]
    assert app.list_filesystems() == {
        "/dev/sdf1": "ext4", "/dev/vgroot/data": "vfat", "/dev/vgroot/root": "ext4"}
    assert whoami(app, "/dev/vgroot/root") == "lvm-root-root"
    assert whoami(app, "/dev/mapper/vgroot-data") == "lvm-root-data"
    # The slot is read-only: so is every LV on it, though the appliance's view of the
    # disk is writable (a throwaway overlay), so the refusal cannot come from the kernel.
    with pytest.raises(GuestOSError,
                       match="/dev/vgroot/data is on a slot plugged read-only") as refused:
        app.mount("/dev/vgroot/data", "/")
    assert refused.value.errno == errno.EROFS
    assert app.mounts() == []
    app.mount_options("utf8", "/dev/vgroot/data", "/")  # read-only, as its slot is
    with pytest.raises(GuestOSError) as not_written:
        app.write("/new", "x")
    assert not_written.value.errno == errno.EROFS
    app.umount_all()
    (found,) = app.inspect_os()
    assert found["root"] == "/dev/vgroot/root"
    assert found["mountpoints"] == {
        "/": "/dev/vgroot/root", "/boot": "/dev/sdf1", "/data": "/dev/vgroot/data"}
    assert app.blkid("/dev/vgroot/root")["LABEL"] == "root"


def test_a_vg_spanning_two_slots_activates_when_its_last_pv_arrives(
    app: Appliance, volumes: Volumes, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = volumes["vg-span"]
    with caplog.at_level(logging.INFO, logger="guestslots"):
        app.hotplug(30, second)
    assert "slot 30: volume group vgspan waits for more PVs" in caplog.text
    assert app.lvs() == ["/dev/vgspan/big"]  # known to LVM, but not active
    assert app.list_filesystems() == {}
    assert app.list_dm_devices() == []
    app.hotplug(2, first)
    assert app.list_filesystems() == {"/dev/vgspan/big": "ext4"}
    assert app.pvs() == ["/dev/sdae", "/dev/sdc"]  # sorted as strings, as libguestfs
    assert whoami(app, "/dev/vgspan/big") == "vg-span-big"


def test_auto_activation_can_be_turned_off(app: Appliance, volumes: Volumes) -> None:
    app.auto_activate = False
    app.hotplug(0, volumes["lvm-root"][0])
    assert app.list_filesystems() == {"/dev/sda1": "ext4"}
    assert app.list_dm_devices() == []
    app.vg_activate(True, ["vgroot"])
    assert sorted(app.list_filesystems()) == ["/dev/sda1", "/dev/vgroot/data",
                                              "/dev/vgroot/root"]
    app.vg_activate_all(False)
    assert app.list_dm_devices() == []


def test_unplug_is_refused_while_a_volume_group_on_the_slot_is_active(
    app: Appliance, volumes: Volumes
) -> None:
    before = digest(volumes["lvm-root"])
    app.hotplug(1, volumes["lvm-root"][0])
    app.hotplug(3, volumes["md-raid1"][0])  # another slot, which must keep working
    # Not mounted, but a PV of an active VG: busy, naming the VG.
    with pytest.raises(DeviceBusyError, match=r"/dev/sdb2 is a physical volume of active "
                                              r"volume group vgroot") as busy:
        app.unplug(1)
    assert busy.value.index == 1
    app.mount_ro("/dev/vgroot/root", "/")
    app.mount_ro("/dev/vgroot/data", "/data")
    with pytest.raises(DeviceBusyError, match="/dev/vgroot/data is mounted on /data"):
        app.unplug(1)
    # Refused: nothing changed.
    assert app.slots()[1].state is SlotState.FILLED
    assert app.cat("/whoami").strip() == "lvm-root-root"
    with pytest.raises(GuestslotsError, match="mounted"):
        app.vg_activate(False, ["vgroot"])
    app.unplug(1, force=True)
    assert app.mounts() == []
    assert app.list_dm_devices() == []  # no stale device-mapper nodes
    assert app.vgs() == []
    assert app.slots()[1].state is SlotState.EMPTY
    assert app.list_partitions() == ["/dev/sdd1"]
    assert digest(volumes["lvm-root"]) == before  # read-only: never written


def test_forced_unplug_of_one_pv_deactivates_the_whole_spanning_vg(
    app: Appliance, volumes: Volumes
) -> None:
    first, second = volumes["vg-span"]
    app.hotplug(7, first)
    app.hotplug(8, second)
    app.mount_ro("/dev/vgspan/big", "/")
    with pytest.raises(DeviceBusyError, match="volume group vgspan"):
        app.unplug(8)
    app.unplug(8, force=True)
    assert app.mounts() == []
    assert app.list_dm_devices() == []
    assert app.list_filesystems() == {}
    app.unplug(7)  # the VG is inactive now: its other PV is free
    app.hotplug(8, second)
    app.hotplug(7, first)
    assert whoami(app, "/dev/vgspan/big") == "vg-span-big"


def test_md_raid1_assembles_once_both_members_are_plugged(
    app: Appliance, volumes: Volumes
) -> None:
    a, b = volumes["md-raid1"]
    before = digest([a, b])
    app.hotplug(4, b)
    assert app.list_md_devices() == []  # one member: waits for the other
    assert app.list_filesystems() == {}
    app.unplug(4)  # a member of an array that is not running is not busy
    app.hotplug(4, b)
    app.hotplug(9, a)
    assert app.list_md_devices() == ["/dev/md0"]
    assert app.list_filesystems() == {"/dev/md0": "ext4"}
    assert app.md_detail("/dev/md0")["members"] == "/dev/sdj1 /dev/sde1"
    assert app.md_detail("/dev/md0")["level"] == "raid1"
    assert whoami(app, "/dev/md0") == "md-raid1"
    with pytest.raises(DeviceBusyError, match="/dev/sdj1 is a member of running RAID array "
                                              "/dev/md0"):
        app.unplug(9)
    app.mount_ro("/dev/md0", "/")
    app.unplug(4, force=True)
    assert app.mounts() == []
    assert app.list_md_devices() == []
    app.unplug(9)
    assert digest([a, b]) == before  # assembly wrote only to the throwaway overlays


def test_writes_to_an_lv_survive_a_forced_unplug(
    app: Appliance, volumes: Volumes, tmp_path: Path
) -> None:
    image = tmp_path / "lvm-rw.img"
    shutil.copyfile(volumes["lvm-root"][0], image)
    app.hotplug(0, image, readonly=False)
    app.mount("/dev/vgroot/root", "/")
    app.mount("/dev/vgroot/data", "/data")
    app.write("/data/kept.txt", "written before a forced unplug\n")
    app.unplug(0, force=True)
    app.hotplug(0, image)
    app.mount_ro("/dev/vgroot/data", "/")
    assert app.cat("/kept.txt") == "written before a forced unplug\n"


def test_volume_arguments_must_be_built_on_slots(app: Appliance, volumes: Volumes) -> None:
    app.hotplug(0, volumes["lvm-root"][0])
    with pytest.raises(GuestslotsError, match="not a slot device, LV or md array"):
        app.blkid("/dev/vgroot/nosuch")
    with pytest.raises(GuestslotsError, match="not a slot device, LV or md array"):
        app.mount_ro("/dev/md9", "/")
    with pytest.raises(GuestslotsError, match="not a slot device, LV or md array"):
        app.blkid("/dev/mapper/control")
    with pytest.raises(GuestslotsError, match="not an md array"):
        app.md_detail("/dev/vgroot/root")


def test_btrfs_subvolumes_are_listed_mounted_and_inspected_as_libguestfs_does(
    app: Appliance, volumes: Volumes
) -> None:
    app.hotplug(11, volumes["btrfs-subvols"][0])  # /dev/sdl
    assert app.list_filesystems() == {
        "/dev/sdl1": "btrfs", "btrfsvol:/dev/sdl1/root": "btrfs",
        "btrfsvol:/dev/sdl1/home": "btrfs"}
    assert whoami(app, "/dev/sdl1") == "btrfs-top"  # the default subvolume
    assert whoami(app, "btrfsvol:/dev/disk/guestslots/slot11-part1/home") == "btrfs-home"
    # a mountable's filesystem, as libguestfs's vfs_* answer it (before: "not a slot
    # device, LV or md array")
    assert app.vfs_type("btrfsvol:/dev/sdl1/home") == "btrfs"
    assert app.vfs_uuid("btrfsvol:/dev/sdl1/home") == app.vfs_uuid("/dev/sdl1") != ""
    (found,) = app.inspect_os()
    assert found["root"] == "btrfsvol:/dev/sdl1/root"
    assert found["mountpoints"] == {"/": "btrfsvol:/dev/sdl1/root",
                                    "/home": "btrfsvol:/dev/sdl1/home"}
    app.mount_os(str(found["root"]))
    assert app.mountpoints() == {"btrfsvol:/dev/sdl1/root": "/",
                                 "btrfsvol:/dev/sdl1/home": "/home"}
    assert app.cat("/home/whoami") == "btrfs-home\n"
    with pytest.raises(DeviceBusyError, match="btrfsvol:/dev/sdl1/home is mounted on /home"):
        app.unplug(11)
    app.umount("btrfsvol:/dev/sdl1/home")
    assert app.mounts() == ["btrfsvol:/dev/sdl1/root"]
