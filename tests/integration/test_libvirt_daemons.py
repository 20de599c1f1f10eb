"""The libvirt backend at the daemons libvirt users have: the host's system daemon
(``qemu:///system``, QEMU as ``libvirt-qemu`` with dynamic ownership, as Debian runs
it) and ``qemu:///session`` (for root, the suite's user, libvirt serves it from the
system daemon), as at the embedded driver: launch and restored launch, hotplug of
images in the caller's own directories (read-only and writable), save and restore,
detached and attach; no image's owner or mode changes.

Before: at the system daemon every launch failed (``Cannot access storage file
'.../root.qcow2' (as uid:999, gid:995): Permission denied``): the daemon ran QEMU as
its own user, which cannot reach the caller's 0700 work directory.

The libvirt pass runs these (the QEMU pass has no libvirt appliance to test).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import guestslots
from guestslots import Appliance, ApplianceState
from guestslots.backends.libvirt import connection
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


def test_the_system_daemon_runs_appliances_as_the_embedded_driver_does(
        system_uri: str, app: Appliance, tmp_path: Path) -> None:
    """(In a process that embeds the driver too: the session appliance, ``app``.)"""
    uri = system_uri
    mine, rw, ro = caller_images(tmp_path)
    before = owners(mine, rw, ro)
    assert app.backend == "libvirt"  # the embedded driver is open in this process
    lv = Appliance("libvirt", uri=uri)
    try:
        for _ in range(2):
            lv.add_drive("/dev/null")
        lv.launch()  # a cold boot at this daemon the first time, restored after
        use(lv, rw, ro)
        # QEMU runs as the caller, root, relabelling nothing
        backend: Any = lv._backend
        xml = backend.domain.XMLDesc(0)
        assert "<seclabel type='static' model='dac' relabel='no'>" in xml, xml
        assert "<label>+0:+0</label>" in xml or "<label>0:0</label>" in xml, xml
        saved = lv.save(tmp_path / "saved")
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
        lv.shutdown()
    assert owners(mine, rw, ro) == before


SESSION = textwrap.dedent('''
    import sys
    import guestslots
    rw, ro, saved = sys.argv[1:]
    app = guestslots.Appliance("libvirt", uri="qemu:///session")
    for _ in range(2):
        app.add_drive("/dev/null")
    app.launch()
    app.hotplug(0, rw, readonly=False)
    app.hotplug(1, ro)
    with app.mounted("/dev/sda", readonly=False):
        app.write("/written", "by the appliance\\n")
    with app.mounted("/dev/sdb"):
        print(app.cat("/whoami"), end="")
    app.unplug(0)
    back = guestslots.restore(app.save(saved))
    back.hotplug(0, rw)
    with back.mounted("/dev/sda"):
        print(back.cat("/written"), end="")
    back.shutdown()
    print(back.launched_from)
''')


def test_the_session_daemon_runs_appliances_as_the_embedded_driver_does(
        system_uri: str, tmp_path: Path) -> None:
    """(In a process of its own: a plain qemu:///session starts the session daemon
    where none runs, which only a process that does not embed the driver can ask.
    For root, libvirt serves qemu:///session from the system daemon.)"""
    mine, rw, ro = caller_images(tmp_path)
    before = owners(mine, rw, ro)
    done = subprocess.run([sys.executable, "-c", SESSION, str(rw), str(ro),
                           str(tmp_path / "saved")], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["ro", "by the appliance", "restored from a save"], \
        done.stdout
    assert owners(mine, rw, ro) == before


def test_a_detached_appliance_at_the_system_daemon_is_attached(
        system_uri: str, app: Appliance, tmp_path: Path) -> None:
    assert app.backend == "libvirt"  # the embedded driver is open in this process
    mine, rw, ro = caller_images(tmp_path)
    before = owners(mine, rw, ro)
    lv = Appliance("libvirt", uri=system_uri, detached=True)
    for _ in range(2):
        lv.add_drive("/dev/null")
    lv.launch()
    ident = lv.id
    try:
        lv.hotplug(1, ro)
        lv.disconnect()
        lv = guestslots.attach(ident)
        assert lv.detached and lv.slots()[1].path == str(ro)
        use(lv, rw, ro)
    finally:
        lv.shutdown()
    assert owners(mine, rw, ro) == before


def test_a_running_domain_at_the_system_daemon_lends_its_disk(
        system_uri: str, app: Appliance, tmp_path: Path) -> None:
    """A user's VM at the system daemon (its disk where libvirt keeps images, its QEMU
    as libvirt-qemu): its disk at one point in time, through libvirt's backup job
    (whose socket libvirt-qemu must be able to create)."""
    from .test_domain_sources import NAME, domain_xml, no_job

    where = Path("/var/lib/libvirt/images")
    where.mkdir(parents=True, exist_ok=True)
    fs = images.ext4(tmp_path / "d.fs", {"whoami": "at-the-system-daemon\n"})
    raw = images.partitioned(where / f"guestslots-test-{os.getpid()}.img", "dos", fs)
    conn = libvirt.open(connection.target(system_uri))  # this process embeds the driver
    domain = conn.createXML(domain_xml(raw, None), 0)
    try:
        assert app.hotplug_domain(0, NAME, "vda", uri=system_uri) == 0
        assert not no_job(domain)
        with app.mounted("/dev/sda1"):
            assert app.cat("/whoami") == "at-the-system-daemon\n"
        app.unplug(0)
        assert no_job(domain)
    finally:
        if domain.isActive():
            domain.destroy()
        conn.close()
        raw.unlink()
