"""Saved appliance states: boot once, then every launch restores in under a second.

An appliance with no slot disks attached has one device layout whatever the
slot count (slots are hotplugged), so one booted, idle appliance can be saved
and restored for every later launch.  A restore needs exactly the same
devices, the same QEMU and the same disk contents as at the save, so a state
is filed under a key hashed from all of them: the backend's layout key (for
QEMU: the command line with its per-instance paths blanked, and the QEMU
binary) and the appliance image's key.

A state directory holds ``state`` (QEMU's migration stream), ``root.qcow2``
(the root overlay as it was at the save, the backing file of every restored
appliance's own overlay), for the QEMU backend ``ram`` (the guest's RAM, which
every restored appliance maps copy-on-write, so it is never changed in place)
and ``meta.json``, written last; a directory without a ``meta.json`` that
matches is not a state.  States are published by a rename
under a lock, so concurrent launches never see half of one.

``meta.json`` holds the SHA-256 of each file.  They are checked against it
before the first restore, and again whenever either file's identity (inode,
size, mtime, ctime) changes; ``verified`` records the identities last checked,
so an unchanged state costs no hashing per launch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_root, mark_used

#: Bumped when what a state directory holds changes.
FORMAT = 3
#: The backend's saved VM state, and the root overlay as it was at the save.
STATE_FILE = "state"
ROOT_FILE = "root.qcow2"
#: The guest's RAM, where the backend keeps it apart from its state (QEMU does).
RAM_FILE = "ram"


@dataclass(frozen=True)
class SavedState:
    """A published saved state."""

    key: str
    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def root(self) -> Path:
        return self.directory / ROOT_FILE

    @property
    def ram(self) -> Path:
        return self.directory / RAM_FILE

    @property
    def meta(self) -> Path:
        return self.directory / "meta.json"

    @property
    def verified(self) -> Path:
        return self.directory / "verified"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]



def state_key(layout_key: str, image_key: str) -> str:
    """The key of the saved state that a VM may restore: its backend's *layout_key*
    (what the restore side's devices, binary and settings must match) and the
    appliance image's key."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, image_key, layout_key]).encode())
    return h.hexdigest()[:20]


def _directory(key: str) -> Path:
    return cache_root() / f"state-{key}"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "state.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def find(key: str) -> SavedState | None:
    """The published state for *key*, if there is one (see :func:`check` before use)."""
    saved = SavedState(key, _directory(key))
    if not saved.meta.exists():
        return None
    mark_used(saved.directory)
    return saved


def check(saved: SavedState) -> str:
    """Return why *saved* must not be restored (stale, incomplete, corrupt), or ``""``."""
    try:
        meta = json.loads(saved.meta.read_text())
        if meta.get("key") != saved.key or meta.get("format") != FORMAT:
            return "it was saved for another configuration"
        files = {"state": saved.state, "root": saved.root}
        if "ram_sha256" in meta:
            files["ram"] = saved.ram
        identities = {name: _identity(path) for name, path in files.items()}
        with contextlib.suppress(OSError, ValueError):
            if json.loads(saved.verified.read_text()) == identities:
                return ""
        for name, path in files.items():
            if identities[name][1] != meta[f"{name}_size"]:
                return f"{path.name} has the wrong size (truncated?)"
            if _sha256(path) != meta[f"{name}_sha256"]:
                return f"{path.name} does not match its checksum (corrupt)"
        saved.verified.write_text(json.dumps(identities))
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"it cannot be read ({e})"
    return ""


def staging(key: str) -> Path:
    """A fresh private directory to save a state into before :func:`publish`."""
    path = cache_root() / f"saving-{key}-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir(parents=True)
    return path


def publish(key: str, staged: Path, backend: str = "") -> SavedState:
    """Make the state saved in *staged* (by *backend*) the state for *key* (unless one
    appeared meanwhile)."""
    meta: dict[str, object] = {"key": key, "format": FORMAT, "saved_at": time.time(),
                               "backend": backend}
    identities = {}
    for name, file in (("state", STATE_FILE), ("root", ROOT_FILE), ("ram", RAM_FILE)):
        if name == "ram" and not (staged / file).exists():
            continue
        meta[f"{name}_size"] = (staged / file).stat().st_size
        meta[f"{name}_sha256"] = _sha256(staged / file)
        identities[name] = _identity(staged / file)
    (staged / "meta.json").write_text(json.dumps(meta))
    # just hashed: the first restore need not hash them again (a rename keeps identities)
    (staged / "verified").write_text(json.dumps(identities))
    with _locked():
        existing = find(key)
        if existing is not None and not check(existing):
            shutil.rmtree(staged, ignore_errors=True)
            return existing
        final = _directory(key)
        shutil.rmtree(final, ignore_errors=True)
        staged.rename(final)
    return SavedState(key, final)


def discard(key: str) -> None:
    """Remove the state for *key* (stale or corrupt).  Running appliances keep their open files."""
    with _locked():
        shutil.rmtree(_directory(key), ignore_errors=True)
