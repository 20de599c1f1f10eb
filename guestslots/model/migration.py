"""Typed, extensible migration parameters (seed 002) and their two mappings.

Pure.  A :class:`MigrationParams` is a set of named, typed values, checked when it
is made: an unknown name, a value of the wrong type, a negative or overflowing
number is a :class:`MigrationParamError` that names the parameter, before
anything moves.  New parameters join :data:`PARAMS` without breaking callers: every
parameter has a default, and callers name the ones they set.

============================  ==========  ============================================
parameter                     type        meaning
============================  ==========  ============================================
``uri``                       str         where the migration stream goes (QEMU:
                                          ``unix:PATH``, ``tcp:HOST:PORT``, ``fd:...``;
                                          libvirt: its ``migrate_uri``); empty: chosen
``destination_uri``           str         the libvirt the appliance moves to (libvirt
                                          backend: a connection URI of a libvirt that
                                          runs its QEMU on this host); the QEMU
                                          backend moves to a new process of its own
``destination_name``          str         the appliance's name at the destination
                                          (libvirt's domain name)
``destination_config``        record/XML  the destination's definition: a
                                          :class:`~guestslots.model.runtime.RuntimeRecord`
                                          (QEMU) or domain XML (libvirt); only
                                          host-side settings (image paths, sockets) may
                                          differ from the source
``bandwidth``                 int         MiB/s, 0 = the default (unlimited)
``downtime_limit``            int         ms the appliance may stand still at the end,
                                          0 = QEMU's default (300 ms)
``parallel_connections``      int         streams (QEMU multifd), 0 = one
``disks``                     list[int]   slots whose images are copied to the
                                          destination (the others are shared)
``with_disk_set``             bool        copy the appliance's disk set's slots
``disk_directory``            str         where the copies go (on this host: a new
                                          ``slotN.img``/``slotN.qcow2`` per copied
                                          slot; libvirt: named in the destination's
                                          XML)
============================  ==========  ============================================

:func:`guest_abi_difference` says what in a destination definition would change
what the guest sees (slot layout, serials, vCPUs, memory, NICs): such a
destination is refused.  Each backend maps the parameters itself:
:func:`guestslots.backends.qemu.migration_plan.qmp_plan` to QMP commands,
:func:`guestslots.backends.libvirt.params.libvirt_params` to libvirt's typed
parameters and flags.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GuestslotsError
from .names import index_to_letters, letters_to_index
from .runtime import RuntimeRecord

MIB = 1 << 20
#: The largest bandwidth (MiB/s) whose bytes per second fit QEMU's int64
#: (libvirt's own limit, QEMU_DOMAIN_MIG_BANDWIDTH_MAX, is the same).
MAX_BANDWIDTH = ((1 << 63) - 1) // MIB
#: QEMU's limits: downtime-limit (ms), multifd-channels.
MAX_DOWNTIME_MS = 2_000_000
MAX_PARALLEL = 255



class MigrationParamError(GuestslotsError):
    """A migration parameter is unknown, of the wrong type or out of range, or the
    parameters do not fit together or with the appliance.  ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"migration parameter {param!r}: {message}")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its type and range, as checked when a set is made."""

    name: str
    kind: str  # "str", "int", "bool", "slots", "config"
    default: Any
    minimum: int = 0
    maximum: int = 0
    doc: str = ""


#: Every parameter, by name.
PARAMS: dict[str, ParamSpec] = {spec.name: spec for spec in (
    ParamSpec("uri", "str", "", doc="where the migration stream goes"),
    ParamSpec("destination_uri", "str", "", doc="the libvirt to move to (libvirt)"),
    ParamSpec("destination_name", "str", "", doc="the name at the destination"),
    ParamSpec("destination_config", "config", None,
              doc="the destination's definition (host-side changes only)"),
    ParamSpec("bandwidth", "int", 0, 0, MAX_BANDWIDTH, "MiB/s, 0 = default"),
    ParamSpec("downtime_limit", "int", 0, 0, MAX_DOWNTIME_MS, "ms, 0 = default"),
    ParamSpec("parallel_connections", "int", 0, 0, MAX_PARALLEL, "streams, 0 = one"),
    ParamSpec("disks", "slots", (), doc="slots whose images are copied"),
    ParamSpec("with_disk_set", "bool", False, doc="copy the disk set's slots"),
    ParamSpec("disk_directory", "str", "", doc="directory for the copied slots' images"),
)}


#: libvirt's typed migration parameters (``VIR_MIGRATE_PARAM_*``, seed 002) that
#: :meth:`MigrationParams.from_typed` takes and :meth:`~MigrationParams.to_typed`
#: gives: libvirt's name, then ours and the typed parameter's kind ("string",
#: "ullong", "int", or "strings": a string parameter given once per value).
TYPED: dict[str, tuple[str, str]] = {
    "migrate_uri": ("uri", "string"),
    "destination_name": ("destination_name", "string"),
    "destination_xml": ("destination_config", "string"),
    "bandwidth": ("bandwidth", "ullong"),
    "parallel.connections": ("parallel_connections", "int"),
    "migrate_disks": ("disks", "strings"),
}
#: Ours, by our name, for :meth:`MigrationParams.to_typed`.
_TYPED_NAME = {ours: typed for typed, (ours, _) in TYPED.items()}
#: What our parameters with no typed parameter of libvirt's are, there.
_NOT_TYPED = {
    "destination_uri": "libvirt's destination connection (migrateToURI3's dconnuri)",
    "downtime_limit": "libvirt's migrateSetMaxDowntime, called while the job runs",
    "with_disk_set": "no libvirt flag (the disk set is guestslots's; name the disks)",
    "disk_directory": "where the copies go is in the destination's XML for libvirt",
}


def _typed_value(name: str, kind: str, value: Any) -> Any:
    """*value* of typed parameter *name*, checked for its *kind*, in our terms."""
    if kind == "string":
        if not isinstance(value, str):
            raise MigrationParamError(name, f"a string (VIR_TYPED_PARAM_STRING) is "
                                      f"needed, not {value!r}")
        return value
    if kind in ("ullong", "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            what = "VIR_TYPED_PARAM_ULLONG" if kind == "ullong" else "VIR_TYPED_PARAM_INT"
            raise MigrationParamError(name, f"a whole number ({what}) is needed, not "
                                      f"{value!r}")
        return value
    assert kind == "strings"
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise MigrationParamError(name, f"disk targets (strings) are needed, not {value!r}")
    slots = []
    for target in values:
        m = re.fullmatch(r"sd([a-z]{1,3})", target)
        if m is None:
            raise MigrationParamError(name, f"{target!r} is not a slot's disk target "
                                      "(sda, sdb, ...)")
        slots.append(letters_to_index(m.group(1)))
    return slots


def _check(spec: ParamSpec, value: Any) -> Any:
    name = spec.name
    if spec.kind == "str":
        if not isinstance(value, str):
            raise MigrationParamError(name, f"a string is needed, not {value!r}")
        if "\0" in value:
            raise MigrationParamError(name, "holds a NUL character")
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise MigrationParamError(name, f"True or False is needed, not {value!r}")
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise MigrationParamError(name, f"a whole number is needed, not {value!r}")
        if value < spec.minimum:
            raise MigrationParamError(name, f"{value} is negative" if value < 0 else
                                      f"{value} is below {spec.minimum}")
        if value > spec.maximum:
            raise MigrationParamError(name, f"{value} is more than {spec.maximum}, the "
                                      "most it can be")
        return value
    if spec.kind == "slots":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise MigrationParamError(name, f"a list of slot indices is needed, not "
                                      f"{value!r}")
        slots = tuple(value)
        for index in slots:
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise MigrationParamError(name, f"{index!r} is not a slot index")
        if len(set(slots)) != len(slots):
            raise MigrationParamError(name, f"a slot is named twice in {list(slots)}")
        return tuple(sorted(slots))
    if spec.kind == "config":
        if value is not None and not isinstance(value, (RuntimeRecord, str)):
            raise MigrationParamError(name, "a RuntimeRecord (QEMU) or domain XML "
                                      f"(libvirt) is needed, not {type(value).__name__}")
        return value
    raise AssertionError(spec.kind)


class MigrationParams:
    """A checked set of migration parameters (see the module's table).

    ``MigrationParams(uri="unix:/run/x.sock", bandwidth=100)``, or
    ``MigrationParams.from_mapping({...})`` from a dict (a config file, the CLI).
    Read a value as an attribute (``params.bandwidth``); :meth:`replace` makes a
    changed copy; :meth:`items` gives the values that differ from the defaults."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        checked = {}
        for name, value in values.items():
            spec = PARAMS.get(name)
            if spec is None:
                close = difflib.get_close_matches(name, PARAMS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else \
                    f" (known: {', '.join(PARAMS)})"
                raise MigrationParamError(name, f"no such parameter{hint}")
            checked[name] = _check(spec, value)
        if checked.get("disks") and checked.get("with_disk_set"):
            raise MigrationParamError("disks", "give either disks or with_disk_set, not "
                                      "both")
        object.__setattr__(self, "_values", checked)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MigrationParams:
        """Parameters from a mapping of names to values (checked as keywords are)."""
        for name in values:
            if not isinstance(name, str):
                raise MigrationParamError(str(name), "parameter names are strings")
        return cls(**dict(values))

    @classmethod
    def from_typed(cls, params: Mapping[str, Any]) -> MigrationParams:
        """Parameters from libvirt's typed migration parameters, by libvirt's names
        (``migrate_uri``, ``destination_name``, ``destination_xml``, ``bandwidth``,
        ``parallel.connections``, ``migrate_disks``: see :data:`TYPED`), so that a
        program written against libvirt's ``VIR_MIGRATE_PARAM_*`` constants works
        unchanged.  ``migrate_disks`` names disk targets (``sdb``), which become
        slot indices.  An unknown name or a value of the wrong type is a
        :class:`MigrationParamError` that names it, by libvirt's name."""
        ours: dict[str, Any] = {}
        for name, value in params.items():
            if name not in TYPED:
                known = ", ".join(TYPED)
                raise MigrationParamError(str(name), f"no such typed parameter (known: "
                                          f"{known})")
            mine, kind = TYPED[name]
            ours[mine] = _typed_value(name, kind, value)
        try:
            return cls(**ours)
        except MigrationParamError as e:  # a range: say it by the caller's name
            typed = _TYPED_NAME.get(e.param, e.param)
            raise MigrationParamError(typed, str(e).split(": ", 1)[1]) from None

    def to_typed(self) -> dict[str, Any]:
        """These parameters as libvirt's typed parameters, by libvirt's names (the
        inverse of :meth:`from_typed`; slots in ``disks`` as disk targets, ``sdb``).
        ``destination_uri`` is left out: it is libvirt's destination connection,
        not a typed parameter.  A parameter that has no typed parameter
        (``downtime_limit``, ``with_disk_set``, ``disk_directory``, a
        ``destination_config`` that is a runtime record) is a
        :class:`MigrationParamError`: it would be lost."""
        typed: dict[str, Any] = {}
        for name, value in self.items().items():
            if name == "destination_uri":
                continue
            if name in _NOT_TYPED:
                raise MigrationParamError(name, f"has no libvirt typed parameter: "
                                          f"{_NOT_TYPED[name]}")
            if name == "destination_config" and not isinstance(value, str):
                raise MigrationParamError(name, "a RuntimeRecord has no libvirt typed "
                                          "parameter (destination_xml is domain XML)")
            if name == "disks":
                value = [f"sd{index_to_letters(index)}" for index in value]
            typed[_TYPED_NAME[name]] = value
        return typed

    def __getattr__(self, name: str) -> Any:
        spec = PARAMS.get(name)
        if spec is None:
            raise AttributeError(name)
        return self._values.get(name, spec.default)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MigrationParams are read-only: use replace()")

    def replace(self, **changes: Any) -> MigrationParams:
        """A copy with *changes* (checked as in the constructor)."""
        return MigrationParams(**{**self._values, **changes})

    def items(self) -> dict[str, Any]:
        """The parameters set to something other than their default."""
        return {k: v for k, v in self._values.items() if v != PARAMS[k].default}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MigrationParams) and self.items() == other.items()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items().items())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items().items())
        return f"MigrationParams({inner})"

    def disk_slots(self, diskset: Sequence[int], filled: Iterable[int]) -> tuple[int, ...]:
        """The slots whose images are copied: ``disks``, or the disk set with
        ``with_disk_set``; each must be a full slot."""
        wanted = tuple(sorted(diskset)) if self.with_disk_set else self.disks
        full = set(filled)
        for index in wanted:
            if index not in full:
                which = "with_disk_set" if self.with_disk_set else "disks"
                raise MigrationParamError(which, f"slot {index} is empty: only a full "
                                          "slot's image is copied")
        return wanted


