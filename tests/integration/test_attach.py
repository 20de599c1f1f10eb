"""Detached appliances (issue 12, seed 001): an appliance that outlives the process that
launched it, taken over by another process with the same API (guestslots.attach, the
shell's --attach, ``guestslots call --attach``), mounts, page cache and all; one holder
at a time; its work directory kept while its QEMU runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import guestslots
from guestslots import Appliance, ApplianceState, StateError
from guestslots.host import runtime, workdir
from guestslots.model.migration import MigrationParams
from guestslots.model.runtime import RuntimeRecordError
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]

BACKEND = os.environ.get("GUESTSLOTS_BACKEND") or "qemu"

#: A caller that launches a detached appliance, leaves it busy, and exits.
LAUNCHER = """
import sys, guestslots
app = guestslots.Appliance(detached=True)
app.add_drive("/dev/null")
app.add_drive("/dev/null")
app.launch()
app.hotplug(0, sys.argv[1], readonly=False, label="data")
app.diskset_add(0)
app.mount("/dev/sda", "/")
app.write("/cached", "only in the page cache\\n")
print(app.id, app.pid, flush=True)
"""

#: A caller that attaches, says so, and waits (to be killed).
HOLDER = """
import sys, guestslots
app = guestslots.attach(sys.argv[1])
print(app.cat("/cached"), end="", flush=True)
sys.stdin.read()
"""


def alive(pid: int) -> bool:
    """Whether *pid* runs (a zombie, left for whoever reaps the orphan, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=300, check=False)


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def daemon(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """On the libvirt backend, the URI of a libvirt daemon (a private one) for this test
    and the processes it starts: a detached domain lives there, not in its caller."""
    if BACKEND != "libvirt":
        return None
    uri: str = request.getfixturevalue("libvirtd_uri")
    monkeypatch.setenv("GUESTSLOTS_LIBVIRT_URI", uri)
    return uri


def test_a_detached_appliance_outlives_its_caller_and_another_process_attaches(
    tmp_path: Path, daemon: str | None, request: pytest.FixtureRequest,
) -> None:
    disk = images.ext4(tmp_path / "data.img", {"n": "data\n"}, size_mib=32)
    other = images.ext4(tmp_path / "other.img", {"n": "other\n"})
    launched = python(LAUNCHER, str(disk))
    assert launched.returncode == 0, launched.stderr
    ident, pid = launched.stdout.split()
    qemu = int(pid)
    try:
        assert alive(qemu)  # its caller exited; it did not
        record = runtime.read(runtime.record_path(ident))
        assert record.detached and record.pid == qemu
        # a launch's clean-up of dead callers' work directories leaves it: QEMU (or on
        # libvirt, a keeper while QEMU runs) holds it
        workdir.remove_stale()
        assert os.path.isdir(record.workdir)
        if daemon is not None:  # and libvirt's gc leaves the domain of its dead caller
            gc = cli("guestslots.cli", "gc", "--uri", daemon)
            assert gc.returncode == 0 and f"left {record.domain}: a detached appliance" \
                in gc.stdout, gc.stdout + gc.stderr
        ps = cli("guestslots.cli", "ps")
        assert any(line.startswith(ident) and line.endswith("detached, free to attach")
                   for line in ps.stdout.splitlines()), ps.stdout  # its holder is gone

        app = guestslots.attach(ident)
        assert app.state is ApplianceState.RUNNING and app.pid == qemu and app.detached
        assert app.cat("/cached") == "only in the page cache\n"  # the mount, the cache
        assert app.slots()[0].path == str(disk) and app.list_disk_labels() == {
            "data": "/dev/sda"}
        assert app.diskset_list() == [0]
        app.hotplug(1, other)
        assert app.list_devices() == ["/dev/sda", "/dev/sdb"]
        held = runtime.read(runtime.record_path(ident))
        assert held.owner["pid"] == os.getpid() and held.slots[1].path == str(other)
        assert any(line.startswith(ident) and line.endswith("detached, held by a process")
                   for line in cli("guestslots.cli", "ps").stdout.splitlines())
        with pytest.raises(RuntimeRecordError, match="this process holds"):
            guestslots.attach(ident)
        # moved into a new QEMU process by its new holder (on libvirt, at another libvirt
        # daemon on this host): still detached, still kept
        if daemon is None:
            app.migrate()
        else:
            other = request.getfixturevalue("other_libvirtd_uri")
            app.migrate(MigrationParams(destination_uri=other))
            assert runtime.read(runtime.record_path(ident)).uri == other
        assert app.pid != qemu and not alive(qemu)
        assert app.pid is not None
        qemu = app.pid
        assert runtime.read(runtime.record_path(ident)).pid == qemu
        workdir.remove_stale()
        assert os.path.isdir(record.workdir)  # the new QEMU (or its keeper) holds it

        app.disconnect()
        assert app.state.name == "DISCONNECTED" and alive(qemu)
        # taking it and letting go again leaves nothing open in this process
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            guestslots.attach(ident).disconnect()
        assert len(os.listdir("/proc/self/fd")) == fds
        assert runtime.read(runtime.record_path(ident)).owner == {}
        with pytest.raises(StateError, match="running detached"):
            app.launch()  # not a second appliance under the same id
        # the CLI and the shell take it over and leave it running
        called = cli("guestslots.cli", "call", "--attach", ident, "cat", "/cached")
        assert called.returncode == 0 and called.stdout == "only in the page cache\n", \
            called.stderr
        shell = cli("guestslots.fish", "--attach", ident, stdin="write /by-the-shell yes\n"
                    "list-devices\n")
        assert shell.returncode == 0 and shell.stdout.split() == ["/dev/sda", "/dev/sdb"], \
            shell.stderr
        assert alive(qemu)

        # a holder killed while it holds it: the next attach sees it died
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, ident], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        assert holder.stdout.readline() == "only in the page cache\n"
        with pytest.raises(RuntimeRecordError, match=f"held by process {holder.pid}"):
            guestslots.attach(ident)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        app = guestslots.attach(ident)
        assert app.cat("/by-the-shell") == "yes"
        app.shutdown()
        assert not alive(qemu)
        assert not runtime.record_path(ident).exists()
        assert not os.path.exists(record.workdir)
        with pytest.raises(RuntimeRecordError, match=f"no appliance {ident} is recorded"):
            guestslots.attach(ident)  # nothing left to attach to
    finally:
        if alive(qemu):
            os.kill(qemu, signal.SIGKILL)


