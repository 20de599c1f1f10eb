"""Operating systems whose /usr is a filesystem of its own, merged as libguestfs merges
them: CoreOS (a root that knows only its hostname, two /usr partitions of which the
newer counts) as libguestfs's own make-coreos-img.sh makes it, and a Linux root
whose fstab mounts a separate /usr holding its os-release."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestslots import Appliance
from guestslots.testing import testimages as images

from .compare import same_xml_as_virt_inspector

pytestmark = pytest.mark.integration


def lsb(release: str) -> str:
    return (f'DISTRIB_ID=CoreOS\nDISTRIB_RELEASE={release}\nDISTRIB_CODENAME="Red Dog"\n'
            f'DISTRIB_DESCRIPTION="CoreOS {release}"\n')


def coreos_image(directory: Path) -> Path:
    """GPT: USR-A (CoreOS 647.0.0), USR-B (an older 600.0.0), ROOT."""
    def usr(name: str, release: str) -> Path:
        return images.ext4(directory / f"{name}.img", {
            "bin/.keep": "", "lib64/.keep": "", "local/.keep": "",
            "share/coreos/lsb-release": lsb(release)}, label=name)

    root = images.ext4(directory / "root.img", {
        "etc/coreos/update.conf": "GROUP=stable", "etc/hostname": "coreos.invalid",
        "usr/.keep": "", "root/.keep": "", "home/.keep": ""}, label="ROOT", symlinks={
        "bin": "usr/bin", "lib64": "usr/lib64", "lib": "lib64",
        "etc/lsb-release": "../usr/share/coreos/lsb-release"})
    return images.partitioned(directory / "coreos.img", "gpt", usr("USR-A", "647.0.0"),
                              usr("USR-B", "600.0.0"), root)


def test_coreos_as_libguestfs_finds_it(app: Appliance, tmp_path: Path) -> None:
    app.hotplug(0, coreos_image(tmp_path))
    disk = app.slots()[0].device
    [found] = app.inspect_os()
    assert {k: found[k] for k in ("root", "type", "distro", "product_name", "major_version",
                                  "minor_version", "hostname", "osinfo", "package_format",
                                  "mountpoints")} == {
        "root": f"{disk}3", "type": "linux", "distro": "coreos",
        "product_name": "CoreOS 647.0.0", "major_version": 647, "minor_version": 0,
        "hostname": "coreos.invalid", "osinfo": "coreos647.0", "package_format": "unknown",
        "mountpoints": {"/": f"{disk}3", "/usr": f"{disk}1"}}
    app.mount_os(str(found["root"]))
    assert app.mountpoints() == {f"{disk}3": "/", f"{disk}1": "/usr"}
    assert app.cat("/etc/lsb-release") == lsb("647.0.0")  # through the mounted /usr


def test_a_separate_usr_holds_the_release(app: Appliance, tmp_path: Path) -> None:
    """A merged-/usr root (/bin -> usr/bin, os-release -> ../usr/lib/os-release, both
    dangling until /usr is mounted) with /usr on its own filesystem, by UUID in fstab."""
    uuid = "01234567-0123-0123-0123-0123456789ab"
    usr = images.ext4(tmp_path / "usr.img", {
        "bin/.keep": "", "local/.keep": "", "share/.keep": "", "src/.keep": "",
        "lib/os-release": 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=39\n'
                          'PRETTY_NAME="Fedora Linux 39 (Thirty Nine)"\n',
        "bin/bash": Path("/usr/bin/bash").read_bytes()}, uuid=uuid, size_mib=24)
    root = images.ext4(tmp_path / "root.img", {
        "etc/fstab": f"UUID={uuid} /usr ext4 ro 0 0\n/dev/sda2 / ext4 defaults 0 1\n",
        "etc/hostname": "split-usr\n", "usr/.keep": ""},
        symlinks={"bin": "usr/bin", "etc/os-release": "../usr/lib/os-release"})
    app.hotplug(0, images.partitioned(tmp_path / "split.img", "gpt", usr, root))
    disk = app.slots()[0].device
    [found] = app.inspect_os()
    assert (found["root"], found["distro"], found["product_name"], found["major_version"],
            found["arch"], found["hostname"], found["mountpoints"]) == (
        f"{disk}2", "fedora", "Fedora Linux 39 (Thirty Nine)", 39, "x86_64", "split-usr",
        {"/": f"{disk}2", "/usr": f"{disk}1"})


@pytest.mark.single_pass("runs virt-inspector (libguestfs) once")
def test_inspect_xml_is_virt_inspectors_document_for_coreos(tmp_path: Path) -> None:
    assert "<distro>coreos</distro>" in same_xml_as_virt_inspector(coreos_image(tmp_path))
