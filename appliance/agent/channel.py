"""The agent's end of the channel: frames in and out, requests dispatched to ``call_*``
methods, file transfers streamed (see :mod:`wire`)."""

from __future__ import annotations

import errno
import os
import select
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import wire  # type: ignore[import-not-found]  # beside the agent in the appliance

from .common import (
    LINUX_REBOOT_CMD_POWER_OFF,
    Fail,
    libc,
    log,
)
from .state import AgentBase

#: Calls that change no device, so what libblkid found stays true across them: a
#: listing of filesystems and then the blkid of each (as inspection asks) probes
#: each device once.  Any other call forgets it first.
KEEPS_PROBES = frozenset({"list_filesystems", "blkid", "list_partitions", "mounts", "ping"})


class Channel(AgentBase):
    """The channel: frames in and out of the virtio-serial port, requests dispatched to
    ``call_*`` methods, transfers streamed."""

    def send(self, frame: bytes) -> None:
        self.watchdog.progress()
        view = memoryview(frame)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def send_message(self, obj: dict[str, Any]) -> None:
        self.send(wire.encode_message(obj))

    def read_exact(self, n: int) -> bytes | None:
        """*n* bytes from the port (None: the host went away).  The port gives at most
        one of its 4 KiB buffers per read, so a frame takes many reads: each goes
        straight into the frame's buffer, with no object made for it."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            count = os.readv(self.fd, [view[got:]])
            if not count:
                return None
            got += count
        return buf  # type: ignore[return-value]  # bytes-like; never changed after

    def read_frame(self) -> tuple[int, bytes] | None:
        if self.queued:
            return self.queued.popleft()
        return self.read_channel_frame()

    def read_channel_frame(self) -> tuple[int, bytes] | None:
        header = self.read_exact(wire.HEADER.size)
        if header is None:
            return None
        kind, length = wire.decode_header(header)
        payload = self.read_exact(length) if length else b""
        if payload is None:
            return None
        self.watchdog.progress()
        return kind, payload

    def wait_for_host(self) -> None:
        """The host went away (read() gave EOF): wait until it is back, then announce."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            events = poller.poll(1000)
            if events and not events[0][1] & select.POLLHUP:
                break
            time.sleep(0.05)  # POLLHUP is reported continuously while the host is away
        self.hello()

    def hello(self) -> None:
        self.send_message(
            {"event": "hello", "version": wire.PROTOCOL_VERSION, "kernel": os.uname().release}
        )

    def serve(self) -> None:
        self.hello()
        while True:
            frame = self.read_frame()
            if frame is None:
                self.wait_for_host()
                continue
            kind, payload = frame
            if kind != wire.MSG:
                continue  # a stray chunk of a cancelled transfer
            self.handle(wire.decode_message(payload))
            if self.powering_off:
                libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)

    def handle(self, msg: dict[str, Any]) -> None:
        call_id = msg.get("id")
        name = msg.get("call")
        args = msg.get("args") or {}
        fn = self.calls.get(str(name))
        wait = msg.get("wait")
        self.watchdog.begin(float(wait) if isinstance(wait, (int, float)) else None)
        if name not in KEEPS_PROBES:
            self.blkid.forget()
        try:
            if fn is None:
                raise Fail(f"unknown call {name!r}", errno.ENOSYS)
            result = fn(**args)
            reply: dict[str, Any] = {"id": call_id, "ok": result}
        except Fail as e:
            reply = {"id": call_id, "error": {"type": "Fail", "message": str(e), "errno": e.errno}}
        except OSError as e:
            where = f": {e.filename}" if e.filename is not None else ""
            reply = {
                "id": call_id,
                "error": {
                    "type": "OSError",
                    "errno": e.errno or 0,
                    "message": f"{e.strerror or e}{where}",
                },
            }
        except Exception as e:
            log(traceback.format_exc())
            reply = {
                "id": call_id,
                "error": {"type": type(e).__name__, "message": str(e), "errno": 0},
            }
        try:
            frame = wire.encode_message(reply)
        except wire.ProtocolError:  # an answer too large for one frame (a huge directory)
            frame = wire.encode_message({"id": call_id, "error": {
                "type": "Fail", "errno": errno.E2BIG,
                "message": f"{name}: the answer is larger than a message may be "
                           f"({wire.MAX_FRAME} bytes)"}})
        self.watchdog.end()
        self.send(frame)

    def send_file(self, fd: int, offset: int = 0, count: int | None = None) -> int:
        """Stream an open file from *offset* (at most *count* bytes) as D frames then E;
        stop early if the host cancels.  Returns the bytes sent."""

        def chunks() -> Iterator[bytes]:
            sent = 0
            while count is None or sent < count:
                want = wire.CHUNK if count is None else min(wire.CHUNK, count - sent)
                chunk = os.pread(fd, want, offset + sent)
                if not chunk:
                    return
                sent += len(chunk)
                yield chunk

        try:
            return self.send_stream(chunks())
        finally:
            os.close(fd)

    def send_stream(self, chunks: Iterable[bytes]) -> int:
        """Stream *chunks* as D frames (at most ``wire.CHUNK`` each) then E; stop early if
        the host cancels.  Returns the bytes sent."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        sent = 0
        for chunk in chunks:
            for start in range(0, len(chunk), wire.CHUNK):
                piece = chunk[start:start + wire.CHUNK]
                self.send(wire.encode(wire.DATA, piece))
                sent += len(piece)
                if poller.poll(0):
                    frame = self.read_channel_frame()
                    if frame is not None and frame[0] == wire.CANCEL:
                        self.send(wire.encode(wire.END))
                        raise Fail("cancelled by the host", errno.ECANCELED)
                    if frame is not None and frame[0] == wire.MSG:
                        self.queued.append(frame)  # a request: never dropped, served next
        self.send(wire.encode(wire.END))
        return sent

    def receive_stream(self) -> Iterator[bytes]:
        """The D frames of an upload, up to its E (C: the host cancelled)."""
        while True:
            frame = self.read_frame()
            if frame is None:
                raise Fail("host went away during upload", errno.EPIPE)
            kind, payload = frame
            if kind == wire.END:
                return
            if kind == wire.CANCEL:
                raise Fail("cancelled by the host", errno.ECANCELED)
            if kind == wire.DATA:
                yield payload

    def receive_into(self, open_target: Callable[[], int]) -> int:
        """Write the streamed bytes to the file *open_target* opens (and positions);
        return the byte count.  If opening fails, the stream is consumed (the channel
        stays in step) and the failure raised."""
        try:
            fd = open_target()
        except (OSError, Fail):
            self.receive_file(None)
            raise
        return self.receive_file(fd)

    def receive_file(self, fd: int | None) -> int:
        """Write D frames to *fd* until E; return the byte count.  C cancels."""
        total = 0
        error: OSError | None = None
        try:
            for payload in self.receive_stream():
                if fd is not None and error is None:
                    try:
                        view = memoryview(payload)
                        while view:
                            view = view[os.write(fd, view) :]
                        total += len(payload)
                    except OSError as e:
                        error = e  # keep reading to the end of the stream
        finally:
            if fd is not None:
                os.close(fd)
        if error is not None:
            raise error
        return total
