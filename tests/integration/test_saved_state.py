"""Launch from a saved appliance: restored launches behave as cold ones, and bad states
are never trusted."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

import guestslots
from guestslots import Appliance, SlotState
from guestslots.host import runtime, savedstate
from guestslots.host.cache import cache_root
from guestslots.testing import testimages as images

from .conftest import Image, whoami
from .test_faults import wait_gone

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


@pytest.fixture(scope="module", autouse=True)
def states_for_two_more(shared_appliance: Appliance) -> None:
    """libvirt restores a state only under the domain name it was saved with, so the
    N-th appliance running at once has a state of its own (the shared appliance holds
    the first).  Launch two more at once, cold, so that they save theirs and the tests
    below restore.  The QEMU backend's one state serves every appliance."""
    if shared_appliance.backend != "libvirt":
        return
    apps: list[Appliance] = []
    try:
        for _ in range(2):
            apps.append(Appliance())
            apps[-1].launch()
    finally:
        for app in apps:
            app.shutdown()


def _states(app: Appliance) -> list[Path]:
    """The saved states of *app*'s backend (another backend's are left alone: they are
    the next pass's)."""
    backend = app.backend
    return sorted(state for state in cache_root().glob("state-*/state")
                  if json.loads((state.parent / "meta.json").read_text()).get("backend")
                  == backend)


def _next_states() -> list[Path]:
    """The saved state (its ``state`` file) that the next ``Appliance()`` of this process
    restores, found by launching one: only that state is spoilt by the tests below, as
    the others (other layouts, libvirt's other domain names) serve later tests, which
    would boot cold, and warn, on finding them spoilt."""
    with Appliance() as probe:
        probe.launch()
        assert probe.launched_from == "restored"
        key = runtime.read(runtime.record_path(probe.id)).layout_key
    saved = savedstate.find(key)
    assert saved is not None
    return [saved.state]


def test_launch_restores_and_drives_added_before_launch_work(
    shared_appliance: Appliance, corpus: dict[str, Image]
) -> None:
    # the shared appliance launched first, so a saved state exists now
    assert _states(shared_appliance), "no saved state after the first launch"
    gpt = corpus["gpt-qcow2-ext4"]
    with Appliance() as app:
        app.add_drive("/dev/null")
        app.add_drive(gpt.path, format="qcow2", label="gpt")
        app.launch()
        assert app.launched_from == "restored"
        assert app.list_filesystems() == {"/dev/sdb1": "ext4"}
        assert whoami(app, "/dev/sdb1") == gpt.name
        assert app.resolve_link("/dev/disk/guestslots/gpt-part1") == "/dev/sdb1"
        app.hotplug(0, corpus["whole-raw-xfs"].path)
        assert whoami(app, "/dev/sda") == "whole-raw-xfs"


def test_concurrent_restores_are_separate_appliances(
    shared_appliance: Appliance, image_dir: Path
) -> None:
    paths = [images.ext4(image_dir / f"conc{i}.img", {"whoami": f"conc{i}\n"}) for i in range(2)]
    apps: list[Appliance] = []
    errors: list[BaseException] = []

    def launch(path: Path) -> None:
        try:
            app = Appliance()
            app.add_drive(path, readonly=False)
            apps.append(app)
            app.launch()
            app.mount("/dev/sda", "/")
            app.write("/mine", path.name)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=launch, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert {a.launched_from for a in apps} == {"restored"}
        assert {a.pid for a in apps} != {None} and apps[0].pid != apps[1].pid
        for app in apps:
            mine = app.cat("/mine")
            assert app.cat("/whoami") == f"{mine.removesuffix('.img')}\n"
    finally:
        for app in apps:
            app.shutdown()


def test_fresh_forces_a_cold_boot(shared_appliance: Appliance) -> None:
    with Appliance() as app:
        app.add_drive("/dev/null")
        app.launch(fresh=True)
        assert app.launched_from == "cold boot"
        assert app.list_devices() == ["/dev/sda"]


