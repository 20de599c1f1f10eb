"""The libguestfs handle a program holds: its states, settings, drives, events and
trace; each call goes through :meth:`Handle._api` (see :mod:`.calls`)."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..appliance import Appliance
from ..errors import AgentError, GuestOSError, GuestslotsError
from .events import (
    EVENT_APPLIANCE,
    EVENT_CLOSE,
    EVENT_LAUNCH_DONE,
    EVENT_LIBRARY,
    EVENT_SUBPROCESS_QUIT,
    EVENT_TRACE,
    EVENT_WARNING,
)
from .wire import plain, quoted, shown_result

T = TypeVar("T")

#: The libguestfs whose behaviour the facade follows (Debian 12's).
VERSION = {"major": 1, "minor": 48, "release": 6}
#: Empty slots reserved after the drives, for drives added after launch.
SPARE_SLOTS = 8
#: What libguestfs calls a drive ``/dev/null`` becomes: an empty disk of this size.
NULL_DISK_BYTES = 4096
_LAUNCH_FIRST = ("call launch before using this function\n"
                 "(in guestfish, don't forget to use the 'run' command)")


class ClosedHandle(ValueError):
    """A call on a handle that was closed."""


@dataclass
class Drive:
    """A drive added to the handle, as the caller gave it."""

    path: str
    format: str
    readonly: bool
    label: str | None
    #: A libvirt domain's disk (domain, URI): plugged at launch from the domain.
    domain: tuple[str, str] | None = None


class Handle:
    """A libguestfs handle on its own guestslots appliance."""

    def __init__(self, python_return_dict: bool = False, environment: bool = True,
                 close_on_exit: bool = True) -> None:
        self._closed = False
        self._python_return_dict = python_return_dict
        self._drives: list[Drive] = []
        self._app: Appliance | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._callbacks: dict[int, tuple[Callable[..., object], int]] = {}
        self._next_callback = 0
        self._memsize_set = False
        self._settings: dict[str, Any] = {
            "verbose": False, "trace": False, "autosync": True, "memsize": 1280, "smp": 1,
            "backend": "direct", "backend_settings": [], "recovery_proc": True,
            "append": None, "program": os.path.basename(sys.argv[0] or "python"),
            "identifier": "", "path": "/usr/lib/x86_64-linux-gnu/guestfs",
            "tmpdir": os.environ.get("TMPDIR", "/tmp"), "pgroup": False,
            "cachedir": os.environ.get("LIBGUESTFS_CACHEDIR", "/var/tmp"),
            "hv": os.environ.get("LIBGUESTFS_HV", "/usr/bin/qemu-system-x86_64"),
        }
        self._launching = False
        if environment:
            self._parse_environment(os.environ)
        if close_on_exit:
            atexit.register(_close_at_exit, weakref.ref(self))

    # ---- the handle's own machinery

    def _check_not_closed(self) -> None:
        if self._closed:
            raise ClosedHandle("GuestFS: method called on closed handle")

    def _maybe_convert_to_dict(self, pairs: Sequence[tuple[str, str]] | dict[str, str]
                               ) -> list[tuple[str, str]] | dict[str, str]:
        items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
        return dict(items) if self._python_return_dict else items

    def _launched(self, name: str) -> Appliance:
        if self._app is None:
            raise RuntimeError(f"{name}: {_LAUNCH_FIRST}")
        return self._app

    def _api(self, name: str, args: Sequence[object], call: Callable[[], T],
             optional: Mapping[str, object] | None = None) -> T:
        """Run one call as libguestfs does: refused on a closed handle, traced if asked,
        its errors a ``RuntimeError`` saying ``NAME: what``."""
        self._check_not_closed()
        tracing = bool(self._settings["trace"])
        if tracing:
            words = [quoted(a) for a in args]
            words += [quoted(f"{k}:{plain(v)}") for k, v in (optional or {}).items()
                      if v is not None]
            self._trace(" ".join([name, *words]))
        try:
            result = call()
        except GuestslotsError as e:
            if tracing:
                self._trace(f"{name} = -1 (error)")
            raise RuntimeError(f"{name}: {_message(e)}") from None
        except RuntimeError:
            if tracing:
                self._trace(f"{name} = -1 (error)")
            raise
        except OSError as e:  # a host file the call was given (upload, download...)
            if tracing:
                self._trace(f"{name} = -1 (error)")
            where = f"{e.filename}: " if e.filename else ""
            raise RuntimeError(f"{name}: {where}{e.strerror or e}") from None
        if tracing:
            self._trace(f"{name} = {shown_result(result)}")
        _check_utf8(result)
        return result

    def _trace(self, message: str) -> None:
        if not self._emit(EVENT_TRACE, message):
            print(f"libguestfs: trace: {message}", file=sys.stderr, flush=True)

    def _emit(self, event: int, message: str = "", array: Sequence[int] = ()) -> bool:
        """Call the callbacks registered for *event*; whether there was any."""
        called = False
        for handle, (callback, mask) in list(self._callbacks.items()):
            if mask & event:
                callback(event, handle, message, list(array))
                called = True
        return called

    def _say(self, message: str) -> None:
        """A message of guestslots' own (verbose): the library's messages."""
        if not self._emit(EVENT_LIBRARY, message) and self._settings["verbose"]:
            print(f"libguestfs: {message}", file=sys.stderr, flush=True)

    def _parse_environment(self, env: dict[str, str] | os._Environ[str]) -> None:
        if env.get("LIBGUESTFS_TRACE") == "1":
            self._settings["trace"] = True
        if env.get("LIBGUESTFS_DEBUG") == "1":
            self._settings["verbose"] = True
        if env.get("LIBGUESTFS_MEMSIZE", "").isdigit():
            self._settings["memsize"] = int(env["LIBGUESTFS_MEMSIZE"])
            self._memsize_set = True
        if env.get("LIBGUESTFS_BACKEND") or env.get("LIBGUESTFS_ATTACH_METHOD"):
            self._settings["backend"] = env.get("LIBGUESTFS_BACKEND") or \
                env["LIBGUESTFS_ATTACH_METHOD"]
        if env.get("LIBGUESTFS_BACKEND_SETTINGS"):
            self._settings["backend_settings"] = env["LIBGUESTFS_BACKEND_SETTINGS"].split(":")
        if env.get("LIBGUESTFS_APPEND"):
            self._settings["append"] = env["LIBGUESTFS_APPEND"]
        if env.get("LIBGUESTFS_PATH"):
            self._settings["path"] = env["LIBGUESTFS_PATH"]
        if env.get("TMPDIR"):
            self._settings["tmpdir"] = env["TMPDIR"]
        if env.get("LIBGUESTFS_HV"):
            self._settings["hv"] = env["LIBGUESTFS_HV"]
        if env.get("LIBGUESTFS_CACHEDIR"):
            self._settings["cachedir"] = env["LIBGUESTFS_CACHEDIR"]

    def _appliance_options(self) -> dict[str, Any]:
        """guestslots' Appliance options for this handle's settings."""
        backend = str(self._settings["backend"])
        options: dict[str, Any] = {}
        if self._memsize_set:  # else guestslots' own size, whose saved state is there
            options["memory_mb"] = int(self._settings["memsize"])
        if backend in ("direct", "appliance", ""):
            options["backend"] = "qemu"
        elif backend == "libvirt" or backend.startswith("libvirt:"):
            options["backend"] = "libvirt"
            if backend.startswith("libvirt:"):
                options["uri"] = backend.removeprefix("libvirt:")
        else:
            raise RuntimeError(f"launch: unknown backend: {backend}")
        if self._backend_setting("force_tcg") not in (None, "0"):
            options["accel"] = "tcg"
        if self._settings["hv"] != "/usr/bin/qemu-system-x86_64":
            options["qemu"] = self._settings["hv"]
        return options

    def _backend_setting(self, name: str) -> str | None:
        """A backend setting's value (``1`` for one given bare), or None."""
        for setting in self._settings["backend_settings"]:
            key, equals, value = str(setting).partition("=")
            if key == name:
                return value if equals else "1"
        return None

    # ---- drives

    def _null_disk(self) -> str:
        """A new empty 4 KiB raw disk, what libguestfs adds for ``/dev/null``."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="guestslots-guestfs-")
        fd, path = tempfile.mkstemp(suffix=".img", prefix="devnull", dir=self._scratch.name)
        os.ftruncate(fd, NULL_DISK_BYTES)
        os.close(fd)
        return path

    def _probe_format(self, path: str) -> str:
        """The format ``qemu-img`` finds, as libguestfs probes a drive added without
        one (its header is then checked as every image's is)."""
        try:
            done = subprocess.run(["qemu-img", "info", "--output=json", path],
                                  capture_output=True, text=True, check=True, timeout=60)
            return str(json.loads(done.stdout)["format"])
        except (subprocess.SubprocessError, ValueError, KeyError, OSError) as e:
            said = getattr(e, "stderr", "") or str(e)
            raise RuntimeError(f"{path}: could not find the format: {said.strip()}") from None

    def _add_drive(self, filename: str, readonly: bool | None, format: str | None,
                   label: str | None, url: str | None) -> None:
        """A drive, checked now as libguestfs does; plugged at launch, or at once into
        a spare slot once launched."""
        if filename == "/dev/null":
            if format not in (None, "raw"):
                raise RuntimeError("for device ‘/dev/null’, format must be ‘raw’")  # noqa: RUF001
            path, fmt = self._null_disk(), "raw"
        elif url is not None:
            path, fmt = url, format or "raw"
        else:
            if not os.path.exists(filename):
                raise RuntimeError(f"{filename}: No such file or directory")
            path = os.path.abspath(filename)
            fmt = format or self._probe_format(path)
        drive = Drive(path, fmt, bool(readonly), label)
        # checked as every guestslots image is (a header naming another file, a format
        # that does not match) when it is plugged: at launch, as libguestfs finds out
        if self._app is not None:
            if label is None:
                raise RuntimeError("add_drive: a drive added after launch needs a label "
                                   "(hotplugging)")
            self._app.hotplug(-1, path, format=fmt, readonly=False, label=label,
                              overlay=drive.readonly)
        self._drives.append(drive)

    def _add_domain(self, name: str, uri: str, readonly: bool) -> int:
        """A libvirt domain's disks as drives (a running domain's at one point in
        time, when launched); how many."""
        from ..domains import domain_disks

        if self._app is not None:
            raise RuntimeError("add_domain: add a domain before launch")
        if not readonly:
            raise RuntimeError("add_domain: a domain's disks are added read-only here "
                               "(readonly=True): a running domain's come from a "
                               "point-in-time export")
        disks = domain_disks(name, uri)
        if not disks:
            raise RuntimeError(f"add_domain: domain {name!r} has no disks")
        for disk in disks:
            self._drives.append(Drive(disk.source, disk.format, True, None, (name, uri)))
        return len(disks)

    # ---- lifecycle

    def _launch(self) -> None:
        if self._app is not None:
            raise RuntimeError("launch: the libguestfs handle has already been launched")
        if not self._drives:
            raise RuntimeError("launch: you must call guestfs_add_drive before "
                               "guestfs_launch")
        app = Appliance(**self._appliance_options())
        try:
            for drive in self._drives:
                if drive.domain is not None:  # its slot is filled once launched
                    app.add_drive("/dev/null")
                    continue
                # libguestfs's read-only drive is writable through a throwaway overlay
                app.add_drive(drive.path, format=drive.format, readonly=False,
                              label=drive.label, overlay=drive.readonly)
            for _ in range(SPARE_SLOTS):
                app.add_drive("/dev/null")
            self._emit(EVENT_LIBRARY, "launch: guestslots appliance")
            self._launching = True
            app.launch()
            # each domain's disks, in order, into the first empty slots: its own
            for domain in dict.fromkeys(d.domain for d in self._drives if d.domain):
                app.hotplug_domain_disks(*domain)
        except BaseException:
            app.shutdown()
            raise
        finally:
            self._launching = False
        self._app = app
        self._emit(EVENT_APPLIANCE, f"appliance {app.id} ready ({app.launched_from})")
        self._emit(EVENT_LAUNCH_DONE)

    def _shutdown(self) -> None:
        """Stop the appliance (writing back first, with autosync); the handle is then
        in the configuration state again, without drives."""
        app, self._app = self._app, None
        if app is not None:
            try:
                if self._settings["autosync"]:
                    app.umount_all()
                    app.sync()
            finally:
                app.shutdown()
                self._emit(EVENT_SUBPROCESS_QUIT)
        self._drives = []
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _close_quietly(self) -> None:
        if not self._closed:
            try:
                self._shutdown()
            except Exception as e:
                self._emit(EVENT_WARNING, f"close: {e}")
            self._closed = True
            self._emit(EVENT_CLOSE)
            self._callbacks.clear()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) is False and getattr(self, "_app", None) is not None:
            self._close_quietly()

    def _in_slot(self, label: str) -> int:
        app = self._launched("remove_drive")
        for slot in app.slots():
            if slot.label == label and slot.path is not None:
                return slot.index
        raise RuntimeError(f"remove_drive: no drive has the label {label!r}")


