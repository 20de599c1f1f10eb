"""Host and agent agree on the calls: the agent answers exactly wire.CALLS, and the host
makes no call outside it."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from guestslots import wire

ROOT = Path(__file__).resolve().parents[2]


def test_the_agent_answers_exactly_the_shared_calls() -> None:
    sys.modules.setdefault("wire", wire)  # as the agent finds it in the appliance
    agent = importlib.import_module("guestslots._appliance.agent.__main__").Agent
    answered = {name.removeprefix("call_") for name in dir(agent) if name.startswith("call_")}
    assert answered == wire.CALLS


def test_the_host_makes_only_shared_calls() -> None:
    pattern = re.compile(r"(?:_call|\.call|\.download|\.upload|_agent_for)\(\"([a-z_]+)\"")
    made = {m for path in (ROOT / "guestslots").rglob("*.py")
            for m in pattern.findall(path.read_text())}
    assert made, "the pattern found no calls at all"
    assert made <= wire.CALLS, made - wire.CALLS


def test_fs_attributes_are_read_in_the_agents_order() -> None:
    from guestslots.guest.fs import Attrs

    assert Attrs._fields == wire.STAT_FIELDS


def test_checksum_lines_are_escaped_as_md5sum_escapes_them() -> None:
    from guestslots.guest.files import _sum_line

    assert _sum_line("ab", "./plain") == b"ab  ./plain\n"
    assert _sum_line("ab", "./odd\nname") == b"\\ab  ./odd\\nname\n"
    assert _sum_line("ab", "./back\\slash") == b"\\ab  ./back\\\\slash\n"
    assert _sum_line("ab", "./caf\udce9") == b"ab  ./caf\xe9\n"  # not UTF-8: bytes kept
