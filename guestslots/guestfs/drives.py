"""libguestfs's calls about drives and the handle's life: adding images and domains,
launch, shutdown, close, events, version and the environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from ..errors import GuestslotsError
from ..model.sources import is_url
from .events import EVENT_SUBPROCESS_QUIT
from .handle import VERSION, Handle


def _server_url(protocol: str, filename: str, server: list[str] | None,
                username: str | None) -> str:
    """A remote drive of libguestfs's ``protocol``/``server`` form as the URL a
    guestslots slot takes (nbd, http, https, ssh)."""
    if not server or len(server) != 1:
        raise RuntimeError(f"add_drive: protocol {protocol} needs exactly one server")
    where = server[0]
    user = f"{username}@" if username else ""
    if protocol == "nbd":
        if where.startswith("unix:"):
            return f"nbd+unix:///{filename}?socket={where.removeprefix('unix:')}"
        return f"nbd://{where.removeprefix('tcp:')}/{filename}"
    if protocol in ("http", "https", "ssh"):
        return f"{protocol}://{user}{where.removeprefix('tcp:')}/{filename.lstrip('/')}"
    raise RuntimeError(f"add_drive: protocol {protocol!r} is not supported here")


class DriveCalls(Handle):
    """Drives and the handle's life."""

    def add_drive(self, filename: str, readonly: bool | None = None, format: str | None = None,
                  iface: str | None = None, name: str | None = None, label: str | None = None,
                  protocol: str | None = None, server: list[str] | None = None,
                  username: str | None = None, secret: str | None = None,
                  cachemode: str | None = None, discard: str | None = None,
                  copyonread: bool | None = None, blocksize: int | None = None) -> None:
        """Add disk image *filename* (``/dev/null``: an empty 4 KiB disk): before launch
        the first is /dev/sda, the next /dev/sdb...; after launch (with a *label*)
        it is hotplugged.  *readonly*: writes go to a throwaway overlay.  Without
        *format* it is probed (``qemu-img``), and a header that names another file
        is refused.  *protocol* and *server* (nbd, http, https, ssh) name a remote
        disk."""
        optional = {"readonly": readonly, "format": format, "iface": iface, "name": name,
                    "label": label, "protocol": protocol, "server": server,
                    "username": username, "secret": secret, "cachemode": cachemode,
                    "discard": discard, "copyonread": copyonread, "blocksize": blocksize}

        def add() -> None:
            if secret is not None:
                raise RuntimeError("add_drive: secrets are not taken here (they would be "
                                   "kept in the appliance's records): use a key or an agent")
            url = None
            if protocol not in (None, "file"):
                url = _server_url(protocol, filename, server, username)
            elif is_url(filename):
                url = filename
            self._add_drive(filename, readonly, format, label, url)
        self._api("add_drive", [filename], add, optional)

    add_drive_opts = add_drive

    def add_drive_ro(self, filename: str) -> None:
        """:meth:`add_drive` with ``readonly=True``."""
        self.add_drive(filename, readonly=True)

    def add_drive_ro_with_if(self, filename: str, iface: str) -> None:
        """:meth:`add_drive_ro` (*iface* is ignored, as libguestfs does now)."""
        self.add_drive(filename, readonly=True, iface=iface)

    def add_drive_with_if(self, filename: str, iface: str) -> None:
        """:meth:`add_drive` (*iface* is ignored, as libguestfs does now)."""
        self.add_drive(filename, iface=iface)

    def add_cdrom(self, filename: str) -> None:
        """Deprecated in libguestfs: a read-only drive."""
        self.add_drive(filename, readonly=True)

    def add_drive_scratch(self, size: int, name: str | None = None,
                          label: str | None = None, blocksize: int | None = None) -> None:
        """A new empty raw disk of *size* bytes, removed when the handle closes."""
        def scratch() -> None:
            path = self._null_disk()
            os.truncate(path, int(size))
            self._add_drive(path, False, "raw", label, None)
        self._api("add_drive_scratch", [size], scratch, {"label": label})

    def disk_create(self, filename: str, format: str, size: int,
                    backingfile: str | None = None, backingformat: str | None = None,
                    preallocation: str | None = None, compat: str | None = None,
                    clustersize: int | None = None) -> None:
        """Create an empty disk image *filename* (raw or qcow2) of *size* bytes."""
        def create() -> None:
            if format not in ("raw", "qcow2"):
                raise RuntimeError(f"disk_create: unsupported format {format!r}")
            if backingfile is not None:
                raise RuntimeError("disk_create: images naming a backing file are refused "
                                   "here (guestslots never opens one)")
            if format == "raw":
                with open(filename, "wb") as f:
                    f.truncate(int(size))
                return
            import subprocess

            options = [f"compat={compat}"] if compat else []
            if clustersize:
                options.append(f"cluster_size={clustersize}")
            command = ["qemu-img", "create", "-q", "-f", "qcow2"]
            if options:
                command += ["-o", ",".join(options)]
            done = subprocess.run([*command, filename, str(int(size))], capture_output=True,
                                  text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"disk_create: {done.stderr.strip()}")
        self._api("disk_create", [filename, format, size], create)

    def add_domain(self, dom: str, libvirturi: str | None = None,
                   readonly: bool | None = None, iface: str | None = None,
                   live: bool | None = None, allowuuid: bool | None = None,
                   readonlydisk: str | None = None, cachemode: str | None = None,
                   discard: str | None = None, copyonread: bool | None = None) -> int:
        """Add every disk of libvirt domain *dom* (at *libvirturi*, libvirt's default
        if None), read-only: a running domain's at one point in time.  Returns how
        many disks were added."""
        from ..domains import DEFAULT_URI

        uri = libvirturi or DEFAULT_URI
        return self._api("add_domain", [dom], lambda: self._add_domain(
            dom, uri, bool(readonly)), {"libvirturi": libvirturi, "readonly": readonly})

    def add_libvirt_dom(self, dom: Any, readonly: bool | None = None,
                        iface: str | None = None, live: bool | None = None,
                        readonlydisk: str | None = None, cachemode: str | None = None,
                        discard: str | None = None, copyonread: bool | None = None) -> int:
        """:meth:`add_domain` for a libvirt-python ``virDomain`` object."""
        name, uri = dom.name(), dom.connect().getURI()
        return self._api("add_libvirt_dom", [name], lambda: self._add_domain(
            name, uri, bool(readonly)), {"readonly": readonly})

    def remove_drive(self, label: str) -> None:
        """Unplug the drive added with *label* (nothing may use it)."""
        def remove() -> None:
            index = self._in_slot(label)
            self._launched("remove_drive").unplug(index)
            self._drives = [d for d in self._drives if d.label != label]
        self._api("remove_drive", [label], remove)

    def launch(self) -> None:
        """Start the appliance (restored from guestslots' saved state) with the drives
        added so far."""
        self._api("launch", [], self._launch)

    def shutdown(self) -> None:
        """Write back and stop the appliance; the handle can be given drives and
        launched again."""
        self._api("shutdown", [], self._shutdown)

    def kill_subprocess(self) -> None:
        """Deprecated in libguestfs: stop the appliance at once, without writing back
        (:meth:`shutdown` writes back first)."""
        def kill() -> None:
            app, self._app = self._app, None
            if app is None:
                raise RuntimeError("kill_subprocess: no subprocess to kill")
            app.kill()
            with contextlib.suppress(GuestslotsError):
                app.shutdown()  # its work directory and records, with nothing written
            self._emit(EVENT_SUBPROCESS_QUIT)
            self._drives = []
        self._api("kill_subprocess", [], kill)

    def close(self) -> None:
        """Close the handle: shut down the appliance; any later call raises
        ``ClosedHandle``."""
        self._check_not_closed()
        if self._settings["trace"]:
            self._trace("close")
        self._close_quietly()

    def set_event_callback(self, cb: Callable[..., object], event_bitmask: int) -> int:
        """Call *cb(event, event_handle, buf, array)* on the events in *event_bitmask*;
        returns the handle :meth:`delete_event_callback` takes."""
        self._check_not_closed()
        handle = self._next_callback
        self._next_callback += 1
        self._callbacks[handle] = (cb, int(event_bitmask))
        return handle

    def delete_event_callback(self, event_handle: int) -> None:
        """Stop calling the callback *event_handle*."""
        self._check_not_closed()
        self._callbacks.pop(int(event_handle), None)

    def version(self) -> dict[str, Any]:
        """The libguestfs version whose behaviour this follows; ``extra`` names
        guestslots."""
        from .. import __version__

        return self._api("version", [], lambda: {**VERSION, "extra": f"guestslots {__version__}"})

    def parse_environment(self) -> None:
        """Take the settings of LIBGUESTFS_TRACE, _DEBUG, _MEMSIZE, _BACKEND,
        _BACKEND_SETTINGS, _APPEND, _PATH and TMPDIR from the environment."""
        self._api("parse_environment", [], lambda: self._parse_environment(os.environ))

    def parse_environment_list(self, environment: list[str]) -> None:
        """:meth:`parse_environment` from a list of ``NAME=VALUE`` strings."""
        env = dict(e.split("=", 1) for e in environment if "=" in e)
        self._api("parse_environment_list", [environment],
                  lambda: self._parse_environment(env))
