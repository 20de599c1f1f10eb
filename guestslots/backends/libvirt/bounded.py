"""libvirt calls with a deadline.

libvirt waits for QEMU's monitor without a deadline of its own: a stopped or
stuck QEMU blocks ``attachDeviceFlags`` for as long as it stays so.  Each call
that talks to QEMU runs in a thread of its own here (:func:`start`) and is
abandoned past the caller's timeout (:func:`wait` raises
:class:`~guestslots.errors.QemuTimeout` naming what was awaited); the call goes
on, and finishes whenever QEMU answers: whoever cleans up after it waits for
that first (its future).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from ...errors import QemuTimeout

T = TypeVar("T")


def start(fn: Callable[[], T], what: str) -> concurrent.futures.Future[T]:
    """Run ``fn()`` in a thread of its own; its future."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as e:  # handed to whoever waits
            future.set_exception(e)

    threading.Thread(target=run, name=f"guestslots-libvirt: {what}", daemon=True).start()
    return future


def wait(future: concurrent.futures.Future[T], timeout: float, what: str,
         log_tail: str = "") -> T:
    """The result of *future*, or :class:`QemuTimeout` if it has none in *timeout*
    seconds (the call goes on)."""
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise QemuTimeout(f"{what}: QEMU did not answer in {timeout:g} s "
                          "(is it stopped or overloaded?)", log_tail=log_tail) from None


def call(fn: Callable[[], T], timeout: float, what: str, log_tail: str = "") -> T:
    """``fn()``, or :class:`QemuTimeout` if it has not returned in *timeout* seconds."""
    return wait(start(fn, what), timeout, what, log_tail)
