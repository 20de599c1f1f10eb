"""External snapshots of slots: their names and where their overlay files go.

Pure.  ``Appliance.snapshot(name)`` puts each chosen slot's disk on a new qcow2
overlay, ``IMAGE-STEM.NAME.qcow2`` beside the image (libvirt names external
snapshots after the image and the snapshot the same way); the image, and every
older overlay, stays as it was at that instant.  A file of that name is never
replaced.
"""

from __future__ import annotations

import os
import re

from ..errors import GuestslotsError

#: Overlays one slot may gain (QEMU node names built on them stay under 31 characters).
MAX_CHAIN = 99
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")


class SnapshotError(GuestslotsError):
    """A snapshot cannot be taken as asked; nothing was changed."""


def check_name(name: str) -> str:
    """*name* if it can name a snapshot (1-64 letters, digits, ``_ . + -``, not
    starting with a punctuation mark: it becomes part of a file name)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SnapshotError(f"snapshot name {name!r}: 1 to 64 letters, digits, '_', '.', "
                            "'+' or '-', starting with a letter or digit")
    return name


def overlay_path(image: str, name: str) -> str:
    """The overlay file of snapshot *name* of *image*: beside it, its stem, the name,
    ``.qcow2`` (``/img/disk.raw`` -> ``/img/disk.NAME.qcow2``)."""
    directory, base = os.path.split(os.path.abspath(image))
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return os.path.join(directory, f"{stem}.{check_name(name)}.qcow2")
