"""Work directories are removed only once their owner is gone."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from pathlib import Path

import pytest

from guestslots.host.workdir import WorkDir, remove_stale


def test_a_live_owners_directory_is_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    live = WorkDir(str(tmp_path))
    assert os.path.basename(live.path).startswith("guestslots-")
    left = tmp_path / "guestslots-left"  # as a killed owner leaves it: nobody holds it
    (left / "sub").mkdir(parents=True)
    (left / "lock").touch()
    unlocked = tmp_path / "guestslots-old"  # no lock file: an older version's, kept
    unlocked.mkdir()
    (tmp_path / "guestslots-a-file").write_text("not a directory")
    (tmp_path / "other").mkdir()
    assert remove_stale(str(tmp_path)) == [str(left)]
    assert os.path.isdir(live.path)
    assert (tmp_path / "other").is_dir() and (tmp_path / "guestslots-a-file").exists()
    assert unlocked.is_dir()
    live.remove()
    live.remove()  # idempotent
    assert not os.path.exists(live.path)
    assert remove_stale(str(tmp_path)) == []


def test_a_directory_being_made_is_never_seen_under_its_public_name(tmp_path: Path) -> None:
    made = WorkDir(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.path.basename(made.path)]
    made.remove()


def test_a_directory_lives_while_anyone_holds_it(tmp_path: Path) -> None:
    """A detached QEMU inherits the lock, an attaching process joins it: the
    directory is stale only once every holder is gone."""
    made = WorkDir(str(tmp_path))
    joined = WorkDir.join(made.path)
    inherited = os.dup(made.lock_fd)  # as QEMU inherits it: the same open file
    made.release()
    assert remove_stale(str(tmp_path)) == [] and os.path.isdir(made.path)
    joined.release()
    assert remove_stale(str(tmp_path)) == [] and os.path.isdir(made.path)
    os.close(inherited)
    assert remove_stale(str(tmp_path)) == [made.path]
    with pytest.raises(OSError):
        WorkDir.join(made.path)  # gone


def test_a_keeper_holds_a_directory_while_its_process_runs(tmp_path: Path) -> None:
    """A detached libvirt appliance's QEMU is libvirt's child, not ours: a keeper holds
    its directory until that QEMU exits (here a sleep stands for it)."""
    made = WorkDir(str(tmp_path))
    qemu = subprocess.Popen(["sleep", "600"])
    try:
        made.keep_while(qemu.pid)
        made.release()  # its owner is gone
        assert remove_stale(str(tmp_path)) == [] and os.path.isdir(made.path)
    finally:
        qemu.kill()
        qemu.wait()
    # the keeper exits within 0.2 s of its process: an exclusive lock waits for it
    fd = os.open(os.path.join(made.path, "lock"), os.O_RDWR)
    waiter = threading.Thread(target=fcntl.flock, args=(fd, fcntl.LOCK_EX), daemon=True)
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive(), "the keeper still held the directory 10 s after its " \
                                  "process exited"
    os.close(fd)
    assert remove_stale(str(tmp_path)) == [made.path]
    assert not os.path.exists(made.path)