def test_a_detached_appliance_is_saved_restored_and_relaunched_from_the_cli(
    tmp_path: Path, daemon: str | None,
) -> None:
    disk = images.ext4(tmp_path / "data.img", {"n": "data\n"}, size_mib=32)
    launched = python(LAUNCHER, str(disk))
    assert launched.returncode == 0, launched.stderr
    ident, pid = launched.stdout.split()
    qemus = [int(pid)]
    saved = tmp_path / "saved"
    try:
        done = cli("guestslots.cli", "call", "--attach", ident, "save", str(saved))
        assert done.returncode == 0 and done.stdout == f"{saved}\n", done.stderr
        assert not alive(qemus[0]) and not runtime.record_path(ident).exists()

        restored = cli("guestslots.cli", "restore", str(saved))
        assert restored.returncode == 0 and restored.stdout == f"{ident}\n", restored.stderr
        record = runtime.read(runtime.record_path(ident))
        assert record.detached and record.pid is not None and alive(record.pid)
        assert record.owner == {}  # the command let go of it: free to attach
        qemus.append(record.pid)
        # another process takes it over, with its mount and page cache back
        called = cli("guestslots.cli", "call", "--attach", ident, "cat", "/cached")
        assert called.returncode == 0 and called.stdout == "only in the page cache\n", \
            called.stderr
        again = cli("guestslots.cli", "restore", str(saved))
        assert again.returncode == 1 and "is running" in again.stderr, again.stderr

        os.kill(record.pid, signal.SIGKILL)  # QEMU dies; the record stays
        relaunched = cli("guestslots.cli", "relaunch", ident)
        assert relaunched.returncode == 0 and relaunched.stdout == f"{ident}\n", \
            relaunched.stderr
        record = runtime.read(runtime.record_path(ident))
        assert record.detached and record.pid is not None and record.pid not in qemus
        qemus.append(record.pid)
        for command, answer in ((["list-devices"], "/dev/sda\n/dev/sdb\n"),
                                (["diskset-list"], "0\n"),
                                (["list-disk-labels"], "data: /dev/sda\n")):
            called = cli("guestslots.cli", "call", "--attach", ident, *command)
            assert called.returncode == 0 and called.stdout == answer, called.stderr
        missing = cli("guestslots.cli", "relaunch", "nosuchid")
        assert missing.returncode == 1 and "no appliance nosuchid is recorded" in \
            missing.stderr, missing.stderr
        stopped = cli("guestslots.cli", "stop", ident)
        assert stopped.returncode == 0 and not alive(record.pid), stopped.stderr
    finally:
        for qemu in qemus:
            if alive(qemu):
                os.kill(qemu, signal.SIGKILL)


def test_only_a_detached_appliance_is_attached(app: Appliance) -> None:
    with pytest.raises(RuntimeRecordError, match="is not detached"):
        guestslots.attach(app.id)
    with pytest.raises(StateError, match="disconnect"):
        app.disconnect()
    assert app.list_devices()  # still its caller's, and answering
    if app.backend == "libvirt":  # a detached domain lives at a daemon, not in its caller
        for uri in ("embed", "qemu:///embed?root=/tmp/x"):
            with pytest.raises(ValueError, match="needs a libvirt daemon"):
                Appliance("libvirt", uri=uri, detached=True)