# ------------------------------------------------------------ the guest's view


@dataclass(frozen=True)
class GuestAbi:
    """What the guest sees of an appliance's definition: what a migration must keep."""

    memory_mb: int
    vcpus_max: int
    vcpus_plugged: tuple[int, ...]
    #: (index, device, device id, serial, state, read-only) per reserved slot
    slots: tuple[tuple[Any, ...], ...]
    #: (slot, device id, MAC, network kind) per NIC
    nics: tuple[tuple[Any, ...], ...] = field(default=())

    @classmethod
    def of(cls, record: RuntimeRecord) -> GuestAbi:
        """The guest's view of runtime record *record*."""
        return cls(
            memory_mb=record.memory_mb, vcpus_max=record.vcpus_max,
            vcpus_plugged=tuple(sorted(record.vcpus_plugged)),
            slots=tuple((s.index, s.device, s.device_id, s.serial, s.state,
                         bool(s.readonly)) for s in sorted(record.slots,
                                                           key=lambda s: s.index)),
            nics=tuple((n.slot, n.device_id, n.mac, n.network)
                       for n in sorted(record.nics, key=lambda n: n.slot)),
        )


_SLOT_FIELDS = ("index", "device", "device id", "serial", "state", "read-only")
_NIC_FIELDS = ("slot", "device id", "MAC", "network")


