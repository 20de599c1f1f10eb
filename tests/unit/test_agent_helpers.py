"""Pure helpers of the appliance agent (it runs in the VM; these need no VM)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

from guestslots import wire


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    """The agent's block-device helpers, imported from the package data (the agent
    imports :mod:`wire` as a top-level module, as it finds it in the appliance)."""
    sys.modules.setdefault("wire", wire)
    return importlib.import_module("guestslots._appliance.agent.blockdev")


@pytest.mark.parametrize(("dm", "parts"), [
    ("vg-root", ["vg", "root"]),
    ("my--vg-lv--1", ["my-vg", "lv-1"]),
    ("vg---x", ["vg-", "x"]),
    ("vg-pool-tpool", ["vg", "pool", "tpool"]),
    ("luks", ["luks"]),
])
def test_split_dm_name(dm: str, parts: list[str]) -> None:
    assert wire.split_dm_name(dm) == parts


def test_dashed_uuid_is_lvms_printed_form(agent: ModuleType) -> None:
    raw = "f4SbcRXPVxLyo7M13sbNz13Dc9LbBKnI"
    assert agent.dashed_uuid(raw) == "f4SbcR-XPVx-Lyo7-M13s-bNz1-3Dc9-LbBKnI"
    assert agent.dashed_uuid(raw).replace("-", "") == raw
