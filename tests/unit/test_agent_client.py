"""The agent channel stays in step through timeouts, half frames and abandoned transfers.

The peer here is the test itself, writing frames into one end of a socket pair: this
tests the client's framing logic only (the real agent is tested on the appliance).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest

from guestslots import wire
from guestslots.agent_client import AgentClient
from guestslots.errors import AgentTimeout, ChannelBroken


@pytest.fixture
def pair() -> Iterator[tuple[AgentClient, socket.socket]]:
    host, agent = socket.socketpair()
    yield AgentClient(host, lambda: "test peer", timeout=0.2), agent
    host.close()
    agent.close()


def reply(call_id: int, result: object) -> bytes:
    return wire.encode_message({"id": call_id, "ok": result})


def requests(agent: socket.socket) -> list[dict[str, object]]:
    """The requests the client sent so far (messages only)."""
    agent.setblocking(False)
    data = b""
    while True:
        try:
            chunk = agent.recv(65536)
        except BlockingIOError:
            break
        data += chunk
    agent.setblocking(True)
    out = []
    while data:
        kind, length = wire.decode_header(data[: wire.HEADER.size])
        payload = data[wire.HEADER.size : wire.HEADER.size + length]
        data = data[wire.HEADER.size + length :]
        if kind == wire.MSG:
            out.append(json.loads(payload))
    return out


def test_a_timeout_in_the_middle_of_a_frame_leaves_the_rest_for_the_next_call(
    pair: tuple[AgentClient, socket.socket],
) -> None:
    client, agent = pair
    frame = reply(1, "first")
    agent.sendall(frame[:3])  # half a header, then the agent stalls
    with pytest.raises(AgentTimeout):
        client.call("ping")
    agent.sendall(frame[3:] + reply(2, "second"))
    assert client.call("ping") == "second"  # the late answer to call 1 is skipped


def test_an_abandoned_downloads_data_never_reaches_the_next_download(
    pair: tuple[AgentClient, socket.socket],
) -> None:
    client, agent = pair
    agent.sendall(wire.encode(wire.DATA, b"old-1"))
    first = io.BytesIO()
    with pytest.raises(AgentTimeout):
        client.download("download", first, path="/a")
    assert first.getvalue() == b"old-1"
    assert [r["call"] for r in requests(agent)] == ["download"]
    # the abandoned download goes on until the agent sees the cancel: more of its data,
    # its end and its reply come first, then the new download's
    agent.sendall(wire.encode(wire.DATA, b"old-2") + wire.encode(wire.END)
                  + wire.encode_message({"id": 1, "error": {"message": "cancelled",
                                                            "errno": 125}})
                  + wire.encode(wire.DATA, b"new") + wire.encode(wire.END) + reply(2, 3))
    second = io.BytesIO()
    assert client.download("download", second, path="/b") == 3
    assert second.getvalue() == b"new"


def test_garbage_from_the_agent_breaks_the_channel_for_good(
    pair: tuple[AgentClient, socket.socket],
) -> None:
    client, agent = pair
    agent.sendall(b"\x00\x00\x00\x01Z!")  # kind 'Z' is no frame kind
    with pytest.raises(ChannelBroken, match="protocol error"):
        client.call("ping")
    with pytest.raises(ChannelBroken, match="launch another"):
        client.call("ping")


def test_a_switch_keeps_what_the_old_connection_still_held(
    pair: tuple[AgentClient, socket.socket],
) -> None:
    """After a migration the client carries on over a new connection: a late reply and
    half a frame still in the old one are read first, so the frame completed on the new
    connection is whole and the stale reply is skipped, not taken for the next."""
    client, agent = pair
    with pytest.raises(AgentTimeout):
        client.call("ping")  # id 1: given up on; its reply comes late
    second = reply(2, "second")
    agent.sendall(reply(1, "late") + second[:5])
    host2, agent2 = socket.socketpair()
    try:
        client.switch(host2)
        agent2.sendall(second[5:])
        assert client.call("ping") == "second"
        assert [r["id"] for r in requests(agent2)] == [2]  # the request went the new way
    finally:
        host2.close()
        agent2.close()
