"""inspect_os finds Linux roots the way libguestfs does, not only by os-release, and says
what libguestfs says of each (the table of tests/unit/test_releases.py, which
libguestfs 1.48 answered for these very images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestslots import Appliance
from guestslots.testing import testimages as images

from ..unit.test_releases import LIBGUESTFS

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
