"""Choosing the accelerator: a request wins; otherwise a probe, cached per host boot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from guestslots.host import accel


def test_request_and_environment_win_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*_: object) -> str:
        raise AssertionError("probed although a choice was requested")

    monkeypatch.setattr(accel, "probe_kvm", no_probe)
    assert accel.choose_accel("q", "k", "tcg") == accel.AccelChoice(
        "tcg", "requested by accel=", True)
    monkeypatch.setenv(accel.ENV_VAR, "KVM")
    choice = accel.choose_accel("q", "k")
    assert (choice.accel, choice.requested) == ("kvm", True)
    assert "$GUESTSLOTS_ACCEL" in choice.reason
    with pytest.raises(ValueError, match="accel must be one of"):
        accel.choose_accel("q", "k", "xen")


def test_probe_verdict_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not Path("/dev/kvm").exists():
        pytest.skip("no /dev/kvm: the choice is made without a probe")
    monkeypatch.delenv(accel.ENV_VAR, raising=False)
    monkeypatch.setenv("GUESTSLOTS_CACHE_DIR", str(tmp_path))
    calls = []

    def probe(qemu: str, kernel: str) -> str:
        calls.append((qemu, kernel))
        return "KVM probe failed (timed out after 10 s)"

    monkeypatch.setattr(accel, "probe_kvm", probe)
    monkeypatch.setattr(os, "access", lambda *_: True)
    first = accel.choose_accel(sys.executable, __file__)
    second = accel.choose_accel(sys.executable, __file__)
    assert first.accel == second.accel == "tcg"
    assert "KVM does not run" in first.reason and "cached" in second.reason
    assert len(calls) == 1


def test_two_qemus_used_in_turn_probe_once_each(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """The suite runs two QEMUs side by side: each keeps its verdict (one cached verdict
    made each switch probe again, a whole timeout where KVM hangs)."""
    monkeypatch.setattr(os.path, "exists", lambda path: True)
    monkeypatch.delenv(accel.ENV_VAR, raising=False)
    monkeypatch.setenv("GUESTSLOTS_CACHE_DIR", str(tmp_path))
    calls = []

    def probe(qemu: str, kernel: str) -> str:
        calls.append(qemu)
        return "KVM probe failed (timed out after 10 s)"

    monkeypatch.setattr(accel, "probe_kvm", probe)
    monkeypatch.setattr(os, "access", lambda *_: True)
    other = tmp_path / "other-qemu"
    other.write_text("")
    for _ in range(2):
        for qemu in (sys.executable, str(other)):
            assert accel.choose_accel(qemu, __file__).accel == "tcg"
            assert accel.expected_accel(qemu) == "tcg"
    assert calls == [sys.executable, str(other)]
