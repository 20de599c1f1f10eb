"""The libvirt backend at the daemons libvirt users have: the host's system daemon
(``qemu:///system``, QEMU as ``libvirt-qemu`` with dynamic ownership, as Debian runs
it) and the caller's session daemon (``qemu:///session``), as at the embedded
driver: launch and restored launch, hotplug of images in the caller's own
directories (read-only and writable), save and restore, detached and attach; no
image's owner or mode changes.

Before: at the system daemon every launch failed (``Cannot access storage file
'.../root.qcow2' (as uid:999, gid:995): Permission denied``): the daemon ran QEMU as
its own user, which cannot reach the caller's 0700 work directory.

The libvirt pass runs these (the QEMU pass has no libvirt appliance to test).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import guestslots
from guestslots import Appliance, ApplianceState
from guestslots.testing import libvirtd
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration, pytest.mark.libvirt]
libvirt = pytest.importorskip("libvirt")
if (os.environ.get("GUESTSLOTS_BACKEND") or "qemu") != "libvirt":
    pytestmark.append(pytest.mark.skip(reason="the libvirt pass runs these"))


@pytest.fixture(scope="module")
def system_uri() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("starting the system libvirt daemon needs root")
    with libvirtd.system_libvirtd() as uri:
        yield uri


def owners(*paths: Path) -> dict[Path, tuple[int, int, int]]:
    return {p: (os.stat(p).st_uid, os.stat(p).st_gid, stat.S_IMODE(os.stat(p).st_mode))
            for p in paths}


def caller_images(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A private directory of the caller's (0700) with a writable image (0600) and a
    read-only one (0400)."""
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    rw = images.ext4(mine / "rw.img", {"whoami": "rw\n"})
    ro = images.ext4(mine / "ro.img", {"whoami": "ro\n"})
    rw.chmod(0o600)
    ro.chmod(0o400)
    return mine, rw, ro


def use(app: Appliance, rw: Path, ro: Path) -> None:
    """Hotplug *rw* writable and *ro* read-only (unless slot 1 has it), write to one
    and read the other."""
    app.hotplug(0, rw, readonly=False)
    if app.slots()[1].path != str(ro):
        app.hotplug(1, ro)
    with app.mounted("/dev/sda", readonly=False):
        app.write("/written", "by the appliance\n")
    with app.mounted("/dev/sdb"):
        assert app.cat("/whoami") == "ro\n"
    app.unplug(0)


@pytest.mark.parametrize("uri", ["system", "session"])
def test_a_daemon_runs_appliances_as_the_embedded_driver_does(
        uri: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    uri = request.getfixturevalue("system_uri") if uri == "system" else "qemu:///session"
    mine, rw, ro = caller_images(tmp_path)
    before = owners(mine, rw, ro)
    app = Appliance("libvirt", uri=uri)
    try:
        for _ in range(2):
            app.add_drive("/dev/null")
        app.launch()  # a cold boot at this daemon the first time, restored after
        use(app, rw, ro)
        if uri == "qemu:///system":  # QEMU runs as the caller, root, relabelling nothing
            backend: Any = app._backend
            xml = backend.domain.XMLDesc(0)
            assert "<seclabel type='static' model='dac' relabel='no'>" in xml, xml
            assert "<label>+0:+0</label>" in xml or "<label>0:0</label>" in xml, xml
        saved = app.save(tmp_path / "saved")
        back = guestslots.restore(saved)
        try:
            assert back.state is ApplianceState.RUNNING
            back.hotplug(0, rw, readonly=False)
            with back.mounted("/dev/sda"):
                assert back.cat("/written") == "by the appliance\n"
        finally:
            back.shutdown()
        relaunched = Appliance("libvirt", uri=uri)
        for _ in range(2):
            relaunched.add_drive("/dev/null")
        relaunched.launch()
        assert relaunched.launched_from == "restored"
        relaunched.shutdown()
    finally:
        app.shutdown()
    assert owners(mine, rw, ro) == before


def test_a_detached_appliance_at_the_system_daemon_is_attached(
        system_uri: str, tmp_path: Path) -> None:
    mine, rw, ro = caller_images(tmp_path)
    before = owners(mine, rw, ro)
    app = Appliance("libvirt", uri=system_uri, detached=True)
    for _ in range(2):
        app.add_drive("/dev/null")
    app.launch()
    ident = app.id
    try:
        app.hotplug(1, ro)
        app.disconnect()
        app = guestslots.attach(ident)
        assert app.detached and app.slots()[1].path == str(ro)
        use(app, rw, ro)
    finally:
        app.shutdown()
    assert owners(mine, rw, ro) == before
