"""The disk set and its export (seed 004): a consistent copy of exactly the set's
slots, all of one instant, taken while the appliance runs and the guest writes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from guestslots import Appliance, DiskSetError, HostFileError
from guestslots.testing import testimages as images

pytestmark = pytest.mark.integration


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