def guest_abi_difference(source: RuntimeRecord, destination: RuntimeRecord) -> str | None:
    """What would change for the guest if *destination* replaced *source*, in words,
    or None: only host-side settings (image paths, sockets, work directory, pid)
    may differ."""
    a, b = GuestAbi.of(source), GuestAbi.of(destination)
    if a.memory_mb != b.memory_mb:
        return f"memory {a.memory_mb} MiB would become {b.memory_mb} MiB"
    if a.vcpus_max != b.vcpus_max:
        return f"vCPU ids 0..{a.vcpus_max - 1} would become 0..{b.vcpus_max - 1}"
    if a.vcpus_plugged != b.vcpus_plugged:
        return (f"plugged vCPUs {list(a.vcpus_plugged)} would become "
                f"{list(b.vcpus_plugged)}")
    for what, fields, old, new in (("slot", _SLOT_FIELDS, a.slots, b.slots),
                                   ("NIC", _NIC_FIELDS, a.nics, b.nics)):
        if len(old) != len(new):
            return f"{len(old)} {what}s would become {len(new)}"
        for x, y in zip(old, new, strict=True):
            for name, u, v in zip(fields, x, y, strict=True):
                if u != v:
                    return f"{what} {x[0]}: {name} {u!r} would become {v!r}"
    return None


