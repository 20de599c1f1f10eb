"""The Appliance: one launched appliance VM, its slots, and the calls into it.

The Appliance decides; the slot table says what is allowed; the backend and
the agent client carry out.  Every slot change is checked against the table
first, carried out, and only then recorded, so a refused or failed call
leaves the table, the other slots and their data as they were.  The class is
put together from one module per area (see :mod:`.core`); this module adds
the guest calls and the functions that bring an appliance back
(:func:`restore`, :func:`relaunch`, :func:`attach`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..guest.archive import ArchiveCalls
from ..guest.devio import DeviceIoCalls
from ..guest.edits import EditCalls
from ..guest.fs import FsCalls
from ..guest.fstools import FsToolCalls
from ..guest.guestexec import GuestExecCalls
from ..guest.inspect import InspectionCalls
from ..guest.listing import ListingCalls
from ..guest.net import NetCalls
from ..guest.parts import PartCalls
from ..guest.tree import TreeCalls
from ..guest.volumes import VolumeCalls
from ..host import owner, runtime
from ..host.qemuversion import second_qemu
from ..model.runtime import RuntimeRecord, RuntimeRecordError
from ..model.saved import DESCRIPTION, SavedAppliance
from .core import BACKEND_ENV, DEFAULT_QEMU, QEMU_ENV, ApplianceState, slot_identity
from .migration import MigrationArea

__all__ = ["BACKEND_ENV", "QEMU_ENV", "Appliance", "ApplianceState", "attach", "relaunch",
           "restore"]



class Appliance(InspectionCalls, VolumeCalls, FsCalls, NetCalls, TreeCalls, EditCalls,
                ArchiveCalls, PartCalls, FsToolCalls, DeviceIoCalls, ListingCalls,
                GuestExecCalls, MigrationArea):
    """A small Linux appliance VM with drive slots that can be hotplugged by index.

    Reserve slots with :meth:`add_drive` (``/dev/null`` for an empty one),
    :meth:`launch`, then :meth:`hotplug` and :meth:`unplug` by slot index.
    Slot *i* is always ``/dev/sd`` + letters(i) (0 -> ``/dev/sda``,
    27 -> ``/dev/sdab``), whatever the kernel's discovery order was.  Use it as
    a context manager, or call :meth:`shutdown`.

    With ``detached=True`` the appliance outlives this object and this process (on
    the libvirt backend: at a libvirt daemon, not the embedded driver): it runs until
    :meth:`shutdown` (or ``guestslots stop ID``), and another process takes it over
    with :func:`guestslots.attach` once this one has exited or called
    :meth:`disconnect`.

    The backend is *backend*, else ``$GUESTSLOTS_BACKEND``, else ``qemu``; the QEMU
    binary *qemu*, else ``$GUESTSLOTS_QEMU``, else ``/usr/bin/qemu-system-x86_64``.
    """


def restore(path: str | os.PathLike[str], **options: Any) -> Appliance:
    """Bring back, running, an appliance saved with :meth:`Appliance.save` into
    directory *path*: the same slots, vCPUs, NICs, mounts and memory, the same
    appliance id and device ids.  Only if it can be exactly that: the same QEMU and
    appliance image, and every image the very file it was at the save, unchanged
    (checked: device, inode, size, modification time); otherwise
    :class:`RuntimeRecordError` says which, and nothing is started.  *options* are
    :class:`Appliance`'s (``call_timeout``, ``progress``, ``detached``: by default
    detached if the saved one was; ``qemu``: by default the QEMU that saved it, if
    it is one this host's guestslots knows); the layout comes from the save.  The directory
    must stay while the appliance runs (its memory may be mapped from it,
    copy-on-write: it is never changed, and may be restored again while the images
    are unchanged)."""
    directory = Path(path)
    where = str(directory / DESCRIPTION)
    try:
        text = (directory / DESCRIPTION).read_text()
    except OSError as e:
        raise RuntimeRecordError(where, f"cannot read it: {e.strerror}") from None
    saved = SavedAppliance.from_json(text, where)
    for slot in saved.record.slots:
        if slot.index in saved.identities and slot.path is not None:
            now = slot_identity(slot.path, slot.chain)
            if now != saved.identities[slot.index]:
                why = "is gone" if now is None else "is another file, or changed since the save"
                what = f"image {slot.path}" + (" or one of its snapshot overlays "
                                               f"({', '.join(slot.chain)})" if slot.chain else "")
                raise RuntimeRecordError(f"{directory}, slot {slot.index}",
                                         f"{what} {why}: not restored")
    if runtime.record_path(saved.record.id).exists():
        raise RuntimeRecordError(str(directory), f"appliance {saved.record.id} of this save "
                                 "is running (guestslots ps): stop it first")
    for name in ("backend", "uri", "max_vcpus", "memory_mb"):
        if name in options:
            raise TypeError(f"restore: {name} comes from the save, not from the caller")
    options.setdefault("detached", saved.record.detached)
    _recorded_qemu(saved.record, options)
    app = Appliance(saved.record.backend, uri=saved.record.uri or None,
                    max_vcpus=saved.record.vcpus_max, memory_mb=saved.record.memory_mb,
                    **options)
    app._restore(directory, saved)
    return app


def relaunch(appliance: str | os.PathLike[str], **options: Any) -> Appliance:
    """Boot again the appliance of a runtime record whose QEMU is gone (its owner died,
    or it crashed): *appliance* is its id (``guestslots ps``) or its record's path.

    The new appliance has the record's layout (see :meth:`Appliance.relaunch`) and
    id, and is owned by the caller; *options* are :class:`Appliance`'s (backend,
    memory and vCPU count come from the record, and the QEMU unless *options* name
    one).  A record whose QEMU still runs, or
    that is truncated, of a newer schema, or names changed images: a clear
    :class:`RuntimeRecordError`, and nothing is launched.
    """
    path = _record_path(appliance)
    record = runtime.read(path)
    if runtime.vm_alive(record):
        hint = "guestslots.attach it" if record.detached else "use it"
        raise RuntimeRecordError(str(path), f"appliance {record.id} is still running "
                                 f"(pid {record.pid}): {hint}, or `guestslots stop "
                                 f"{record.id}` first")
    uri = record.uri or None  # a QEMU backend's record names none
    options.setdefault("detached", record.detached)
    _recorded_qemu(record, options)
    app = Appliance(record.backend, uri=uri, memory_mb=record.memory_mb,
                    max_vcpus=record.vcpus_max, **options)
    app._adopt(record)
    app.launch()
    return app


def _recorded_qemu(record: RuntimeRecord, options: dict[str, Any]) -> None:
    """Unless the caller names a QEMU, the one *record*'s appliance ran (a saved state
    is that QEMU's only, and its version's rules apply), if it is one this host's
    guestslots knows (the system's, ``$GUESTSLOTS_QEMU``, ``tools/second-qemu``'s: a
    save directory may come from elsewhere, and no program it names is run); else the
    default."""
    if options.get("qemu") is not None or not record.qemu:
        return
    known = {os.path.realpath(p) for p in (DEFAULT_QEMU, os.environ.get(QEMU_ENV, ""),
                                           second_qemu()) if p}
    if os.path.realpath(record.qemu) in known and os.access(record.qemu, os.X_OK):
        options["qemu"] = record.qemu


def _record_path(appliance: str | os.PathLike[str]) -> Path:
    """The runtime record of *appliance*: an id (``guestslots ps``), or a record's path."""
    text = os.fspath(appliance)
    if os.sep in text or text.endswith(".json"):
        return Path(text)
    path = runtime.record_path(text)
    if not path.exists():
        raise RuntimeRecordError(text, f"no appliance {text} is recorded (guestslots ps "
                                 "lists the running ones)")
    return path


