"""The pytest plugin's fixtures, used as a project using guestslots would."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from guestslots import Appliance, SlotState
from guestslots.pytest_plugin import Disk
from guestslots.testing import testimages as images

pytestmark = pytest.mark.integration


def test_disk_fixture_plugs_for_one_test(
    app: Appliance, disk: Callable[..., Disk], image_dir: Path
) -> None:
    img = images.ext4(image_dir / "plugin.img", {"whoami": "plugin\n"})
    d = disk(img, label="plugged")
    assert app.slots()[d.index].state is SlotState.FILLED
    assert app.list_disk_labels() == {"plugged": d.device}
    with app.mounted(d.device):
        assert app.cat("/whoami") == "plugin\n"


def test_writable_disk_never_changes_the_image(
    app: Appliance, disk: Callable[..., Disk], image_dir: Path
) -> None:
    img = images.qcow2(images.ext4(image_dir / "ovl.raw", {"whoami": "ovl\n"}),
                       image_dir / "ovl.qcow2")
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    d = disk(img, format="qcow2", writable=True)
    assert app.slots()[d.index].drive is not None
    assert app.slots()[d.index].drive.overlay  # type: ignore[union-attr]
    app.mount(d.device, "/")
    app.write("/scribble", b"x" * 100_000)
    app.rm("/whoami")
    app.umount_all()
    app.unplug(d.index)  # the writes go with the overlay
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before
    again = disk(img, format="qcow2")
    with app.mounted(again.device):
        assert app.ls("/") == ["lost+found", "whoami"]


def test_the_plugin_cleans_up_after_each_test(tmp_path: Path, image_dir: Path) -> None:
    """In a project of its own (no conftest here to empty the slots): a test that leaves
    its disk plugged and mounted is cleaned up by the plugin before the next test."""
    img = images.ext4(image_dir / "cleanup.img", {"whoami": "cleanup\n"})
    (tmp_path / "test_project.py").write_text(textwrap.dedent(f"""
        from guestslots import SlotState

        def test_leaves_its_disk_mounted(appliance, disk):
            d = disk({str(img)!r}, writable=True)
            appliance.mount(d.device, "/")
            appliance.write("/left", "behind")

        def test_starts_clean(appliance):
            assert appliance.mounts() == []
            assert [s.state for s in appliance.slots()] == [SlotState.EMPTY] * 3

        def test_uses_the_same_slot_again(appliance, disk):
            d = disk({str(img)!r})
            assert d.index == 0
            with appliance.mounted(d.device):
                assert appliance.ls("/") == ["lost+found", "whoami"]
    """))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--guestslots-slots=3",
         str(tmp_path / "test_project.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