_SLOT_HOST_FIELDS = ("path", "format", "overlay", "chain")
_NIC_HOST_FIELDS = ("tap", "address", "gateway")


def host_side_difference(source: RuntimeRecord, destination: RuntimeRecord) -> str | None:
    """What host-side setting of *source* *destination* changes, in words, or None: a
    slot's image, format, overlay or snapshot chain, a NIC's tap device or
    addresses.  (What differs in every process, its pid, sockets and work
    directory, is not a setting.)"""
    pairs: list[tuple[str, int, tuple[str, ...], object, object]] = []
    new_slots = {s.index: s for s in destination.slots}
    pairs += [("slot", s.index, _SLOT_HOST_FIELDS, s, new_slots[s.index])
              for s in sorted(source.slots, key=lambda s: s.index) if s.index in new_slots]
    new_nics = {n.slot: n for n in destination.nics}
    pairs += [("NIC", n.slot, _NIC_HOST_FIELDS, n, new_nics[n.slot])
              for n in sorted(source.nics, key=lambda n: n.slot) if n.slot in new_nics]
    for what, key, fields, x, y in pairs:
        for name in fields:
            u, v = getattr(x, name), getattr(y, name)
            if u != v:
                return f"{what} {key}: {name} {u!r} would become {v!r}"
    return None


