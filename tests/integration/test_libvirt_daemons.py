"""The libvirt backend at the daemons libvirt users have: the host's system daemon
(``qemu:///system``, QEMU as ``libvirt-qemu`` with dynamic ownership, as Debian runs
it), ``qemu:///session`` for root (libvirt serves it from the system daemon), and a
user's own session daemon (``qemu:///session`` for ``nobody``: libvirt starts it,
and it runs QEMU as that user), as at the embedded driver: launch and restored
launch, hotplug of images in the caller's own directories (read-only and writable),
save and restore, detached and attach, a migration from the embedded driver to the
system daemon; no image's owner or mode changes.

Before: at the system daemon every launch failed (``Cannot access storage file
'.../root.qcow2' (as uid:999, gid:995): Permission denied``): the daemon ran QEMU as
its own user, which cannot reach the caller's 0700 work directory.  A migration there
failed the same way until the destination's definition got the daemon's label.

The libvirt pass runs these (the QEMU pass has no libvirt appliance to test).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.resources
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import guestslots
from guestslots import Appliance, ApplianceState, MigrationParams
from guestslots.backends.libvirt import connection
from guestslots.host.build import ensure_appliance
from guestslots.testing import libvirtd
from guestslots.testing import testimages as images

from .test_faults import wait_gone

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


def test_an_appliance_migrates_from_the_embedded_driver_to_the_system_daemon(
        system_uri: str, app: Appliance, tmp_path: Path) -> None:
    """The destination daemon's label, not the source's: QEMU runs there as root too,
    relabelling nothing.  Before: the destination's QEMU ran as libvirt-qemu, which
    could not reach the caller's work directory (the migration failed)."""
    assert app.backend == "libvirt"  # the embedded driver is open in this process
    mine, rw, ro = caller_images(tmp_path)
    before = owners(mine, rw, ro)
    lv = Appliance("libvirt", uri="embed")
    try:
        for _ in range(2):
            lv.add_drive("/dev/null")
        lv.launch()
        lv.hotplug(1, ro)
        done = lv.migrate(MigrationParams(destination_uri=system_uri))
        assert done.status == "completed", done
        backend: Any = lv._backend
        assert backend.uri == system_uri
        xml = backend.domain.XMLDesc(0)
        assert "<seclabel type='static' model='dac' relabel='no'>" in xml, xml
        assert lv.pid is not None and os.stat(f"/proc/{lv.pid}").st_uid == 0
        use(lv, rw, ro)  # hotplug, write and read over there
        back = guestslots.restore(lv.save(tmp_path / "saved"))  # at the system daemon
        try:
            restored: Any = back._backend
            assert restored.uri == system_uri
            with back.mounted("/dev/sdb"):
                assert back.cat("/whoami") == "ro\n"
        finally:
            back.shutdown()
    finally:
        lv.shutdown()
    assert owners(mine, rw, ro) == before


SESSION = textwrap.dedent('''
    import os, sys
    import guestslots
    rw, ro, saved = sys.argv[1:]
    def launched(**options):
        app = guestslots.Appliance("libvirt", uri="qemu:///session", **options)
        for _ in range(2):
            app.add_drive("/dev/null")
        app.launch()
        return app
    app = launched()  # a cold boot the first time
    print("QEMU runs as the caller:", os.stat(f"/proc/{app.pid}").st_uid == os.getuid())
    app.shutdown()
    app = launched()  # from the state the first launch saved
    print(app.launched_from)
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
    print(back.launched_from)
    back.shutdown()
    lv = launched(detached=True)
    lv.hotplug(1, ro)
    ident = lv.id
    lv.disconnect()
    lv = guestslots.attach(ident)
    with lv.mounted("/dev/sdb"):
        print("attached:", lv.cat("/whoami"), end="")
    lv.shutdown()
''')
EXPECTED = ["QEMU runs as the caller: True", "restored", "ro", "by the appliance",
            "restored from a save", "attached: ro"]


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
    assert done.stdout.splitlines() == EXPECTED, done.stdout
    assert owners(mine, rw, ro) == before


@pytest.fixture
def user_home(app: Appliance) -> Iterator[Path]:
    """A home for ``nobody`` (not root, in no group with a device) in which it can run
    guestslots: the package and its libraries copied there, and the session
    appliance's build hard-linked into its cache (the same inputs: the same key), so
    only its saved state is its own.  Its session daemon, which libvirt starts for
    it, is stopped afterwards."""
    home = Path(tempfile.mkdtemp(prefix="gs-nobody-"))
    lib = home / "lib"
    package = Path(guestslots.__file__).parent
    shutil.copytree(package, lib / "guestslots", ignore=shutil.ignore_patterns("__pycache__"))
    if not (lib / "guestslots" / "_appliance").is_dir():  # an editable checkout's mapping
        shutil.copytree(Path(str(importlib.resources.files("guestslots._appliance"))),
                        lib / "guestslots" / "_appliance",
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("qemu.qmp", "tqdm", "lxml"):
        module = importlib.import_module(name)
        top = Path(str(module.__file__)).parents[name.count(".")]
        shutil.copytree(top, lib / top.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("libvirt", "libvirtmod", "libvirt_qemu", "libvirtmod_qemu"):
        shutil.copy2(str(importlib.import_module(name).__file__), lib)
    built = ensure_appliance()
    cache = home / ".cache" / "guestslots"
    cache.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(built.directory), str(cache)], check=True)
    (home / "run").mkdir(mode=0o700)
    (home / "tmp").mkdir()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(home)], check=True)
    try:
        yield home
    finally:
        for daemon in ("libvirtd", "virtlogd"):
            with contextlib.suppress(OSError, ValueError):
                pid = int((home / "run" / "libvirt" / f"{daemon}.pid").read_text())
                os.kill(pid, signal.SIGTERM)
                wait_gone(pid)
        shutil.rmtree(home, ignore_errors=True)


def test_a_users_own_session_daemon_runs_appliances_as_the_embedded_driver_does(
        user_home: Path) -> None:
    """A user other than root at ``qemu:///session``: libvirt starts that user's own
    session daemon, which runs QEMU as the user.  Launch (booted, then restored),
    hotplug of the user's images (read-only and writable), save and restore,
    detached and attach; no image's owner or mode changes.  (The system's Python,
    as the suite's own may live where another user cannot reach.)"""
    mine, rw, ro = caller_images(user_home)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(mine)], check=True)
    before = owners(mine, rw, ro)
    env = {"HOME": str(user_home), "XDG_RUNTIME_DIR": str(user_home / "run"),
           "TMPDIR": str(user_home / "tmp"), "PYTHONPATH": str(user_home / "lib"),
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run(["/usr/bin/python3", "-c", SESSION, str(rw), str(ro),
                           str(user_home / "saved")], user="nobody", group="nogroup",
                          extra_groups=[], env=env, cwd=user_home, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == EXPECTED, done.stdout
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
