"""What ``Appliance.save`` writes beside the VM state: the description a restore checks.

Pure.  ``appliance.json`` in a save directory::

    {"format": 1, "state_key": "...", "record": {<runtime record, schema 3>},
     "kernel_names": {"0": "sda"}, "identities": {"0": "2049:1234:65536:17961..."}}

``state_key`` is the saved appliance's layout key (QEMU binary, command line,
appliance image): a restore needs the same.  ``record`` is its runtime record at the
save: every slot, vCPU, NIC, the disk set.  ``kernel_names`` are the guest's names of
the slot disks; ``identities`` each full slot's image file as it was once QEMU
stopped (device, inode, size, modification time; then its snapshot overlays', each
after a ``;``): a restore refuses an image that is not that file any more, or changed
since.  A save with the disk set keeps those slots' disks in ``disks/``, and its
record names those copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .runtime import RuntimeRecord, RuntimeRecordError

#: The format this version writes and reads.
FORMAT = 1
#: The description's file name in a save directory.
DESCRIPTION = "appliance.json"
#: Where a save with the disk set keeps those slots' disks (``slotN.img``/``.qcow2``).
DISKS = "disks"


@dataclass(frozen=True)
class SavedAppliance:
    """The description of a saved appliance."""

    state_key: str
    record: RuntimeRecord
    kernel_names: dict[int, str]
    identities: dict[int, str | None]

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "state_key": self.state_key,
            "record": json.loads(self.record.to_json()),
            "kernel_names": {str(k): v for k, v in sorted(self.kernel_names.items())},
            "identities": {str(k): v for k, v in sorted(self.identities.items())},
        }, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> SavedAppliance:
        """Parse a description; :class:`RuntimeRecordError` says what is wrong with it."""
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise RuntimeRecordError(where, f"not a complete JSON document: {e}") from None
        if not isinstance(doc, dict) or "format" not in doc:
            raise RuntimeRecordError(where, "not a saved guestslots appliance")
        if doc["format"] != FORMAT:
            raise RuntimeRecordError(where, f"saved in format {doc['format']!r}; this "
                                     f"guestslots reads format {FORMAT}")
        try:
            record = RuntimeRecord.from_json(json.dumps(doc["record"]), where)
            names = _by_slot(doc["kernel_names"], str)
            identities = _by_slot(doc["identities"], (str, type(None)))
            state_key = doc["state_key"]
            if not isinstance(state_key, str):
                raise TypeError(f"state_key is {state_key!r}")
        except (KeyError, TypeError, ValueError) as e:
            raise RuntimeRecordError(where, f"incomplete or malformed ({e})") from None
        filled = {s.index for s in record.slots if s.state == "filled"}
        if set(names) != filled or set(identities) != filled:
            raise RuntimeRecordError(where, "its slot descriptions do not match its slots")
        return cls(state_key, record, names, identities)


def _by_slot(value: Any, kind: type | tuple[type, ...]) -> dict[int, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{value!r} is not a mapping")
    out = {}
    for key, item in value.items():
        if not isinstance(item, kind):
            raise TypeError(f"slot {key}: {item!r}")
        out[int(key)] = item
    return out
