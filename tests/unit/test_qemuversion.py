"""The version a QEMU binary reports, asked once per binary file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guestslots.host import qemuversion
from guestslots.host.proc import CommandError


def fake_qemu(path: Path, says: str) -> str:
    count = path.with_suffix(".count")
    path.write_text(f"#!/bin/sh\necho x >> {count}\necho '{says}'\n")
    path.chmod(0o755)
    return str(path)


def test_asked_once_per_binary_file_and_again_when_it_changes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUESTSLOTS_CACHE_DIR", str(tmp_path / "cache"))
    old = fake_qemu(tmp_path / "old", "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)")
    new = fake_qemu(tmp_path / "new", "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)")
    for _ in range(2):
        assert qemuversion.reported_version(old) == "7.2.22"
        assert qemuversion.reported_version(new) == "10.0.2"
    assert (tmp_path / "old.count").read_text() == "x\n"
    assert (tmp_path / "new.count").read_text() == "x\n"
    # the same path, another binary (a wrapper rewritten for another QEMU): asked again
    fake_qemu(tmp_path / "old", "QEMU emulator version 8.2.2")
    os.utime(old, ns=(1, 1))
    assert qemuversion.reported_version(old) == "8.2.2"


def test_a_binary_that_says_no_version_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("GUESTSLOTS_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CommandError, match="no QEMU version"):
        qemuversion.reported_version(fake_qemu(tmp_path / "q", "hello"))
