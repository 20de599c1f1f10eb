"""inspect_os finds Linux roots the way libguestfs does, not only by os-release, and says
what libguestfs says of each (the table of tests/unit/test_releases.py, which
libguestfs 1.48 answered for these very images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestslots import Appliance
from guestslots.testing import testimages as images

from ..unit.test_packages import DPKG as DPKG_STATUS
from ..unit.test_releases import LIBGUESTFS
from .compare import same_xml_as_virt_inspector

pytestmark = pytest.mark.integration


def test_every_distribution_of_the_table(app: Appliance, tmp_path: Path) -> None:
    expected = {}
    for n, (files, answer) in enumerate(LIBGUESTFS):
        tree = {"bin/.keep": "", "usr/bin/.keep": "", "etc/hostname": f"distro{n}\n",
                "etc/fstab": "/dev/sda / ext4 defaults 0 1\n"}
        tree.update({path.lstrip("/"): text for path, text in files.items()})
        image = images.ext4(tmp_path / f"distro{n}.img", tree)
        app.hotplug(n, image)
        expected[app.slots()[n].device] = (*answer, f"distro{n}")
    keys = ("distro", "product_name", "major_version", "minor_version", "package_format",
            "package_management", "osinfo", "hostname")
    found = {s["root"]: tuple(s[k] for k in keys) for s in app.inspect_os()}
    assert found == expected
    # guestfish's way: inspect-os, then inspect-get-* of a root
    assert app.inspect_get_roots() == sorted(expected)
    root = app.slots()[0].device
    assert (app.inspect_get_distro(root), app.inspect_get_product_name(root),
            app.inspect_get_major_version(root), app.inspect_get_minor_version(root),
            app.inspect_get_type(root), app.inspect_get_osinfo(root)) == (
        "debian", "12.4", 12, 4, "linux", "debian12")
    assert app.inspect_get_mountpoints(root) == {"/": root}


def test_no_root_without_a_linux_layout(app: Appliance, tmp_path: Path) -> None:
    """An /etc/fstab alone (no /bin or /usr/bin, no os-release) is not an OS."""
    app.hotplug(0, images.ext4(tmp_path / "data.img", {"etc/fstab": "x\n", "data": "1\n"}))
    assert app.inspect_os() == []


def deb_image(path: Path) -> Path:
    status = DPKG_STATUS + "\n"  # dpkg ends its file with a blank line
    return images.ext4(path, {
        "bin/ls": Path("/usr/bin/ls").read_bytes(), "usr/bin/.keep": "",
        "etc/debian_version": "12.4\n", "etc/HOSTNAME": "suse-style\n",
        "etc/hostname": "debian-style\n", "etc/fstab": "/dev/sda / ext4 defaults 0 1\n",
        "var/lib/dpkg/status": status,
    }, size_mib=24)


def test_arch_hostname_and_applications_as_libguestfs_gives_them(
    app: Appliance, tmp_path: Path
) -> None:
    """libguestfs 1.48 on this image: arch x86_64 (from /bin/ls), hostname from
    /etc/HOSTNAME before /etc/hostname, and the installed dpkg packages."""
    app.hotplug(0, deb_image(tmp_path / "deb.img"))
    [found] = app.inspect_os()
    root = str(found["root"])
    assert (found["arch"], found["hostname"], found["distro"]) == ("x86_64", "suse-style",
                                                                   "debian")
    app.mount_os(root)
    assert [(a["name"], a["epoch"], a["version"], a["release"], a["arch"])
            for a in app.inspect_list_applications(root)] == [
        ("bash", 0, "5.2.15", "2+b2", "amd64"),
        ("tzdata", 0, "2024a", "", "all"),
        ("zlib1g", 1, "1.2.13.dfsg", "1", "amd64"),
    ]


def test_a_hostile_hostname_file_is_read_bounded(app: Appliance, tmp_path: Path) -> None:
    image = images.ext4(tmp_path / "big.img", {
        "bin/.keep": "", "etc/fstab": "x\n", "etc/hostname": "h" * (8 << 20) + "\n",
    }, size_mib=32)
    app.hotplug(0, image)
    [found] = app.inspect_os()
    assert found["hostname"] == "h" * 4096


@pytest.mark.single_pass("runs virt-inspector (libguestfs) once")
def test_inspect_xml_is_virt_inspectors_document(tmp_path: Path) -> None:
    """``guestslots inspect --xml`` writes what virt-inspector writes for the same image,
    and libguestfs's schema accepts it."""
    same_xml_as_virt_inspector(deb_image(tmp_path / "xml.img"))


def test_a_symlink_loop_where_a_release_file_should_be_is_no_release(
    app: Appliance, tmp_path: Path
) -> None:
    """A hostile loop ``os-release -> x -> os-release`` made inspect_os fail (ELOOP);
    it is no file, as libguestfs takes it."""
    image = images.ext4(tmp_path / "loop.img", {
        "bin/.keep": "", "etc/fstab": "/dev/sda / ext4 defaults 0 1\n",
        "etc/hostname": "looped\n",
    }, symlinks={"etc/os-release": "x", "etc/x": "os-release"})
    app.hotplug(0, image)
    [found] = app.inspect_os()
    assert (found["distro"], found["hostname"]) == ("unknown", "looped")
