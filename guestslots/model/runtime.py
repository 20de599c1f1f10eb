"""The runtime record: what a running appliance is, for another process to read.

Pure (seed 001): one JSON document per running appliance, rewritten after every
change of it (launch, each hotplug and unplug of a disk, vCPU or NIC): its id and
backend, QEMU's pid (or the libvirt URI and domain), its sockets, the layout
key its saved state was filed under, every reserved slot (index, device id,
path, format, read-only, overlay, label, serial), its vCPUs and its NICs.  Versioned:
a record of a newer schema, a truncated one or one that is not a record is a
:class:`RuntimeRecordError` that says which, never a guess.

Schema 7 (every key always present; schema 6 had no ``qemu``, schema 5 no slot
``sslverify``, schema 4 no ``detached``, schema 3 no slot
``chain``, schema 2 no ``diskset``, schema 1 no ``nics``, ``memory_mb`` or slot
``identity``)::

    {"schema": 7, "id": "9f2c41d7", "backend": "qemu", "uri": "", "domain": "",
     "qemu": "/usr/bin/qemu-system-x86_64",
     "pid": 12345, "memory_mb": 512, "detached": false, "vcpu_unplugged": false,
     "owner": {"host": ..., "boot_id": ..., "pid": ..., "start": ...},
     "started": 1796120000.5, "updated": 1796120003.1, "workdir": "/tmp/guestslots-x",
     "qmp_socket": ".../qmp.sock", "agent_socket": ".../agent.sock", "layout_key": "...",
     "slots": [{"index": 0, "device": "/dev/sda", "device_id": "slot0", "state": "filled",
                "path": "/img", "format": "raw", "readonly": true, "overlay": false,
                "label": null, "serial": "slot0", "identity": "2049:1234:65536:17961...",
                "chain": [], "sslverify": null}],
     "vcpus": {"max": 4, "plugged": [0, 1]},
     "nics": [{"slot": 0, "device_id": "nic-9f2c41d7-0", "network": "user",
               "mac": "52:54:00:9f:2c:00", "address": "10.0.2.15/24",
               "gateway": "10.0.2.2", "tap": null}],
     "diskset": [0]}

``diskset`` is the appliance's disk set (:mod:`guestslots.model.disksets`): the
indices of the selected slots.  A slot's ``chain`` lists the external snapshot
overlays its disk runs on (oldest first; the guest writes to the last), made by
``Appliance.snapshot``: the image itself is as it was at the first.  A slot's
``path`` may be a URL (:mod:`guestslots.model.sources`); ``sslverify`` is false for
an https source whose certificate is not checked, null otherwise.  A ``detached``
appliance outlives its owner (``Appliance(detached=True)``); its ``owner`` is the
process attached to it now, ``{}`` while none is (``guestslots.attach`` takes it).
``vcpu_unplugged``: a vCPU was unplugged from this QEMU process.  ``qemu`` is the
QEMU binary the appliance runs (its saved state is that QEMU's only): what a
restore, relaunch or attach uses unless told otherwise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import GuestslotsError
from .ids import device_id
from .nics import Nic
from .slots import Slot

#: The schema this version writes and reads.
SCHEMA = 7


class RuntimeRecordError(GuestslotsError):
    """A runtime record cannot be used (unreadable, truncated, of a newer schema)."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class SlotRecord:
    """One reserved slot as recorded."""

    index: int
    device: str
    device_id: str
    state: str
    path: str | None = None
    format: str | None = None
    readonly: bool | None = None
    overlay: bool | None = None
    label: str | None = None
    serial: str | None = None
    #: The image file when recorded: ``dev:inode:size:mtime_ns`` (see
    #: :func:`guestslots.host.runtime.image_identity`).
    identity: str | None = None
    #: External snapshot overlays over the image, oldest first (schema 4).
    chain: tuple[str, ...] = ()
    #: False: an https source whose certificate is not checked (schema 6).
    sslverify: bool | None = None


@dataclass(frozen=True)
class NicRecord:
    """One plugged NIC as recorded."""

    slot: int
    device_id: str
    network: str
    mac: str
    address: str
    gateway: str | None = None
    tap: str | None = None


