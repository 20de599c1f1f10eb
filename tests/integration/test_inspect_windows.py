"""Windows guests, found and read as libguestfs finds and reads them: NTFS mounted with
ntfs-3g, the system root matched regardless of case, the registry read with hivex
(inspection, and the hivex_* calls themselves), virt-inspector's document.

The image is libguestfs's own phony Windows (its make-windows-img.sh and .reg files),
made here: libguestfs 1.48 answered ``EXPECTED`` and ``APPLICATIONS`` for it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from guestslots import Appliance, GuestslotsError
from guestslots.testing import testimages, windowsimage

from .compare import same_xml_as_virt_inspector

pytestmark = pytest.mark.integration

#: libguestfs 1.48's inspect_get_* answers for windowsimage.windows_image().
EXPECTED = {
    "type": "windows", "distro": "windows",
    "product_name": "Microsoft Windows 7 Phony Edition", "product_variant": "Client",
    "major_version": 6, "minor_version": 1, "arch": "i386", "hostname": "WIN-PHONY",
    "osinfo": "win7", "windows_systemroot": "/Windows",
    "windows_current_control_set": "ControlSet001",
    "windows_software_hive": "/Windows/System32/Config/SOFTWARE",
    "windows_system_hive": "/Windows/System32/Config/SYSTEM",
    "package_format": "unknown", "package_management": "unknown",
}
#: libguestfs 1.48's inspect_list_applications2 for it: (name, display_name, version,
#: install_path, publisher, url, description).
APPLICATIONS = [
    ("test1", "Test1 is not real software", "1.2.3", "", "", "http://libguestfs.org/", ""),
    ("test2", "Test2 is not real software", "1.2.4", "", "", "http://libguestfs.org/",
     "Longer description about phony test2 software"),
    ("test3", "Test3 is not real software", "1.2.5", "C:\\Program Files\\Red Hat\\test3",
     "Red Hat Inc.", "", ""),
    ("test4", "Test4 is not real software", "1.2.6", "", "Red Hat Inc.", "",
     "WOW6432node is where 32 bit emulated apps are installed on 64 bit Windows"),
]
ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC = 1, 2, 4, 8


@pytest.fixture(scope="module")
def windows_img(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return windowsimage.windows_image(tmp_path_factory.mktemp("win") / "windows.img")


def test_windows_as_libguestfs_answers(app: Appliance, windows_img: Path) -> None:
    app.hotplug(0, windows_img)
    [found] = app.inspect_os()
    root = app.slots()[0].device + "2"
    assert found["root"] == root
    assert {key: found[key] for key in EXPECTED} == EXPECTED
    assert found["mountpoints"] == {"/": root}
    assert found["drive_mappings"] == {"C": root}
    # guestfish's way, libguestfs's names
    assert (app.inspect_get_type(root), app.inspect_get_product_variant(root),
            app.inspect_get_windows_systemroot(root), app.inspect_get_drive_mappings(root),
            app.inspect_get_windows_current_control_set(root), app.inspect_get_osinfo(root)) \
        == ("windows", "Client", "/Windows", {"C": root}, "ControlSet001", "win7")
    app.mount_os(root)
    assert [(a["name"], a["display_name"], a["version"], a["install_path"], a["publisher"],
             a["url"], a["description"]) for a in app.inspect_list_applications(root)] \
        == APPLICATIONS
    # NTFS is served by ntfs-3g (FUSE): still read-only, nodev, nosuid, noexec
    flags = app.statvfs("/")["flag"]
    assert flags & (ST_RDONLY | ST_NOSUID | ST_NODEV | ST_NOEXEC) == \
        ST_RDONLY | ST_NOSUID | ST_NODEV | ST_NOEXEC


def test_case_insensitive_paths(app: Appliance, windows_img: Path) -> None:
    app.hotplug(0, windows_img)
    app.mount_ro(app.slots()[0].device + "2", "/")
    assert app.case_sensitive_path("/windows/SYSTEM32/config/software") == \
        "/Windows/System32/Config/SOFTWARE"
    assert app.case_sensitive_path("/WINDOWS/nothere/Foo") == "/Windows/nothere/Foo"
    assert app.case_sensitive_path("/") == "/"
    with pytest.raises(GuestslotsError, match="not allowed"):
        app.case_sensitive_path("/windows/../etc")


def test_hivex_calls_as_libguestfs_names_them(app: Appliance, windows_img: Path) -> None:
    app.hotplug(0, windows_img)
    app.mount_ro(app.slots()[0].device + "2", "/")
    app.hivex_open("/Windows/System32/Config/SYSTEM")
    root = app.hivex_root()
    children = app.hivex_node_children(root)
    assert sorted(app.hivex_node_name(c) for c in children) == [
        "ControlSet001", "MountedDevices", "Select"]
    select = app.hivex_node_get_child(root, "select")  # case-insensitive, as Windows
    assert select in children and app.hivex_node_parent(select) == root
    assert app.hivex_node_get_child(root, "NoSuchKey") == 0
    current = app.hivex_node_get_value(select, "Current")
    assert app.hivex_node_values(select) == [current]
    assert (app.hivex_value_key(current), app.hivex_value_type(current),
            app.hivex_value_value(current)) == ("Current", 4, b"\x01\x00\x00\x00")
    assert app.hivex_node_get_value(select, "Missing") == 0
    node = root
    for name in ("ControlSet001", "Services", "Tcpip", "Parameters"):
        node = app.hivex_node_get_child(node, name)
    assert app.hivex_value_string(app.hivex_node_get_value(node, "Hostname")) == "WIN-PHONY"
    with pytest.raises(GuestslotsError, match="hivex_node_name"):
        app.hivex_node_name(7)  # not a node of this hive
    assert app.hivex_node_name(root) == "ROOT"  # the channel and the hive are fine after
    app.umount_all()  # closes the hive: its mapped file does not keep the mount busy
    with pytest.raises(GuestslotsError, match="no hive is open"):
        app.hivex_root()


def test_ntfs_written_through_ntfs3g_is_on_disk_after_umount(
    app: Appliance, windows_img: Path, tmp_path: Path
) -> None:
    """A write through ntfs-3g is on disk when umount returns (the daemon is waited
    for): read back after a remount, and from the image by the host's ntfs-3g tools."""
    copy = tmp_path / "rw.img"
    shutil.copyfile(windows_img, copy)
    app.hotplug(0, copy, readonly=False)
    dev = app.slots()[0].device + "2"
    app.mount(dev, "/")
    app.write("/Users.txt", "written by guestslots\n")
    app.umount_all()
    app.mount_ro(dev, "/")
    assert app.cat("/Users.txt") == "written by guestslots\n"
    app.umount_all()
    app.unplug(0)
    offset = testimages.PART_START + 8 * 1024 * 1024  # after the boot partition
    said = subprocess.run(["ntfscat", _partition_file(copy, offset, tmp_path), "/Users.txt"],
                          capture_output=True, text=True, check=False)
    assert said.stdout == "written by guestslots\n", said.stderr


