"""The host side of the agent channel: framed calls, streamed transfers, timeouts.

One call is in flight at a time (a lock serialises callers).  Every reply
carries the id of its request, so after a timeout or a cancelled transfer the
stale frames still in the channel are skipped by the next call instead of
being taken for its answer.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from . import wire
from .errors import AgentError, AgentTimeout, ChannelClosed, GuestOSError

#: Describes why the channel died (QEMU's exit status and log), for error messages.
DeathReport = Callable[[], str]


class AgentClient:
    """Calls into the appliance agent over its virtio-serial channel."""

    def __init__(self, sock: socket.socket, why_closed: DeathReport, timeout: float = 120.0):
        self.sock = sock
        self.timeout = timeout
        self._why_closed = why_closed
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.hello: dict[str, Any] = {}

    # ---- frames

    def _recv_exact(self, n: int, deadline: float, call: str) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentTimeout(call, "the appliance did not answer in time")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                raise AgentTimeout(call, "the appliance did not answer in time")
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except OSError as e:
                raise ChannelClosed(call, f"channel error {e}; {self._why_closed()}") from None
            if not chunk:
                raise ChannelClosed(call, f"the appliance channel closed; {self._why_closed()}")
            buf += chunk
        return bytes(buf)

    def _recv_frame(self, deadline: float, call: str) -> tuple[int, bytes]:
        try:
            kind, length = wire.decode_header(self._recv_exact(wire.HEADER.size, deadline, call))
        except wire.ProtocolError as e:
            raise AgentError(call, f"protocol error: {e}") from None
        return kind, self._recv_exact(length, deadline, call) if length else b""

    def _send(self, frame: bytes, call: str) -> None:
        try:
            self.sock.sendall(frame)
        except OSError as e:
            raise ChannelClosed(call, f"cannot send ({e}); {self._why_closed()}") from None

    # ---- the hello, and calls

    def wait_hello(self, timeout: float) -> dict[str, Any]:
        """Wait for the agent's announcement after boot."""
        deadline = time.monotonic() + timeout
        while True:
            kind, payload = self._recv_frame(deadline, "launch")
            if kind == wire.MSG:
                msg = wire.decode_message(payload)
                if msg.get("event") == "hello":
                    if msg.get("version") != wire.PROTOCOL_VERSION:
                        raise AgentError(
                            "launch",
                            f"agent speaks protocol {msg.get('version')}, "
                            f"expected {wire.PROTOCOL_VERSION}",
                        )
                    self.hello = msg
                    return msg

    def _reply(
        self,
        call_id: int,
        call: str,
        deadline: float,
        on_data: Callable[[bytes], None] | None = None,
    ) -> Any:
        """Read frames until the reply to *call_id*; data frames go to *on_data*."""
        while True:
            kind, payload = self._recv_frame(deadline, call)
            if kind == wire.DATA:
                if on_data is not None:
                    on_data(payload)
                continue
            if kind != wire.MSG:
                continue
            msg = wire.decode_message(payload)
            if msg.get("id") != call_id:
                continue  # a stale reply, or a hello after the agent saw us reconnect
            if "error" in msg:
                err = msg["error"]
                message = str(err.get("message", "unknown error"))
                if err.get("errno"):
                    raise GuestOSError(call, message, int(err["errno"]))
                raise AgentError(call, message)
            return msg.get("ok")

    def _request(self, call: str, timeout: float | None, args: dict[str, Any]) -> tuple[int, float]:
        """Send the request of *call* (the lock is held); return its id and deadline."""
        call_id = next(self._ids)
        deadline = time.monotonic() + (timeout or self.timeout)
        self._send(wire.encode_message({"id": call_id, "call": call, "args": args}), call)
        return call_id, deadline

    def call(self, call: str, timeout: float | None = None, **args: Any) -> Any:
        """Run *call* in the agent with keyword *args*; return its result."""
        with self._lock:
            call_id, deadline = self._request(call, timeout, args)
            return self._reply(call_id, call, deadline)

    def download(
        self,
        call: str,
        sink: IO[bytes],
        timeout: float | None = None,
        progress: Callable[[int], None] | None = None,
        **args: Any,
    ) -> Any:
        """Run a streaming *call*; the file's bytes are written to *sink*.

        *progress* is told the size of each chunk written.
        """
        with self._lock:
            call_id, deadline = self._request(call, timeout, args)
            failure: BaseException | None = None

            def on_data(chunk: bytes) -> None:
                nonlocal failure
                if failure is not None:
                    return
                try:
                    sink.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                except BaseException as e:  # stop the stream, keep the channel in step
                    failure = e
                    self._send(wire.encode(wire.CANCEL), call)

            try:
                result = self._reply(call_id, call, deadline, on_data)
            except GuestOSError:
                if failure is not None:
                    raise failure from None
                raise
            if failure is not None:
                raise failure
            return result

    def upload(
        self,
        call: str,
        source: IO[bytes],
        timeout: float | None = None,
        progress: Callable[[int], None] | None = None,
        **args: Any,
    ) -> Any:
        """Run a streaming *call*, sending the bytes of *source* as its data.

        *progress* is told the size of each chunk sent.
        """
        with self._lock:
            call_id, deadline = self._request(call, timeout, args)
            try:
                while chunk := source.read(wire.CHUNK):
                    self._send(wire.encode(wire.DATA, chunk), call)
                    if progress is not None:
                        progress(len(chunk))
            except OSError:
                self._send(wire.encode(wire.CANCEL), call)
                with contextlib.suppress(GuestOSError):
                    self._reply(call_id, call, deadline)
                raise
            self._send(wire.encode(wire.END), call)
            return self._reply(call_id, call, deadline)