def _check_utf8(result: object) -> None:
    """Raise ``UnicodeDecodeError`` for a string that is not UTF-8 in the guest (a
    file name, a label), as libguestfs's binding does: guestslots carries such bytes
    as lone surrogates."""
    if isinstance(result, str):
        if not result.isascii():
            try:
                result.encode("utf-8")  # in C: fails only on a lone surrogate
            except UnicodeEncodeError:
                result.encode("utf-8", "surrogateescape").decode("utf-8")
    elif isinstance(result, dict):
        for key, value in result.items():
            _check_utf8(key)
            _check_utf8(value)
    elif isinstance(result, list | tuple):
        for item in result:
            _check_utf8(item)


def _close_at_exit(ref: weakref.ReferenceType[Handle]) -> None:
    handle = ref()
    if handle is not None:
        handle._close_quietly()


def _message(error: GuestslotsError) -> str:
    """An error's words without guestslots' own call name (the facade puts the
    libguestfs call's name first)."""
    text = str(error)
    if isinstance(error, AgentError) and text.startswith(f"{error.call}: "):
        text = text.removeprefix(f"{error.call}: ")
    if isinstance(error, GuestOSError) and error.errno:
        said = f"{os.strerror(error.errno)}: "
        if text.startswith(said):  # the guest's "STRERROR: PATH", as libguestfs words it
            text = f"{text.removeprefix(said)}: {os.strerror(error.errno)}"
    return text