def _partition_file(disk: Path, offset: int, tmp_path: Path) -> Path:
    part = tmp_path / "part.img"
    with open(disk, "rb") as src, open(part, "wb") as dst:
        src.seek(offset)
        shutil.copyfileobj(src, dst)
    return part


def test_a_damaged_hive_leaves_windows_found_and_its_details_unknown(
    app: Appliance, tmp_path: Path
) -> None:
    image = windowsimage.windows_image(tmp_path / "damaged.img", software=b"regf" + bytes(8))
    app.hotplug(0, image)
    [found] = app.inspect_os()
    assert (found["type"], found["product_name"], found["major_version"], found["osinfo"]) \
        == ("windows", "unknown", 0, "unknown")
    app.mount_ro(str(found["root"]), "/")
    with pytest.raises(GuestslotsError, match="hivex_open /Windows/System32/Config/SOFTWARE"):
        app.hivex_open("/Windows/System32/Config/SOFTWARE")
    assert app.is_file("/autoexec.bat")  # the channel is in step


def test_a_system_root_only_boot_ini_names(app: Appliance, tmp_path: Path) -> None:
    """Not one of the usual places: libguestfs reads boot.ini's [operating systems]."""
    boot_ini = ("[boot loader]\r\ntimeout=30\r\n[operating systems]\r\n"
                'multi(0)disk(0)rdisk(0)partition(2)\\Nowhere="gone"\r\n'
                'multi(0)disk(0)rdisk(0)partition(2)\\WinXP="Windows XP" /fastdetect\r\n')
    app.hotplug(0, windowsimage.windows_image(tmp_path / "xp.img", systemroot="WinXP",
                                              boot_ini=boot_ini))
    [found] = app.inspect_os()
    assert (found["windows_systemroot"], found["product_name"], found["hostname"]) == (
        "/WinXP", "Microsoft Windows 7 Phony Edition", "WIN-PHONY")
    app.umount_all()
    app.unplug(0)
    app.hotplug(0, windowsimage.windows_image(tmp_path / "lost.img", systemroot="WinXP"))
    assert app.inspect_os() == []  # without boot.ini, no system root is found


@pytest.mark.single_pass("runs virt-inspector (libguestfs) once")
def test_inspect_xml_is_virt_inspectors_document_for_windows(windows_img: Path) -> None:
    assert '<drive_mapping name="C">' in same_xml_as_virt_inspector(windows_img)


def test_what_inspect_os_found_is_forgotten_when_a_slot_changes(
    app: Appliance, windows_img: Path
) -> None:
    """mount_os and inspect_get_* use the last inspect_os; after a hotplug or unplug it
    may name what is no longer there, so they ask for a new one (mount_os makes it)."""
    app.hotplug(0, windows_img)
    [found] = app.inspect_os()
    root = str(found["root"])
    app.hotplug(1, windows_img)
    with pytest.raises(GuestslotsError, match="call inspect_os first"):
        app.inspect_get_type(root)
    app.mount_os(root)  # inspects again: the OS on slot 0 is still there
    assert app.mounts() == [root]
    assert app.inspect_get_type(root) == "windows"
