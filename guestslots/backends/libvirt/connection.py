"""One libvirt connection per process, with the event loop libvirt needs.

The default is libvirt's embedded QEMU driver (``qemu:///embed?root=DIR``): no
daemon, the driver runs in this process.  A process may embed the driver with
one root only, so all its appliances share one root: a short, per-process
directory under ``$TMPDIR`` (socket paths inside it must fit in 108 bytes),
locked like a work directory (:mod:`guestslots.host.workdir`).  Its
``qemu.conf`` makes libvirt leave images alone: no security driver, no
ownership changes, QEMU run as this user, no private /dev namespace, logs to
files (no virtlogd).

QEMU's capabilities, which libvirt probes by running QEMU (seconds under TCG),
are kept in the cache directory and copied into each new root.

Any other URI (``GUESTSLOTS_LIBVIRT_URI`` or ``Appliance(uri=...)``) is opened
as it is, for example ``qemu:///system``.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import shutil
import threading
import urllib.parse
from pathlib import Path

import libvirt

from ...host.cache import cache_root
from ...host.workdir import PREFIX, WorkDir

log = logging.getLogger(__name__)

ENV_URI = "GUESTSLOTS_LIBVIRT_URI"
#: The embedded root's prefix: a work directory of its own kind.
ROOT_PREFIX = f"{PREFIX}lv-"

_lock = threading.Lock()
_loop_started = False
_connections: dict[str, libvirt.virConnect] = {}
_root: WorkDir | None = None
#: (domain name, device alias) -> set when libvirt reports that device removed.
_removals: dict[tuple[str, str], threading.Event] = {}
#: domain name -> set when libvirt reports the domain stopped.
_stops: dict[str, threading.Event] = {}
#: What waits for a domain's job to end, and the job's final statistics.
_jobs: dict[str, tuple[threading.Event, dict[str, object]]] = {}
#: Domain names this process's appliances hold (see :func:`reserve_name`).
_reserved: set[str] = set()
#: domain name -> how it stopped (libvirt's VIR_DOMAIN_EVENT_STOPPED_* detail), in words.
stop_reasons: dict[str, str] = {}
_STOP_REASONS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shut down",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed: killed, or died",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
}


def _start_event_loop() -> None:
    """libvirt needs an event loop registered before any connection is opened."""
    global _loop_started
    if _loop_started:
        return
    libvirt.virEventRegisterDefaultImpl()
    # Errors are raised as exceptions; libvirt's own printing to stderr is noise.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="guestslots-libvirt-events", daemon=True).start()
    _loop_started = True


def _qemu_conf() -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return "\n".join([
        'security_driver = "none"',
        "dynamic_ownership = 0",
        "remember_owner = 0",
        f'user = "{user}"',
        f'group = "{group}"',
        "namespaces = [ ]",
        'stdio_handler = "file"',
        "",
    ])


def capabilities_cache() -> Path:
    """Where QEMU's probed capabilities are kept between embedded roots."""
    return cache_root() / "libvirt-capabilities"


def _capabilities_dir(root: str) -> Path:
    return Path(root) / "cache" / "qemu" / "capabilities"


def save_capabilities() -> None:
    """Keep what libvirt probed in this process's root for the next process's."""
    if _root is None:
        return
    with contextlib.suppress(OSError):
        capabilities_cache().mkdir(parents=True, exist_ok=True)
        for xml in _capabilities_dir(_root.path).glob("*.xml"):
            target = capabilities_cache() / xml.name
            if not target.exists():
                shutil.copyfile(xml, target)


def _new_root() -> WorkDir:
    root = WorkDir(prefix=ROOT_PREFIX)
    (Path(root.path) / "etc").mkdir(parents=True)
    (Path(root.path) / "etc" / "qemu.conf").write_text(_qemu_conf())  # embed: ROOT/etc
    caps = _capabilities_dir(root.path)
    caps.mkdir(parents=True)
    with contextlib.suppress(OSError):
        for xml in capabilities_cache().glob("*.xml"):
            shutil.copyfile(xml, caps / xml.name)
    return root


def uri() -> str:
    """The URI appliances connect to when none is given."""
    return os.environ.get(ENV_URI) or "embed"


def embedded(name: str) -> bool:
    """Whether URI *name* (as :func:`connect` takes it) is an embedded driver's, which
    lives in the process that opens it."""
    return name == "embed" or urllib.parse.urlsplit(name).path == "/embed"


def dac_label(name: str) -> str:
    """The ``UID:GID`` an appliance's QEMU runs as at URI *name*, with nothing
    relabelled: ``0:0`` for a root caller at a local daemon (``qemu:///system`` runs
    QEMU as its own user and chowns what it opens to it: the caller's work directory,
    which that user cannot reach, and the caller's images, which must not change),
    as libguestfs's libvirt backend does; else "" (the daemon's choice)."""
    name = name or uri()
    if os.geteuid() != 0 or embedded(name) or urllib.parse.urlsplit(name).hostname:
        return ""
    return "0:0"


