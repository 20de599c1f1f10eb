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


@pytest.fixture(scope="module")
def tree() -> ModuleType:
    sys.modules.setdefault("wire", wire)
    return importlib.import_module("guestslots._appliance.agent.tree")


@pytest.mark.parametrize(("bre", "python"), [
    ("a+b", r"a\+b"),                    # literal in a BRE
    (r"a\+b", "a+b"),                    # GNU's \+ is the operator
    (r"line \(3\|7\):", "line (3|7):"),
    ("x{2}", r"x\{2\}"),
    (r"x\{2\}", "x{2}"),
    (r"a\.b", r"a\.b"),                  # other escapes stay
    ("^[a-z]*$", "^[a-z]*$"),
])
def test_basic_regular_expressions_become_python_ones(tree: ModuleType, bre: str,
                                                      python: str) -> None:
    assert tree.bre_to_python(bre) == python


def test_braces_expand_in_order_as_glob_brace_does(tree: ModuleType) -> None:
    assert tree._braces("/etc/{b,a}*") == ["/etc/b*", "/etc/a*"]
    assert tree._braces("/{x,y}/{1,2}") == ["/x/1", "/x/2", "/y/1", "/y/2"]
    assert tree._braces("/plain") == ["/plain"]
    assert tree._braces("/{one}") == ["/{one}"]  # no comma: not a brace expression


def test_hexdump_is_hexdump_c(tree: ModuleType) -> None:
    assert tree.hexdump(b"") == ""
    assert tree.hexdump(b"hi\n") == (
        "00000000  68 69 0a                                          |hi.|\n00000003\n")
    # identical full lines are squeezed to one "*"
    out = tree.hexdump(bytes(48) + b"x").splitlines()
    assert out == ["00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|",
                   "*",
                   "00000030  78                                                |x|",
                   "00000031"]
