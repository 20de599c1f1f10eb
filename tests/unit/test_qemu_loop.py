"""The QEMU machine's private event loop: what it does with errors nobody awaited."""

from __future__ import annotations

import asyncio
import gc

import pytest

from guestslots.backends.qemu.process import _quiet_lost_connection


def _unretrieved(loop: asyncio.AbstractEventLoop, error: BaseException) -> None:
    """A future that fails with *error* and is dropped unawaited (as qemu.qmp's
    reader of a QEMU that died, in a session nobody closes)."""
    future = loop.create_future()
    future.set_exception(error)
    del future
    gc.collect()


def test_a_lost_qemu_connection_nobody_awaited_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    reported: list[dict[str, object]] = []
    loop.default_exception_handler = reported.append  # type: ignore[method-assign,assignment]
    loop.set_exception_handler(_quiet_lost_connection)
    with caplog.at_level("DEBUG", logger="guestslots.backends.qemu.process"):
        _unretrieved(loop, EOFError())
        _unretrieved(loop, ConnectionResetError())
    assert reported == []  # nothing printed at exit
    assert caplog.text.count("never retrieved") == 2
    _unretrieved(loop, ValueError("a real bug"))  # anything else still goes out
    assert len(reported) == 1 and isinstance(reported[0]["exception"], ValueError)
    loop.close()