def _corrupt_middle(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xde\xad\xbe\xef" * 4096)


@pytest.mark.parametrize("part", ["state", "ram"])
def test_a_corrupt_state_is_detected_and_rebuilt(shared_appliance: Appliance, part: str
                                                 ) -> None:
    if part == "ram" and shared_appliance.backend != "qemu":
        pytest.skip("only the QEMU backend keeps the guest's RAM apart from its state")
    corrupted = [path for state in _next_states() if (path := state.parent / part).exists()]
    assert corrupted
    for path in corrupted:
        _corrupt_middle(path)
    with Appliance() as app, pytest.warns(RuntimeWarning, match="does not match its checksum"):
        app.add_drive("/dev/null")
        app.launch()
    assert app.launched_from == "cold boot"
    with Appliance() as again:
        again.launch()
        assert again.launched_from == "restored"


def test_a_state_qemu_cannot_load_falls_back_to_a_cold_boot(shared_appliance: Appliance) -> None:
    # A state whose checksums match but that QEMU refuses to load: the
    # fallback must not depend on the checksum having caught it.
    for state in _next_states():
        state.write_bytes(b"QEVM" + b"\0" * 4096)
        meta_path = state.parent / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["state_size"] = state.stat().st_size
        meta["state_sha256"] = hashlib.sha256(state.read_bytes()).hexdigest()
        meta_path.write_text(json.dumps(meta))
    with Appliance() as app, pytest.warns(RuntimeWarning, match="restoring the saved appliance "
                                                                "failed, booting cold"):
        app.launch()
    assert app.launched_from == "cold boot"
    with Appliance() as again:
        again.launch()
        assert again.launched_from == "restored"


def test_isolated_gives_each_image_its_own_appliance(
    shared_appliance: Appliance, corpus: dict[str, Image]
) -> None:
    seen = []
    for name in ("mbr-raw-ext4", "whole-qcow2-ext4"):
        image = corpus[name]
        with guestslots.isolated(image.path, format=image.format) as app:
            assert app.launched_from == "restored"
            assert app.list_devices() == ["/dev/sda"]  # only this image is in there
            seen.append((app.pid, whoami(app, "/dev/sda" + ("1" if image.fs_partition else ""))))
        assert app.state is guestslots.ApplianceState.CLOSED
    assert [w for _, w in seen] == ["mbr-raw-ext4", "whole-qcow2-ext4"]
    assert seen[0][0] != seen[1][0]


def test_isolated_in_a_loop_takes_a_standby_that_held_no_image(
    shared_appliance: Appliance, corpus: dict[str, Image]
) -> None:
    """From the second call with the same options on, the next call's appliance is
    launched meanwhile; it held no image before, serves one call, and
    is shut down; one of other options is not taken; none is left at exit."""
    from guestslots.isolation import _STANDBY, drop_standby

    drop_standby()
    image = corpus["mbr-raw-ext4"]
    used: list[int | None] = []
    next_pid = None
    for round in range(4):
        expected = next_pid  # the standby launched during the last round
        with guestslots.isolated(image.path, format=image.format, slots=1) as app:
            assert app.list_devices() == ["/dev/sda", "/dev/sdb"]
            assert [s.path for s in app.slots()] == [str(image.path), None]
            assert app.slots()[0].config is not None  # in the definition, as add_drive puts it
            assert whoami(app, "/dev/sda1") == "mbr-raw-ext4"
            with pytest.raises(guestslots.GuestslotsError):
                app.mount("/dev/sda1", "/")  # read-only, as asked
            used.append(app.pid)
            pending = _STANDBY._pending
            if round == 0:
                assert pending is None  # one call is not a loop
            else:
                assert pending is not None
                standby = pending[1].result(timeout=120)
                assert standby.pid not in used
                assert [s.state for s in standby.slots()] == [SlotState.EMPTY] * 2
                next_pid = standby.pid
        assert used[-1] is not None
        wait_gone(used[-1])
        if round >= 2:
            assert used[-1] == expected
    assert len(set(used)) == 4
    # another key (one slot fewer) does not take it; the one it leaves is shut down
    left = _STANDBY._pending
    assert left is not None
    left_pid = left[1].result(timeout=120).pid
    assert left_pid is not None
    with guestslots.isolated(image.path, format=image.format) as app:
        assert app.pid != left_pid and app.list_devices() == ["/dev/sda"]
    wait_gone(left_pid)
    assert _STANDBY._pending is None  # one call of a key is not a loop
    # the loop's key again: a standby is launched; drop_standby() shuts it down
    with guestslots.isolated(image.path, format=image.format, slots=1):
        pending = _STANDBY._pending
        assert pending is not None
        standby_pid = pending[1].result(timeout=120).pid
        assert standby_pid is not None
    drop_standby()
    wait_gone(standby_pid)
    assert _STANDBY._pending is None
    # a standby that died while it waited is not handed out: a launch instead
    for _ in range(2):
        with guestslots.isolated(image.path, format=image.format, slots=1):
            pass
    pending = _STANDBY._pending
    assert pending is not None
    dead = pending[1].result(timeout=120)
    dead_pid = dead.pid
    assert dead_pid is not None
    dead.kill()
    wait_gone(dead_pid)
    with guestslots.isolated(image.path, format=image.format, slots=1) as app:
        assert app.pid != dead_pid and whoami(app, "/dev/sda1") == "mbr-raw-ext4"
    # an image's own fault is the caller's error, as without a standby
    taken = _STANDBY._pending
    assert taken is not None
    taken_pid = taken[1].result(timeout=120).pid
    assert taken_pid is not None
    with pytest.raises(guestslots.DriveError, match="no such file"), \
            guestslots.isolated(image.path.with_name("missing.img"), slots=1):
        pass
    wait_gone(taken_pid)
    drop_standby()