def attach(appliance: str | os.PathLike[str], *, timeout: float = 10.0,
           **options: Any) -> Appliance:
    """Take over a running detached appliance (``Appliance(detached=True)``) from
    another process: *appliance* is its id (``guestslots ps``) or its runtime record's
    path.

    The returned :class:`Appliance` is the same appliance, running: its slots,
    mounts, page cache, vCPUs, NICs and disk set, with the same API; its runtime
    record names this process as the one that holds it.  It stays detached:
    :meth:`Appliance.disconnect` (or this process's exit) leaves it for the next,
    :meth:`Appliance.shutdown` stops it.  *options* are :class:`Appliance`'s
    (``call_timeout``, ``progress``...; the QEMU binary is the one it runs).
    Refused with :class:`RuntimeRecordError`, changing nothing: an appliance that
    is not detached (only its owner uses it), whose QEMU is gone (see
    :func:`relaunch`), or that a living process holds (it must exit or disconnect
    first).  *timeout* bounds the wait for QEMU's greeting.
    As a context manager it is shut down at the end, as any :class:`Appliance`; call
    ``disconnect()`` inside to leave it running.
    """
    path = _record_path(appliance)
    record = runtime.read(path)
    where = str(path)
    if not record.detached:
        raise RuntimeRecordError(where, f"appliance {record.id} is not detached: only the "
                                 "process that launched it uses it")
    if not runtime.vm_alive(record) or record.pid is None:
        raise RuntimeRecordError(where, f"appliance {record.id}'s QEMU is gone: "
                                 "guestslots.relaunch brings its layout back")
    if record.owner:
        holder = owner.Owner(**record.owner)
        if holder.pid == os.getpid() and holder.alive():
            raise RuntimeRecordError(where, f"this process holds appliance {record.id} "
                                     "already: use its Appliance object")
        if holder.alive():
            raise RuntimeRecordError(where, f"appliance {record.id} is held by process "
                                     f"{holder.pid}: it must disconnect() or exit first")
    for name in ("backend", "uri", "max_vcpus", "memory_mb", "detached"):
        if name in options:
            raise TypeError(f"attach: {name} comes from the running appliance, not from "
                            "the caller")
    uri = record.uri or None  # a QEMU backend's record names none
    _recorded_qemu(record, options)
    app = Appliance(record.backend, uri=uri, memory_mb=record.memory_mb,
                    max_vcpus=record.vcpus_max, detached=True, **options)
    app._attach(record, timeout)
    return app
