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
