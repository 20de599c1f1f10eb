"""The libvirt backend's local helpers: which URIs are an embedded driver's, and how a
detached domain's QEMU is found among this host's processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("libvirt")

from guestslots.backends.libvirt import _find_qemu
from guestslots.backends.libvirt.connection import embedded


def test_embedded_uris_are_told_from_daemons() -> None:
    for uri in ("embed", "qemu:///embed?root=/tmp/x", "qemu:///embed"):
        assert embedded(uri), uri
    for uri in ("qemu:///system", "qemu:///session", "qemu+unix:///system?socket=/a/embed",
                "qemu+ssh://embed/system"):
        assert not embedded(uri), uri


def test_a_domains_qemu_is_found_by_its_name_and_work_directory(tmp_path: Path) -> None:
    # a stand-in with libvirt's arguments: -name guest=NAME,debug-threads=on, and a file
    # in the work directory
    work = str(tmp_path / "guestslots-w")
    qemu = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "-name",
                             "guest=guestslots-abc-0,debug-threads=on",
                             f"{work}/root.qcow2"], stdin=subprocess.PIPE)
    try:
        assert _find_qemu("guestslots-abc-0", work) == qemu.pid
        assert _find_qemu("guestslots-abc-1", work) is None  # another domain
        assert _find_qemu("guestslots-abc", work) is None  # a prefix of its name is not it
        assert _find_qemu("guestslots-abc-0", str(tmp_path / "other")) is None
    finally:
        qemu.kill()
        qemu.wait()
    assert _find_qemu("guestslots-abc-0", work) is None  # gone
