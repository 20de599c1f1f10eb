"""The wire format shared by host and agent."""

from __future__ import annotations

import pytest

from guestslots import wire


def test_message_roundtrip() -> None:
    frame = wire.encode_message({"id": 1, "call": "ls", "args": {"path": "/é"}})
    kind, length = wire.decode_header(frame[: wire.HEADER.size])
    assert kind == wire.MSG and length == len(frame) - wire.HEADER.size
    assert wire.decode_message(frame[wire.HEADER.size:])["args"] == {"path": "/é"}


def test_limits_and_garbage_are_refused() -> None:
    with pytest.raises(wire.ProtocolError, match="exceeds"):
        wire.encode(wire.DATA, b"x" * (wire.MAX_FRAME + 1))
    with pytest.raises(wire.ProtocolError, match="exceeds"):
        wire.decode_header(wire.HEADER.pack(wire.MAX_FRAME + 1, wire.DATA))
    with pytest.raises(wire.ProtocolError, match="unknown frame kind"):
        wire.decode_header(wire.HEADER.pack(1, ord("Z")))
    with pytest.raises(wire.ProtocolError, match="short"):
        wire.decode_header(b"\0\0")
    with pytest.raises(wire.ProtocolError, match="not JSON"):
        wire.decode_message(b"{nope")
    with pytest.raises(wire.ProtocolError, match="not a JSON object"):
        wire.decode_message(b"[1]")


def test_end_frame_is_empty() -> None:
    assert wire.encode(wire.END) == wire.HEADER.pack(0, wire.END)


def test_the_btrfsvol_rule_takes_the_shortest_prefix_that_names_a_device() -> None:
    """The one rule host and agent share; each side says what names a device (the
    agent: a block device node, so an LV's volume-group directory is passed over)."""
    nodes = {"/dev/sda2", "/dev/vg/root"}
    assert wire.split_btrfsvol("btrfsvol:/dev/sda2/home/alice", nodes.__contains__) == (
        "/dev/sda2", "home/alice")
    assert wire.split_btrfsvol("btrfsvol:/dev/vg/root/@", nodes.__contains__) == (
        "/dev/vg/root", "@")
    assert wire.split_btrfsvol("btrfsvol:/dev/sda2", nodes.__contains__) is None
    assert wire.split_btrfsvol("btrfsvol:/dev/sdz1/x", nodes.__contains__) is None
    assert wire.split_btrfsvol("/dev/sda2/home", nodes.__contains__) is None


def test_mountinfo_lines_are_parsed_and_unescaped() -> None:
    text = ("22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n"
            "41 29 8:1 /sub /sysroot/a\\040b rw - btrfs /dev/sda1 rw\n"
            "not a mountinfo line\n")
    assert wire.parse_mountinfo(text) == [
        wire.Mount("22", "0:21", "/", "/proc", "proc", "proc"),
        wire.Mount("41", "8:1", "/sub", "/sysroot/a b", "btrfs", "/dev/sda1"),
    ]