#: The system daemon's socket (libvirt's default).
SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"


def target(name: str) -> str:
    """The URI to open for *name* at a local daemon: ``qemu:///system`` and, once this
    process embeds the driver, ``qemu:///session`` name their socket (``qemu+unix``).
    A process that has opened the embedded driver cannot open a plain
    ``qemu:///system`` or ``qemu:///session`` (libvirt routes it to the embedded
    driver: "Missing URI parameter 'root'"), and ``qemu+unix:///system`` without a
    socket finds no driver then.  A plain ``qemu:///session`` in a process without the
    embedded driver stays as it is, so libvirt starts the session daemon if needed.
    (For root, libvirt serves ``qemu:///session`` from the system daemon.)"""
    if name == "qemu:///system":
        return f"qemu+unix:///system?socket={SYSTEM_SOCKET}"
    if name == "qemu:///session" and _root is not None:
        socket = SYSTEM_SOCKET if os.geteuid() == 0 else os.path.join(
            os.environ.get("XDG_RUNTIME_DIR") or os.path.join(os.path.expanduser("~"),
                                                              ".cache"),
            "libvirt", "libvirt-sock")
        return f"qemu+unix:///session?socket={socket}"
    return name


def connect(name: str = "") -> libvirt.virConnect:
    """The process's connection to *name* (default :func:`uri`; ``embed``: the embedded
    driver with this process's root)."""
    global _root
    name = name or uri()
    with _lock:
        if name in _connections:
            return _connections[name]
        if name == "embed":
            if _root is None:
                _root = _new_root()
            opened = f"qemu:///embed?root={_root.path}"
        else:
            opened = target(name)
        _start_event_loop()
        conn = libvirt.open(opened)
        # One callback per event and connection (libvirt-python allows no second one):
        # it dispatches to whoever waits for that domain's device.
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                    _device_removed, None)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                    _lifecycle, None)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                    _job_completed, None)
        _connections[name] = conn
        return conn


def reserve_name(conn: libvirt.virConnect, prefix: str) -> str:
    """The first name ``PREFIX-N`` (N = 0, 1, ...) that no domain at *conn* and no other
    appliance of this process has; held until :func:`release_name`.  A saved state
    restores only under the name it was saved with, so the N-th concurrent appliance
    of one layout always gets the same name, and its own saved state."""
    with _lock:
        taken = {d.name() for d in conn.listAllDomains(0)} | _reserved
        n = 0
        while f"{prefix}-{n}" in taken:
            n += 1
        name = f"{prefix}-{n}"
        _reserved.add(name)
        return name


def claim_name(conn: libvirt.virConnect, name: str) -> bool:
    """Hold *name* itself (a saved appliance restores only under its own name): False
    if a domain at *conn* or another appliance of this process has it."""
    with _lock:
        if name in _reserved or name in {d.name() for d in conn.listAllDomains(0)}:
            return False
        _reserved.add(name)
        return True


def release_name(name: str) -> None:
    """Give back a name from :func:`reserve_name`."""
    with _lock:
        _reserved.discard(name)


def _device_removed(_conn: object, domain: libvirt.virDomain, alias: str,
                    _opaque: object) -> None:
    event = _removals.get((domain.name(), alias))
    if event is not None:
        event.set()


def _lifecycle(_conn: object, domain: libvirt.virDomain, event: int, detail: int,
               _opaque: object) -> None:
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and \
            detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
        return  # it runs on at another libvirt
    if event in (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED):
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            stop_reasons[domain.name()] = _STOP_REASONS.get(detail, f"detail {detail}")
        stopped = _stops.get(domain.name())
        if stopped is not None:
            stopped.set()


def _job_completed(_conn: object, domain: libvirt.virDomain, params: dict[str, object],
                   _opaque: object) -> None:
    waiting = _jobs.get(domain.name())
    if waiting is not None:
        waiting[1].update(params)
        waiting[0].set()


def job_end(domain: str) -> tuple[threading.Event, dict[str, object]]:
    """An event set when libvirt reports *domain*'s job completed, and the job's
    statistics it reported (register before starting the job)."""
    event: threading.Event = threading.Event()
    stats: dict[str, object] = {}
    _jobs[domain] = (event, stats)
    return event, stats


def stop(domain: str) -> threading.Event:
    """An event set when libvirt reports *domain* stopped (register before starting it)."""
    return _stops.setdefault(domain, threading.Event())


def forget(domain: str) -> None:
    """Drop what was kept to wait for *domain*'s events."""
    _stops.pop(domain, None)
    _jobs.pop(domain, None)
    stop_reasons.pop(domain, None)
    for key in [k for k in _removals if k[0] == domain]:
        del _removals[key]


def removal(domain: str, alias: str) -> threading.Event:
    """An event set when libvirt reports device *alias* of *domain* removed (cleared
    now: wait for it after asking for the removal)."""
    event = _removals.setdefault((domain, alias), threading.Event())
    event.clear()
    return event


def root() -> str | None:
    """The embedded driver's root directory, once opened."""
    return _root.path if _root else None
