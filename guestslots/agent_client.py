"""The host side of the agent channel: framed calls, streamed transfers, timeouts.

One call is in flight at a time (a lock serialises callers).  The channel
never falls out of step:

- Bytes are read into a buffer that outlives a call, so a timeout in the
  middle of a frame leaves the rest of that frame for the next call to read,
  instead of making it parse the middle of a frame as a header.
- Every reply carries the id of its request.  A call that gave up (a
  timeout, a failing sink) is remembered; until its reply has come, data
  frames still belong to it and are dropped, so a later download never
  receives another call's bytes.  The agent answers calls in order, so once
  the older replies are in, what follows is the current call's.
- A download the host gives up on is cancelled; an upload always ends with
  an end or cancel frame.  Only a frame that could not be sent whole (the
  agent stopped reading) leaves the channel unusable: the client then says
  so on every call (:class:`ChannelBroken`) rather than guess.

Transfers time out when *idle* (no frame for ``timeout`` seconds), not by
their total length; other calls by their whole duration.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from . import wire
from .errors import AgentError, AgentTimeout, ChannelBroken, ChannelClosed, GuestOSError

log = logging.getLogger(__name__)

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
        self._buf = bytearray()
        #: Calls whose reply has not been read yet (given up on by the host).
        self._unanswered: set[int] = set()
        self._broken = ""
        self.hello: dict[str, Any] = {}

    def close(self) -> None:
        """Close the channel (the VM is gone, or another channel replaces this one)."""
        self.sock.close()

    def switch(self, sock: socket.socket) -> None:
        """Carry on over *sock*, a new connection to the same agent (its VM moved to
        another QEMU process, and the old one has exited): what the old connection
        still holds is read first, so no byte of a reply is lost or left behind."""
        with self._lock:
            old = self.sock
            old.setblocking(False)
            try:
                while chunk := old.recv(1 << 20):
                    self._buf += chunk
            except OSError:  # nothing more (BlockingIOError), or reset: all read
                pass
            old.close()
            self.sock = sock

    # ---- frames

    def _fill(self, n: int, deadline: float, call: str) -> None:
        """Read until the buffer holds at least *n* bytes, or the deadline passes."""
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentTimeout(call, "the appliance did not answer in time")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                raise AgentTimeout(call, "the appliance did not answer in time")
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError as e:
                raise ChannelClosed(call, f"channel error {e}; {self._why_closed()}") from None
            if not chunk:
                raise ChannelClosed(call, f"the appliance channel closed; {self._why_closed()}")
            self._buf += chunk

    def _recv_frame(self, deadline: float, call: str) -> tuple[int, bytes]:
        """The next whole frame; bytes of a frame cut short by a timeout stay buffered."""
        self._fill(wire.HEADER.size, deadline, call)
        try:
            kind, length = wire.decode_header(bytes(self._buf[: wire.HEADER.size]))
        except wire.ProtocolError as e:
            self._broken = f"protocol error: {e}"
            raise ChannelBroken(call, self._broken) from None
        end = wire.HEADER.size + length
        self._fill(end, deadline, call)
        payload = bytes(self._buf[wire.HEADER.size : end])
        del self._buf[:end]
        return kind, payload

    def _send(self, frame: bytes, call: str, timeout: float | None = None) -> None:
        """Send one whole frame; one that cannot be sent whole breaks the channel."""
        self.sock.settimeout(timeout or self.timeout)
        try:
            self.sock.sendall(frame)
        except TimeoutError:
            self._broken = f"a frame of {call} could not be sent (the appliance stopped reading)"
            raise ChannelBroken(call, self._broken) from None
        except OSError as e:
            raise ChannelClosed(call, f"cannot send ({e}); {self._why_closed()}") from None
        finally:
            self.sock.settimeout(None)

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
        timeout: float,
        on_data: Callable[[bytes], None] | None = None,
        idle: bool = False,
    ) -> Any:
        """Read frames until the reply to *call_id*; its data frames go to *on_data*.

        With *idle*, the deadline moves on with every frame of this call (a
        transfer times out when it stalls, not by its length).
        """
        deadline = time.monotonic() + timeout
        try:
            while True:
                kind, payload = self._recv_frame(deadline, call)
                if kind == wire.DATA:
                    if self._unanswered:
                        continue  # still an abandoned call's bytes
                    if on_data is not None:
                        on_data(payload)
                    if idle:
                        deadline = time.monotonic() + timeout
                    continue
                if kind != wire.MSG:
                    continue
                msg = wire.decode_message(payload)
                reply_id = msg.get("id")
                if reply_id != call_id:
                    # an abandoned call's reply, or a hello after the agent saw us reconnect
                    self._unanswered.discard(reply_id)
                    continue
                if "error" in msg:
                    err = msg["error"]
                    message = str(err.get("message", "unknown error"))
                    if err.get("errno"):
                        raise GuestOSError(call, message, int(err["errno"]))
                    raise AgentError(call, message)
                return msg.get("ok")
        except (AgentTimeout, ChannelBroken):
            self._unanswered.add(call_id)
            raise

    def _request(self, call: str, wait_for: float | None, args: dict[str, Any]) -> int:
        """Send the request of *call* (the lock is held); return its id."""
        if self._broken:
            raise ChannelBroken(call, f"the channel to the appliance is unusable since "
                                f"{self._broken}; shut the appliance down and launch another")
        call_id = next(self._ids)
        # "wait": how long this side waits (for silence, in a stream), so that the
        # agent can cut loose a call stuck in a FUSE daemon once it is given up on
        self._send(wire.encode_message({"id": call_id, "call": call, "args": args,
                                        "wait": wait_for or self.timeout}), call, wait_for)
        return call_id

    def call(self, call: str, *, wait_for: float | None = None, **args: Any) -> Any:
        """Run *call* in the agent with keyword *args* (passed on whole, ``timeout``
        included); wait *wait_for* seconds (default: the client's timeout) for the reply."""
        with self._lock:
            call_id = self._request(call, wait_for, args)
            return self._reply(call_id, call, wait_for or self.timeout)

    def download(
        self,
        call: str,
        sink: IO[bytes],
        wait_for: float | None = None,
        progress: Callable[[int], None] | None = None,
        **args: Any,
    ) -> Any:
        """Run a streaming *call*; the file's bytes are written to *sink*.

        *progress* is told the size of each chunk written.  The call times out
        only when no frame comes for *wait_for* seconds.  If *sink* fails, the
        transfer is cancelled and the sink's error raised.
        """
        with self._lock:
            call_id = self._request(call, wait_for, args)
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
                result = self._reply(call_id, call, wait_for or self.timeout, on_data, idle=True)
            except AgentTimeout:
                self._send(wire.encode(wire.CANCEL), call)  # the agent stops streaming
                raise
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
        wait_for: float | None = None,
        progress: Callable[[int], None] | None = None,
        **args: Any,
    ) -> Any:
        """Run a streaming *call*, sending the bytes of *source* as its data.

        *progress* is told the size of each chunk sent.  Each chunk may take
        *wait_for* seconds to be taken (an idle timeout); if *source* fails, the
        transfer is cancelled and the source's error raised.
        """
        with self._lock:
            call_id = self._request(call, wait_for, args)
            try:
                while chunk := source.read(wire.CHUNK):
                    self._send(wire.encode(wire.DATA, chunk), call, wait_for)
                    if progress is not None:
                        progress(len(chunk))
            except ChannelBroken:
                raise
            except BaseException:
                self._send(wire.encode(wire.CANCEL), call, wait_for)
                self._unanswered.add(call_id)  # its "cancelled" reply follows
                raise
            self._send(wire.encode(wire.END), call, wait_for)
            return self._reply(call_id, call, wait_for or self.timeout)
