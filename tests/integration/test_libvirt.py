"""The libvirt backend on libvirt's embedded QEMU driver: the same slots and answers as
the QEMU backend, images left as they were, and nothing left behind.

One libvirt appliance for the module (the session appliance holds the first
saved state's domain name, so this one has the second state: a cold boot the
first time, restored from then on).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestslots import Appliance, DriveError, SlotState
from guestslots.backends.libvirt.domxml import owner_of
from guestslots.host import owner
from guestslots.testing import testimages as images

from .test_faults import wait_gone

pytestmark = [
    pytest.mark.integration,
    pytest.mark.single_pass('tests the libvirt backend by itself'),
]
libvirt = pytest.importorskip("libvirt")


@pytest.fixture(scope="module")
def lvapp(appliance: Appliance) -> Iterator[Appliance]:
    """A libvirt appliance (the session appliance, requested first, has made sure the
    host can run one and built the image)."""
    app = Appliance("libvirt", accel=appliance.accel.accel if appliance.accel else None)
    for _ in range(4):
        app.add_drive("/dev/null")
    app.launch()
    yield app
    app.shutdown()


@pytest.fixture(scope="module")
def lvimages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("libvirt")
    return {
        "gpt": images.named_image(d, "lvgpt", "gpt"),
        "whole": images.named_image(d, "lvwhole", None),
        "qcow2": images.named_image(d, "lvqcow", "dos", fmt="qcow2"),
    }


def test_hotplug_and_unplug_by_index(lvapp: Appliance, lvimages: dict[str, Path]) -> None:
    assert lvapp.list_devices() == ["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd"]
    lvapp.hotplug(2, lvimages["gpt"], label="lvlabel")
    lvapp.hotplug(0, lvimages["qcow2"], format="qcow2")
    lvapp.hotplug(1, lvimages["whole"], readonly=False)
    assert lvapp.list_filesystems() == {"/dev/sdb": "ext4", "/dev/sda1": "ext4",
                                        "/dev/sdc1": "ext4"}
    for device, name in (("/dev/sda1", "lvqcow"), ("/dev/sdb", "lvwhole"),
                         ("/dev/sdc1", "lvgpt")):
        with lvapp.mounted(device):
            assert lvapp.cat("/whoami") == f"{name}\n"
    assert lvapp.resolve_link("/dev/disk/guestslots/lvlabel") == "/dev/sdc"
    lvapp.unplug(2)
    assert lvapp.slots()[2].state is SlotState.EMPTY
    assert lvapp.list_filesystems() == {"/dev/sdb": "ext4", "/dev/sda1": "ext4"}
    lvapp.hotplug(2, lvimages["gpt"])  # the slot is usable again
    for index in (0, 1, 2):
        lvapp.unplug(index)


def test_images_keep_their_owner_mode_and_content(lvapp: Appliance, lvimages: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """libvirt must not chown, chmod or relabel the caller's files."""
    img = tmp_path / "owned.img"
    img.write_bytes(lvimages["whole"].read_bytes())
    os.chown(img, 65534, 65534)
    os.chmod(img, 0o640)
    before = os.stat(img)
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    lvapp.hotplug(3, img)  # read-only: through a throwaway overlay
    with lvapp.mounted("/dev/sdd"):
        assert lvapp.cat("/whoami") == "lvwhole\n"
    lvapp.unplug(3)
    lvapp.hotplug(3, img, readonly=False)
    lvapp.unplug(3)
    after = os.stat(img)
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid,
                                                           before.st_mode)
    assert hashlib.sha256(img.read_bytes()).hexdigest() == digest
    assert os.listxattr(img) == []  # no security labels either


def test_bad_images_are_refused_and_the_slot_stays_empty(
    lvapp: Appliance, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\xff" * 4092)
    with pytest.raises(DriveError):
        lvapp.hotplug(0, bad, format="qcow2", readonly=False)
    assert lvapp.slots()[0].state is SlotState.EMPTY
    assert lvapp.list_filesystems() == {}


def _killed_caller() -> tuple[int, str]:
    """Run a caller that launches a libvirt appliance and is killed: its QEMU's pid and
    its embedded root."""
    script = textwrap.dedent("""
        import os, guestslots
        from guestslots.backends.libvirt import connection
        app = guestslots.Appliance("libvirt")
        app.add_drive("/dev/null")
        app.launch()
        print(app.pid, connection.root(), flush=True)
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    qemu_pid, root = proc.stdout.split()
    assert os.path.isdir(root)
    assert os.path.exists(f"/proc/{qemu_pid}")
    return int(qemu_pid), root


def test_a_killed_caller_leaves_no_domain_behind(lvapp: Appliance) -> None:
    """libvirt daemonises QEMU, so a killed caller's QEMU outlives it: the next launch
    kills it and removes the embedded driver's root."""
    qemu_pid, root = _killed_caller()
    other = Appliance("libvirt")
    other.add_drive("/dev/null")
    other.launch()
    try:
        wait_gone(qemu_pid)
        assert not os.path.exists(root)
    finally:
        other.shutdown()


def test_gc_cleans_after_a_killed_caller(lvapp: Appliance) -> None:
    """``guestslots gc`` does what the next launch would, and leaves live appliances
    (this process's, lvapp) alone."""
    qemu_pid, root = _killed_caller()
    gc = subprocess.run([sys.executable, "-m", "guestslots.cli", "gc"], capture_output=True,
                        text=True, timeout=60, check=False)
    assert gc.returncode == 0, gc.stderr
    assert f"removed {root}" in gc.stdout
    wait_gone(qemu_pid)
    assert not os.path.exists(root)
    assert lvapp.list_devices() == ["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd"]


def test_gc_destroys_the_domains_of_dead_owners_at_a_uri(lvapp: Appliance) -> None:
    """At a URI (here the dead caller's own embedded root, which libvirt reopens with
    its running domain), gc destroys the domains whose recorded owner died."""
    qemu_pid, root = _killed_caller()
    gc = subprocess.run([sys.executable, "-m", "guestslots.cli", "gc", "--uri",
                         f"qemu:///embed?root={root}"], capture_output=True, text=True,
                        timeout=60, check=False)
    assert gc.returncode == 0, gc.stderr
    assert re.search(r"^destroyed guestslots-\S+: its owner \(pid \d+\) died$", gc.stdout,
                     re.M), gc.stdout
    wait_gone(qemu_pid)


def test_a_restored_domain_names_its_new_owner(lvapp: Appliance) -> None:
    """A saved domain's XML names the process that saved it: a restore records its
    own, or gc would take a live appliance for a dead one's.  (Before, this read
    lvapp, whose launch restored only when a state happened to be cached.)"""
    app = Appliance("libvirt", accel=lvapp.accel.accel if lvapp.accel else None)
    for _ in range(4):
        app.add_drive("/dev/null")
    app.launch()  # while lvapp runs, its layout's second domain: it may boot cold once
    app.shutdown()
    app.launch()  # that domain's own state now
    try:
        assert app.launched_from == "restored"
        domain = app._backend.domain  # type: ignore[union-attr]
        assert owner_of(domain.XMLDesc(0)) == owner.current()
    finally:
        app.shutdown()