def check_destination(params: MigrationParams, source: RuntimeRecord, backend: str) -> None:
    """Refuse (before anything moves) a ``destination_config`` of the wrong kind for
    *backend*, or one that would change what the guest sees."""
    config = params.destination_config
    if config is None:
        return
    if backend == "libvirt":
        if not isinstance(config, str):
            raise MigrationParamError("destination_config", "the libvirt backend takes "
                                      "the destination's domain XML")
        return  # libvirt checks the guest ABI of the XML itself, before it starts
    if not isinstance(config, RuntimeRecord):
        raise MigrationParamError("destination_config", f"the {backend} backend takes a "
                                  "RuntimeRecord of the destination")
    change = guest_abi_difference(source, config)
    if change is not None:
        raise MigrationParamError("destination_config", f"refused, it would change what "
                                  f"the guest sees: {change}")
    change = host_side_difference(source, config)
    if change is not None:  # seed 002: a hypervisor that cannot change it fails
        raise MigrationParamError("destination_config", f"the {backend} backend cannot "
                                  f"change host-side settings in a migration: {change} "
                                  "(to move slots onto copies, name them in disks with "
                                  "a disk_directory)")


# ------------------------------------------------------------ what QEMU reports


@dataclass(frozen=True)
class MigrationProgress:
    """A migration's progress or result, from QEMU's ``query-migrate``: status
    (``active``, ``completed``...), RAM bytes sent, left and in all, the rate (Mbit/s),
    the downtime QEMU expects (ms; while it runs) and, at the end, the total time and
    the real downtime (ms).  While copied disks catch up, before the memory moves
    (status ``copying-disks``): their bytes copied and in all (``disk``, as QEMU's
    old block migration reported them)."""

    status: str
    transferred: int = 0
    remaining: int = 0
    total: int = 0
    mbps: float = 0.0
    expected_downtime_ms: int = 0
    total_time_ms: int = 0
    downtime_ms: int = 0
    disk_transferred: int = 0
    disk_total: int = 0

    @classmethod
    def from_qmp(cls, info: Mapping[str, Any]) -> MigrationProgress:
        """Read ``query-migrate``'s answer (fields QEMU leaves out are 0)."""
        ram = info.get("ram")
        ram = ram if isinstance(ram, Mapping) else {}
        disk = info.get("disk")
        disk = disk if isinstance(disk, Mapping) else {}

        def number(d: Mapping[str, Any], key: str) -> int:
            value = d.get(key, 0)
            return int(value) if isinstance(value, (int, float)) and \
                not isinstance(value, bool) else 0

        mbps = ram.get("mbps", 0.0)
        return cls(status=str(info.get("status", "none")),
                   transferred=number(ram, "transferred"),
                   remaining=number(ram, "remaining"), total=number(ram, "total"),
                   mbps=float(mbps) if isinstance(mbps, (int, float)) else 0.0,
                   expected_downtime_ms=number(info, "expected-downtime"),
                   total_time_ms=number(info, "total-time"),
                   downtime_ms=number(info, "downtime"),
                   disk_transferred=number(disk, "transferred"),
                   disk_total=number(disk, "total"))

    @classmethod
    def from_libvirt(cls, stats: Mapping[str, Any], status: str) -> MigrationProgress:
        """Read libvirt's job statistics (``jobStats()``, or the JOB_COMPLETED event's):
        memory bytes (``memory_*``), its rate (bytes/s), ``time_elapsed`` and
        ``downtime`` (ms; while the job runs, the downtime expected), copied disks'
        bytes (``disk_*``); *status* as QEMU names it (``active``, ``completed``)."""

        def number(key: str) -> int:
            value = stats.get(key, 0)
            return int(value) if isinstance(value, (int, float)) and \
                not isinstance(value, bool) else 0

        done = status == "completed"
        return cls(status=status, transferred=number("memory_processed"),
                   remaining=number("memory_remaining"), total=number("memory_total"),
                   mbps=number("memory_bps") * 8 / 1e6,
                   expected_downtime_ms=0 if done else number("downtime"),
                   total_time_ms=number("time_elapsed") if done else 0,
                   downtime_ms=number("downtime") if done else 0,
                   disk_transferred=number("disk_processed"),
                   disk_total=number("disk_total"))
