"""Device ids: reproducible from what is recorded (seed 001).

Every device guestslots plugs is named ``<kind>-<appliance id>-<index>`` (kinds:
``disk``, ``cpu``, ``nic``): the same string is the QEMU device's id (its block
nodes add ``-fmt``, ``-file``...), libvirt's alias (``ua-`` first) and the runtime
record's ``device_id``, so another process that reads the record can name, and
remove, a device it did not add.  The appliance id keeps two appliances' devices
apart wherever their ids meet (one QEMU's QMP, one libvirt connection's events).
"""

from __future__ import annotations

import re

KINDS = ("disk", "cpu", "nic")
_ID_RE = re.compile(r"(disk|cpu|nic)-([0-9a-f]{1,8})-([0-9]{1,3})\Z")


def device_id(kind: str, appliance: str, index: int) -> str:
    """The id of device *index* of *kind* in appliance *appliance* (at most 16
    characters: QEMU node names built on it stay under its 31)."""
    if kind not in KINDS:
        raise ValueError(f"device kind {kind!r}: one of {', '.join(KINDS)}")
    if not re.fullmatch(r"[0-9a-f]{1,8}", appliance):
        raise ValueError(f"appliance id {appliance!r}: 1 to 8 hex digits")
    if not 0 <= index <= 999:
        raise ValueError(f"device index {index}: 0 to 999")
    return f"{kind}-{appliance}-{index}"


def parse_device_id(text: str) -> tuple[str, str, int] | None:
    """(kind, appliance id, index) of a device id; None if *text* is not one."""
    m = _ID_RE.match(text)
    return (m.group(1), m.group(2), int(m.group(3))) if m else None
