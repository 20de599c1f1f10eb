"""Guest programs run contained (issue 35): an attacker's guest in slot 0 (a static
busybox and static C programs, see :mod:`guestslots.testing.attacker`), a victim
with a secret in slot 1.  Nothing of a call runs after it returns, a guest program
cannot take the appliance down or starve another slot, and what it may not do
(OOM protection, real-time priority, raw and packet sockets, keyrings, user
namespaces, io_uring, module loading, the host's loopback) is refused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestslots import Appliance, GuestslotsError
from guestslots.testing import attacker
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration,
              pytest.mark.single_pass("the agent's own work: the same on both backends")]

SECRET = "victim-secret-4711\n"
#: The agent's limit of processes per call (confine.PIDS_MAX, the README's figure).
PIDS_MAX = 1024


@pytest.fixture(scope="module")
def attacker_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("attacker")
    return attacker.image(work / "attacker.img", work)


@pytest.fixture(scope="module")
def victim_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("victim")
    return images.ext4(work / "victim.img", {"secret": SECRET}, size_mib=16)


@pytest.fixture
def attack(app: Appliance, attacker_image: Path, victim_image: Path,
           tmp_path: Path) -> Appliance:
    """Slot 0: a writable copy of the attacker's guest, mounted at /; slot 1: the
    victim, plugged read-only."""
    img = tmp_path / "attacker.img"
    img.write_bytes(attacker_image.read_bytes())
    app.hotplug(0, img, readonly=False)
    app.hotplug(1, victim_image)
    app.mount("/dev/sda", "/")
    for program in attacker.EXECUTABLES:
        app.chmod(0o755, program)
    return app


def victim_answers(app: Appliance) -> str:
    """The victim's secret, read through slot 1 (the attacker's root set aside)."""
    app.umount_all()
    with app.mounted("/dev/sdb", "/", readonly=True):
        secret = app.cat("/secret")
    app.mount("/dev/sda", "/")
    return secret


def test_nothing_of_a_call_runs_after_it(attack: Appliance) -> None:
    app = attack
    # its namespace's first process clears its parent-death signal and becomes nobody:
    # before, it ran on (holding its lock) after the call stopped at its time limit
    with pytest.raises(GuestslotsError, match="no end in 3 s: stopped"):
        app.command(["/bin/linger"], timeout=3)
    assert app.is_file("/locked")  # it did take the lock
    assert app.command(["/bin/lockcheck"]) == "free\n"


def test_what_a_guest_program_may_not_do_is_refused(attack: Appliance) -> None:
    app = attack
    modules = app.command(["/bin/busybox", "cat", "/proc/modules"])
    said = dict(line.split() for line in app.command(["/bin/probe"]).splitlines())
    assert said == {
        "oom_score_adj": "refused", "sched_fifo": "refused", "mlock": "refused",
        "raw_socket": "refused", "af_packet": "refused", "af_vsock": "refused",
        "af_alg": "refused", "sctp": "refused", "uevents": "refused",
        "add_key": "refused", "keyctl": "refused", "user_namespace": "refused",
        "io_uring": "refused",
        "dev_null_as_nobody": "allowed",  # /dev/null is 0666, as everywhere
    }
    # no socket family or protocol it asked for loaded a module (before: vsock, af_alg,
    # sctp and their dependencies)
    after = app.command(["/bin/busybox", "cat", "/proc/modules"])
    names = {line.split()[0] for line in modules.splitlines()}
    assert {line.split()[0] for line in after.splitlines()} == names


def test_a_guest_program_that_fills_memory_takes_only_its_call_down(attack: Appliance) -> None:
    app = attack
    # before: it made itself unkillable (oom_score_adj -1000) and the appliance's
    # kernel panicked ("System is deadlocked on memory"), every slot lost
    with pytest.raises(GuestslotsError, match="killed: out of memory"):
        app.command(["/bin/hog"], timeout=300)
    assert victim_answers(app) == SECRET
    assert app.sh("echo next") == "next\n"


def test_a_fork_bomb_ends_with_its_call(attack: Appliance) -> None:
    app = attack
    # before: no limit but the kernel's (thousands, with the appliance's memory)
    made = int(app.command(["/bin/forkcount"], timeout=120))
    assert 0 < made < PIDS_MAX
    # before: the call returned long after its limit and the next call of any slot
    # waited for the bomb (49 s); now its processes are capped and killed at once
    with pytest.raises(GuestslotsError, match="no end in 10 s: stopped"):
        app.sh("f() { f | f & }; f; /bin/busybox sleep 1000", timeout=10)
    assert victim_answers(app) == SECRET
    assert app.sh("echo next") == "next\n"


@pytest.fixture
def host_service() -> Iterator[int]:
    """A service on the host's 127.0.0.1 only: it answers every connection with a line."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"host-only\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()
    thread.join(10)


def test_the_hosts_loopback_only_with_network(attack: Appliance, host_service: int) -> None:
    app = attack
    nic = app.add_nic()
    try:
        # before: every guest program shared the appliance's network, so reached
        # what the host serves on 127.0.0.1 only (QEMU's user network, 10.0.2.2)
        with pytest.raises(GuestslotsError, match="connect: Network is unreachable"):
            app.command(["/bin/tcpget", "10.0.2.2", str(host_service)])
        assert app.command(["/bin/tcpget", "10.0.2.2", str(host_service)],
                           network=True) == "host-only\n"
    finally:
        app.remove_nic(nic)