@dataclass(frozen=True)
class RuntimeRecord:
    """A running appliance, as another process needs to know it."""

    id: str
    backend: str
    pid: int | None
    started: float
    updated: float
    workdir: str
    qmp_socket: str = ""
    agent_socket: str = ""
    uri: str = ""
    domain: str = ""
    layout_key: str = ""
    owner: dict[str, Any] = field(default_factory=dict)
    slots: tuple[SlotRecord, ...] = ()
    vcpus_max: int = 1
    vcpus_plugged: tuple[int, ...] = (0,)
    nics: tuple[NicRecord, ...] = ()
    memory_mb: int = 512
    diskset: tuple[int, ...] = ()
    detached: bool = False
    #: A vCPU was unplugged from this QEMU process (QEMU 7.2 under TCG then cannot save
    #: or migrate it): whoever attaches must know.
    vcpu_unplugged: bool = False
    #: The QEMU binary it runs ("" in a record of schema 6 or older).
    qemu: str = ""

    def to_json(self) -> str:
        """The record's document (schema :data:`SCHEMA`)."""
        doc = {k: v for k, v in asdict(self).items()
               if k not in ("slots", "vcpus_max", "vcpus_plugged", "nics", "diskset")}
        doc = {"schema": SCHEMA, **doc,
               "slots": [asdict(s) for s in self.slots],
               "vcpus": {"max": self.vcpus_max, "plugged": list(self.vcpus_plugged)},
               "nics": [asdict(n) for n in self.nics], "diskset": list(self.diskset)}
        return json.dumps(doc, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "runtime record") -> RuntimeRecord:
        """Parse a record; :class:`RuntimeRecordError` says what is wrong with it."""
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise RuntimeRecordError(where, f"not a complete JSON document (truncated?): "
                                     f"{e}") from None
        if not isinstance(doc, dict) or "schema" not in doc:
            raise RuntimeRecordError(where, "not a guestslots runtime record")
        schema = doc["schema"]
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise RuntimeRecordError(where, f"schema {schema!r} is not a number")
        if schema > SCHEMA:
            raise RuntimeRecordError(where, f"written by a newer guestslots (schema "
                                     f"{schema}; this one reads {SCHEMA})")
        if schema < 1:
            raise RuntimeRecordError(where, f"schema {schema} does not exist")
        try:
            vcpus = doc["vcpus"]
            return cls(
                id=_typed(doc, "id", str), backend=_typed(doc, "backend", str),
                pid=_typed(doc, "pid", int, none=True),
                started=float(_typed(doc, "started", (int, float))),
                updated=float(_typed(doc, "updated", (int, float))),
                workdir=_typed(doc, "workdir", str),
                qmp_socket=_typed(doc, "qmp_socket", str),
                agent_socket=_typed(doc, "agent_socket", str),
                uri=_typed(doc, "uri", str), domain=_typed(doc, "domain", str),
                layout_key=_typed(doc, "layout_key", str),
                owner=_typed(doc, "owner", dict),
                slots=tuple(_slot(s) for s in _typed(doc, "slots", list)),
                vcpus_max=_typed(vcpus, "max", int),
                vcpus_plugged=tuple(_typed(vcpus, "plugged", list)),
                nics=tuple(NicRecord(**n) for n in _typed(doc, "nics", list))
                if schema >= 2 else (),
                memory_mb=_typed(doc, "memory_mb", int) if schema >= 2 else 512,
                diskset=tuple(_index(i) for i in _typed(doc, "diskset", list))
                if schema >= 3 else (),
                detached=_typed(doc, "detached", bool) if schema >= 5 else False,
                vcpu_unplugged=_typed(doc, "vcpu_unplugged", bool) if schema >= 5 else False,
                qemu=_typed(doc, "qemu", str) if schema >= 7 else "",
            )
        except (KeyError, TypeError) as e:
            raise RuntimeRecordError(where, f"incomplete or malformed ({e})") from None


def _slot(doc: Any) -> SlotRecord:
    if not isinstance(doc, dict):
        raise TypeError(f"a slot is {doc!r}")
    chain = doc.get("chain", [])
    if not isinstance(chain, list) or not all(isinstance(p, str) for p in chain):
        raise TypeError(f"slot chain is {chain!r}")
    return SlotRecord(**{**doc, "chain": tuple(chain)})


def _index(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"diskset holds {value!r}")
    return value


def _typed(doc: dict[str, Any], key: str, kind: type | tuple[type, ...],
           none: bool = False) -> Any:
    value = doc[key]
    if value is None and none:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise TypeError(f"{key} is {value!r}")
    return value


def slot_record(slot: Slot, appliance_id: str, identity: str | None) -> SlotRecord:
    """What the record keeps of *slot* of appliance *appliance_id* (*identity*: its
    image's identity when it was plugged, see ``host.runtime.image_identity``)."""
    drive = slot.drive
    return SlotRecord(slot.index, slot.device, device_id("disk", appliance_id, slot.index),
                      slot.state.value,
                      drive.path if drive else None,
                      drive.format if drive else None,
                      drive.readonly if drive else None,
                      drive.overlay if drive else None,
                      slot.label, slot.serial,
                      identity if drive else None,
                      drive.chain if drive else (),
                      False if drive and drive.remote and not drive.remote.sslverify
                      else None)


def nic_record(nic: Nic) -> NicRecord:
    """What the record keeps of *nic*."""
    return NicRecord(nic.slot, nic.device_id, nic.network, nic.mac, nic.address, nic.gateway,
                     nic.tap)
