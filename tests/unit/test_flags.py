"""LIVE, CONFIG and CURRENT, as the vCPU seed (libvirt's virDomainModificationImpact) says."""

from __future__ import annotations

import pytest

from guestslots.model.flags import CONFIG, CURRENT, LIVE, parse, resolve


def test_current_is_live_when_running_and_config_otherwise() -> None:
    assert resolve(CURRENT, running=True) == LIVE
    assert resolve(CURRENT, running=False) == CONFIG


def test_explicit_flags_stand_as_given() -> None:
    for running in (True, False):
        assert resolve(CONFIG, running) == CONFIG
    assert resolve(LIVE, True) == LIVE
    assert resolve(LIVE | CONFIG, True) == LIVE | CONFIG


@pytest.mark.parametrize("flags", [LIVE, LIVE | CONFIG])
def test_live_needs_a_running_appliance(flags: int) -> None:
    with pytest.raises(ValueError, match="LIVE needs a running appliance"):
        resolve(flags, running=False)


@pytest.mark.parametrize("flags", [4, -1, 8 | 1, True, "live"])
def test_anything_else_is_refused(flags: object) -> None:
    with pytest.raises(ValueError, match="flags must be"):
        resolve(flags, running=True)  # type: ignore[arg-type]


def test_libvirts_values() -> None:
    assert (int(CURRENT), int(LIVE), int(CONFIG)) == (0, 1, 2)


def test_parse() -> None:
    assert parse("live") == LIVE
    assert parse("LIVE|config") == LIVE | CONFIG
    assert parse("config,live") == LIVE | CONFIG
    assert parse("current") == CURRENT
    with pytest.raises(ValueError, match="unknown flag"):
        parse("affect")
