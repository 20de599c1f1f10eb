"""Image files a call makes on the host: removed again if the call fails, made
new at the right size and format, and sparse again after a backup job."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

from ..errors import (
    HostFileError,
)
from ..host.proc import CommandError, run
from ..host.sparse import punch_holes

log = logging.getLogger(__name__)


@contextlib.contextmanager
def removed_on_failure() -> Iterator[list[str]]:
    """A list for the files a call makes: if the call fails, they are removed again."""
    made: list[str] = []
    try:
        yield made
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


def sparse_again(exports: Sequence[tuple[int, str, str]]) -> None:
    """Free the zero ranges a backup job left allocated in the raw copies of
    *exports* (slot, copy, format): see :mod:`guestslots.host.sparse`.  The copies are
    right either way: a failure is only logged."""
    for _, path, fmt in exports:
        if fmt == "raw":
            try:
                punch_holes(path)
            except OSError as e:
                log.warning("%s: its zero ranges stay allocated: %s", path, e)


def make_target(path: str, fmt: str, size: int) -> None:
    """An empty image file *path* of *fmt* and *size* bytes, made new (never replacing)."""
    try:
        with open(path, "xb") as f:
            f.truncate(size)
        if fmt == "qcow2":
            try:
                run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(size)])
            except CommandError as e:
                os.unlink(path)  # made just now
                raise HostFileError(path, f"qemu-img create: {e.reason}: {e.output.strip()}") \
                    from None
    except OSError as e:
        raise HostFileError(path, e.strerror or str(e)) from None
