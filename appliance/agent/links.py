"""The label links ``/dev/disk/guestslots/LABEL[-partN]``, made by the agent.

A labelled slot disk's SCSI serial is its label.  udev could only learn it by
running ``scsi_id`` (a process: 0.1-0.2 s of the single vCPU under TCG, taken
from the hotplug that caused it), so the agent reads it from sysfs (VPD page
0x80) and keeps the links itself; udev makes only the ``slotK`` links, which
need no program.  The links are refreshed whenever a disk comes or goes and
before a label link is looked up (a partition table may have changed).
"""

from __future__ import annotations

import contextlib
import os
import re

from .blockdev import partitions_of
from .common import LINK_DIR

_SLOT_LINK_RE = re.compile(r"slot[0-9]+(-part[0-9]+)?\Z")
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,19}\Z")


def is_slot_link(name: str) -> bool:
    """Whether *name* is udev's (``slotK[-partN]``) rather than a label link."""
    return _SLOT_LINK_RE.match(name) is not None


def serial_of(disk: str) -> str:
    """The SCSI serial of *disk* (VPD page 0x80), or ``""``."""
    try:
        with open(f"/sys/block/{disk}/device/vpd_pg80", "rb") as f:
            page = f.read(260)
    except OSError:
        return ""
    if len(page) < 4 or page[1] != 0x80:
        return ""
    return page[4:4 + int.from_bytes(page[2:4], "big")].decode("ascii", "replace").strip()


def wanted(disks: list[str]) -> dict[str, str]:
    """Link name -> kernel name, for the labelled disks among *disks* and their
    partitions."""
    links: dict[str, str] = {}
    for disk in disks:
        label = serial_of(disk)
        if not _LABEL_RE.match(label) or _SLOT_LINK_RE.match(label):
            continue
        links[label] = disk
        for part in partitions_of(disk):
            with contextlib.suppress(OSError, ValueError), \
                    open(f"/sys/block/{disk}/{part}/partition") as f:
                links[f"{label}-part{int(f.read())}"] = part
    return links


def add(disk: str) -> None:
    """Make the label links of *disk* (just plugged) and its partitions."""
    for name, kernel in wanted([disk]).items():
        _link(f"../../{kernel}", name)


def remove(disk: str) -> None:
    """Remove the label links that named *disk* (just unplugged) or its partitions."""
    pattern = re.compile(re.escape(f"../../{disk}") + r"[0-9]*\Z")
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(LINK_DIR):
            if _SLOT_LINK_RE.match(name):
                continue
            with contextlib.suppress(OSError):
                if pattern.match(os.readlink(f"{LINK_DIR}/{name}")):
                    os.unlink(f"{LINK_DIR}/{name}")


def refresh(disks: list[str]) -> None:
    """Make the label links say what *disks* (every slot disk present) hold now."""
    want = wanted(disks)
    try:
        have = {n: os.readlink(f"{LINK_DIR}/{n}") for n in os.listdir(LINK_DIR)
                if not _SLOT_LINK_RE.match(n) and os.path.islink(f"{LINK_DIR}/{n}")}
    except FileNotFoundError:
        have = {}
    for name, target in have.items():
        if want.get(name) is None or f"../../{want[name]}" != target:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{LINK_DIR}/{name}")
    for name, kernel in want.items():
        if have.get(name) != f"../../{kernel}":
            _link(f"../../{kernel}", name)


def _link(target: str, name: str) -> None:
    # udev removes the directory when it empties it: make it again if it went
    for _ in range(3):
        os.makedirs(LINK_DIR, exist_ok=True)
        tmp = f"{LINK_DIR}/.{name}.new"
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.rename(tmp, f"{LINK_DIR}/{name}")
            return
        except FileNotFoundError:
            continue
