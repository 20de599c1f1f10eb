"""Running one guestfish-style script through guestslots and comparing it with what
libguestfs answered (:func:`guestslots.testing.peer.calls`)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from guestslots import Appliance, GuestslotsError
from guestslots.testing import peer

#: libguestfs's schema of virt-inspector's document (guestfs-tools).
INSPECTOR_RNG = Path("/usr/share/doc/guestfs-tools/virt-inspector.rng.gz")


def run_ours(app: Appliance, script: list[list[Any]]) -> list[Any]:
    """*script*'s calls on *app*, each ``["ok", value]`` or ``["error", message]`` as
    :func:`peer.calls` gives them (a call's last argument, if a dict, is its keyword
    arguments; ``["snapshot", dir]`` is :func:`peer.snapshot_of`)."""
    out: list[Any] = []
    for name, *args in script:
        kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
        try:
            value = (peer.snapshot_of(app, args[0]) if name == "snapshot"
                     else getattr(app, name)(*args, **kwargs))
            out.append(["ok", peer._plain(value)])
        except GuestslotsError as e:
            out.append(["error", str(e)])
    return out


#: Calls whose answer is a list in no promised order: LVM's reports (``pvs``...) and
#: md's device list come in the order the kernel or LVM found things, which differs
#: from run to run of the same tool (libguestfs itself answered ``pvs`` in both orders).
UNORDERED = frozenset({"pvs", "vgs", "lvs", "list_md_devices"})


def same(ours: list[Any], theirs: list[Any], script: list[list[Any]]) -> None:
    """Every call succeeded or failed on both, and where it succeeded, gave the same
    (for :data:`UNORDERED` calls, the same elements)."""
    for call, mine, peers in zip(script, ours, theirs, strict=True):
        assert mine[0] == peers[0], f"{call}: guestslots {mine}, libguestfs {peers}"
        if mine[0] != "ok":
            continue
        if call[0] in UNORDERED and isinstance(mine[1], list) and isinstance(peers[1], list):
            assert sorted(map(str, mine[1])) == sorted(map(str, peers[1])), \
                f"{call}: guestslots {mine[1]!r}, libguestfs {peers[1]!r}"
        else:
            assert mine[1] == peers[1], f"{call}: guestslots {mine[1]!r}, libguestfs {peers[1]!r}"


def same_xml_as_virt_inspector(image: Path) -> str:
    """``guestslots inspect --xml IMAGE``, checked to be virt-inspector's document for
    the same image, byte for byte, and valid by libguestfs's schema; the document."""
    if shutil.which("virt-inspector") is None or not INSPECTOR_RNG.exists():
        pytest.skip("virt-inspector (guestfs-tools, ./tools/setup) is not installed")
    ours = subprocess.run([sys.executable, "-m", "guestslots.cli", "inspect", "--xml", image],
                          capture_output=True, text=True, timeout=300, check=False)
    assert ours.returncode == 0, ours.stderr
    env = dict(os.environ, LIBGUESTFS_BACKEND="direct", LIBGUESTFS_BACKEND_SETTINGS="force_tcg")
    theirs = subprocess.run(["virt-inspector", "--format=raw", "-a", image], env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout
    etree = pytest.importorskip("lxml.etree")
    schema = etree.RelaxNG(etree.fromstring(gzip.decompress(INSPECTOR_RNG.read_bytes())))
    assert schema.validate(etree.fromstring(ours.stdout.encode())), schema.error_log
    return ours.stdout
