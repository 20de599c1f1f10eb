"""libvirt calls with a deadline.

libvirt waits for QEMU's monitor without a deadline of its own: a stopped or
stuck QEMU blocks ``attachDeviceFlags`` for as long as it stays so.  Each call
that talks to QEMU runs in a thread of its own here and is abandoned (left to
finish whenever QEMU answers) past the caller's timeout, which then gets a
:class:`~guestslots.errors.QemuTimeout` naming what was awaited.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from ...errors import QemuTimeout

T = TypeVar("T")


def call(fn: Callable[[], T], timeout: float, what: str, log_tail: str = "") -> T:
    """``fn()``, or :class:`QemuTimeout` if it has not returned in *timeout* seconds
    (it goes on running: whatever it does when QEMU answers is the caller's to clean)."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as e:  # handed to the waiting caller
            future.set_exception(e)

    threading.Thread(target=run, name=f"guestslots-libvirt: {what}", daemon=True).start()
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise QemuTimeout(f"{what}: QEMU did not answer in {timeout:g} s "
                          "(is it stopped or overloaded?)", log_tail=log_tail) from None
