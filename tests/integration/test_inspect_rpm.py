"""rpm guests' installed packages, read with librpm in the appliance as libguestfs reads
them (every database format librpm reads; the test database is rpm's default sqlite),
in both of rpm's places: /var/lib/rpm, and Fedora 36's /usr/lib/sysimage/rpm."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guestslots import Appliance, GuestslotsError
from guestslots.testing import testimages as images
from guestslots.testing.rpmdb import Package, rpm_database

from .compare import same_xml_as_virt_inspector

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rpmbuild") is None,
                       reason="rpm (rpmbuild) is not installed (./tools/setup installs it)"),
]

PACKAGES = [
    Package("hello-guest", "2.10", "3.fc39", "A phony package",
            "A phony package\nwith two lines.", epoch=1, url="https://example.org/hello"),
    Package("bare", "1.0", "1.fc39", "Bare", "Nothing more."),
    Package("bare", "1.0", "1.fc39", "Bare, 64-bit", "The other arch.", arch="x86_64"),
]
#: (name, epoch, version, release, arch, url, summary, description) as libguestfs 1.48
#: lists PACKAGES (asked on these images): by name, "(none)" for no URL.
EXPECTED = [
    ("bare", 0, "1.0", "1.fc39", "noarch", "(none)", "Bare", "Nothing more."),
    ("bare", 0, "1.0", "1.fc39", "x86_64", "(none)", "Bare, 64-bit", "The other arch."),
    ("hello-guest", 1, "2.10", "3.fc39", "noarch", "https://example.org/hello",
     "A phony package", "A phony package\nwith two lines."),
]


def fedora_image(path: Path, sysimage: bool = False,
                 database: dict[str, bytes] | None = None) -> Path:
    dbpath = "/usr/lib/sysimage/rpm" if sysimage else "/var/lib/rpm"
    files: dict[str, bytes | str] = {
        "bin/.keep": "", "usr/bin/dnf": "", "etc/hostname": "fedora-phony\n",
        "etc/redhat-release": "Fedora release 39 (Thirty Nine)\n",
        "etc/fedora-release": "Fedora release 39 (Thirty Nine)\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n",
    }
    files.update(database if database is not None else rpm_database(PACKAGES, dbpath))
    links = {"var/lib/rpm": "../../usr/lib/sysimage/rpm"} if sysimage else {}
    return images.ext4(path, files, size_mib=16, symlinks=links)


def applications(app: Appliance) -> list[tuple[object, ...]]:
    [found] = app.inspect_os()
    root = str(found["root"])
    assert (found["distro"], found["package_format"], found["package_management"]) == (
        "fedora", "rpm", "dnf")
    app.mount_os(root)
    return [(a["name"], a["epoch"], a["version"], a["release"], a["arch"], a["url"],
             a["summary"], a["description"]) for a in app.inspect_list_applications(root)]


@pytest.fixture(scope="module")
def fedora_img(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fedora_image(tmp_path_factory.mktemp("rpm") / "fedora.img")


def test_rpm_packages_as_libguestfs_lists_them(app: Appliance, fedora_img: Path) -> None:
    app.hotplug(0, fedora_img)
    assert applications(app) == EXPECTED


def test_the_database_where_fedora_36_keeps_it(app: Appliance, tmp_path: Path) -> None:
    app.hotplug(0, fedora_image(tmp_path / "sysimage.img", sysimage=True))
    assert applications(app) == EXPECTED


def test_a_damaged_database_is_a_clear_error_and_the_channel_in_step(
    app: Appliance, tmp_path: Path
) -> None:
    image = fedora_image(tmp_path / "bad.img",
                         database={"var/lib/rpm/rpmdb.sqlite": b"SQLite format 3\0" + bytes(99)})
    app.hotplug(0, image)
    with pytest.raises(GuestslotsError, match="rpm database in /var/lib/rpm"):
        applications(app)
    assert app.is_file("/etc/fedora-release")


def test_a_database_that_is_a_symlink_is_never_followed(app: Appliance,
                                                         tmp_path: Path) -> None:
    """rpmdb.sqlite -> /etc/shadow (a hostile guest's): the agent copies regular files
    only, so there is no database, not the file the link names."""
    image = images.ext4(tmp_path / "link.img", {
        "bin/.keep": "", "etc/redhat-release": "Fedora release 39 (Thirty Nine)\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n", "etc/shadow": "secret\n",
        "var/lib/rpm/.keep": ""}, symlinks={"var/lib/rpm/rpmdb.sqlite": "/etc/shadow"})
    app.hotplug(0, image)
    [found] = app.inspect_os()
    app.mount_os(str(found["root"]))
    with pytest.raises(GuestslotsError, match="no rpm database"):
        app.inspect_list_applications(str(found["root"]))


@pytest.mark.single_pass("runs virt-inspector (libguestfs) once")
def test_inspect_xml_is_virt_inspectors_document_for_rpm(fedora_img: Path) -> None:
    assert "<name>hello-guest</name>" in same_xml_as_virt_inspector(fedora_img)
