"""Pure helpers of the appliance agent (it runs in the VM; these need no VM)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
from types import ModuleType

import pytest

from guestslots import build, wire


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    """The agent file (package data, not a module of the package), loaded by path."""
    sys.modules.setdefault("wire", wire)  # the agent imports it as a top-level module
    path = importlib.resources.files(build.APPLIANCE_PACKAGE) / "agent.py"
    spec = importlib.util.spec_from_file_location("guestslots_agent", str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("dm", "parts"), [
    ("vg-root", ["vg", "root"]),
    ("my--vg-lv--1", ["my-vg", "lv-1"]),
    ("vg---x", ["vg-", "x"]),
    ("vg-pool-tpool", ["vg", "pool", "tpool"]),
    ("luks", ["luks"]),
])
def test_split_dm_name(agent: ModuleType, dm: str, parts: list[str]) -> None:
    assert agent.split_dm_name(dm) == parts


def test_dashed_uuid_is_lvms_printed_form(agent: ModuleType) -> None:
    raw = "f4SbcRXPVxLyo7M13sbNz13Dc9LbBKnI"
    assert agent.dashed_uuid(raw) == "f4SbcR-XPVx-Lyo7-M13s-bNz1-3Dc9-LbBKnI"
    assert agent.dashed_uuid(raw).replace("-", "") == raw
