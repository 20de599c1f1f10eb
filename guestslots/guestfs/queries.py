"""libguestfs's small calls about the handle and the guest: its state, backend
settings one by one, device names, file types, logos, debug."""

from __future__ import annotations

import os
import re

from . import icons
from .events import EVENT_PROGRESS
from .handle import Handle


class QueryCalls(Handle):
    """The handle's state and libguestfs's small queries."""

    def get_state(self) -> int:
        """0 configuring, 1 launching, 2 ready (libguestfs's numbers)."""
        return self._api("get_state", [], lambda: 2 if self._app is not None
                         else 1 if self._launching else 0)

    def is_config(self) -> int:
        """Whether the handle is being configured (not launched)."""
        return self._api("is_config", [], lambda: int(self._app is None
                                                      and not self._launching))

    def is_launching(self) -> int:
        """Whether the handle is launching."""
        return self._api("is_launching", [], lambda: int(self._launching))

    def is_ready(self) -> int:
        """Whether the handle is launched and ready for calls."""
        return self._api("is_ready", [], lambda: int(self._app is not None))

    def is_busy(self) -> int:
        """Always 0: a call returns once it is done."""
        return self._api("is_busy", [], lambda: 0)

    def get_pid(self) -> int:
        """The appliance's QEMU process id."""
        def pid() -> int:
            app = self._launched("get_pid")
            if app.pid is None:
                raise RuntimeError("get_pid: no qemu subprocess")
            return int(app.pid)
        return self._api("get_pid", [], pid)

    def set_backend_setting(self, name: str, val: str) -> None:
        """Set backend setting *name* to *val* (``force_tcg`` is honoured)."""
        def store() -> None:
            self._settings["backend_settings"] = [
                s for s in self._settings["backend_settings"]
                if str(s).partition("=")[0] != name] + [f"{name}={val}"]
        self._api("set_backend_setting", [name, val], store)

    def get_backend_setting(self, name: str) -> str:
        """The value of backend setting *name*."""
        def read() -> str:
            value = self._backend_setting(name)
            if value is None:
                raise RuntimeError("get_backend_setting: setting not found")
            return value
        return self._api("get_backend_setting", [name], read)

    def clear_backend_setting(self, name: str) -> int:
        """Remove backend setting *name*; how many were removed."""
        def clear() -> int:
            before = list(self._settings["backend_settings"])
            self._settings["backend_settings"] = [
                s for s in before if str(s).partition("=")[0] != name]
            return len(before) - len(self._settings["backend_settings"])
        return self._api("clear_backend_setting", [name], clear)

    def set_qemu(self, hv: str | None) -> None:
        """Deprecated in libguestfs: :meth:`set_hv` (None: the default QEMU)."""
        def store() -> None:
            self._settings["hv"] = hv or "/usr/bin/qemu-system-x86_64"
        self._api("set_qemu", [hv], store)

    def get_qemu(self) -> str:
        """Deprecated in libguestfs: :meth:`get_hv`."""
        return self._api("get_qemu", [], lambda: str(self._settings["hv"]))

    def get_sockdir(self) -> str:
        """Where the handle's sockets would be (``$XDG_RUNTIME_DIR`` or /tmp)."""
        return self._api("get_sockdir", [], lambda: os.environ.get("XDG_RUNTIME_DIR")
                         or "/tmp")

    def canonical_device_name(self, device: str) -> str:
        """*device* as libguestfs names it (``/dev/vda1``, ``/dev/hda1`` -> ``/dev/sda1``)."""
        return self._api("canonical_device_name", [device],
                         lambda: re.sub(r"^/dev/(?:h|v|xv)d(?=[a-z])", "/dev/sd", device))

    def nr_devices(self) -> int:
        """How many drives the handle has."""
        return self._api("nr_devices", [], lambda: len(self._app_devices("nr_devices")))

    def device_index(self, device: str) -> int:
        """The index of drive *device* (/dev/sda: 0)."""
        def index() -> int:
            devices = self._app_devices("device_index")
            if device not in devices:
                raise RuntimeError(f"device_index: {device}: device not found")
            return devices.index(device)
        return self._api("device_index", [device], index)

    def _app_devices(self, name: str) -> list[str]:
        return [s.device for s in self._launched(name).slots() if s.path is not None]

    def inspect_get_format(self, root: str) -> str:
        """Deprecated in libguestfs: ``installed`` (guestslots finds installed systems)."""
        def answer() -> str:
            self._launched("inspect_get_format").inspect_get_type(root)  # a known root
            return "installed"
        return self._api("inspect_get_format", [root], answer)

    def inspect_is_live(self, root: str) -> int:
        """Deprecated in libguestfs: 0 (an installed system is no live CD)."""
        return self._api("inspect_is_live", [root], lambda: self._not_installer(root))

    def inspect_is_netinst(self, root: str) -> int:
        """Deprecated in libguestfs: 0."""
        return self._api("inspect_is_netinst", [root], lambda: self._not_installer(root))

    def inspect_is_multipart(self, root: str) -> int:
        """Deprecated in libguestfs: 0."""
        return self._api("inspect_is_multipart", [root], lambda: self._not_installer(root))

    def _not_installer(self, root: str) -> int:
        self._launched("inspect").inspect_get_type(root)  # a known root
        return 0

    def inspect_get_icon(self, root: str, favicon: bool | None = None,
                         highquality: bool | None = None) -> bytes:
        """The logo of the OS on *root* (its filesystems mounted) as PNG bytes, found
        as libguestfs looks for it: the guest's /etc/favicon.png unless *favicon* is
        false, then its distribution's logo; ``b""`` if there is none (Windows'
        icons, in explorer.exe's resources, are not read)."""
        def icon() -> bytes:
            app = self._launched("inspect_get_icon")
            tries = icons.candidates(app.inspect_get_type(root), app.inspect_get_distro(root),
                                     app.inspect_get_major_version(root),
                                     favicon is not False, bool(highquality))
            return icons.find_icon(
                tries, lambda p: app.is_file(p, followsymlinks=True),
                lambda p: int(app.stat(p)["size"]), lambda p, n: app.pread(p, n, 0))
        return self._api("inspect_get_icon", [root], icon,
                         {"favicon": favicon, "highquality": highquality})

    def is_symlink(self, path: str) -> int:
        """Whether *path* is a symbolic link."""
        return self._api("is_symlink", [path], lambda: int(
            self._launched("is_symlink").file_types([path])[0] == "l"))

    def _is_type(self, name: str, letter: str, path: str, follow: bool | None) -> int:
        return self._api(name, [path], lambda: int(self._launched(name).file_types(
            [path], bool(follow))[0] == letter), {"followsymlinks": follow})

    def is_chardev(self, path: str, followsymlinks: bool | None = None) -> int:
        """Whether *path* is a character device."""
        return self._is_type("is_chardev", "c", path, followsymlinks)

    def is_blockdev(self, path: str, followsymlinks: bool | None = None) -> int:
        """Whether *path* is a block device."""
        return self._is_type("is_blockdev", "b", path, followsymlinks)

    def is_fifo(self, path: str, followsymlinks: bool | None = None) -> int:
        """Whether *path* is a FIFO."""
        return self._is_type("is_fifo", "p", path, followsymlinks)

    def is_socket(self, path: str, followsymlinks: bool | None = None) -> int:
        """Whether *path* is a Unix socket."""
        return self._is_type("is_socket", "s", path, followsymlinks)

    def debug(self, subcmd: str, extraargs: list[str]) -> str:
        """libguestfs's debugging commands: ``help``, and ``progress N``, which sends
        progress events (``EVENT_PROGRESS``, from 0 to N in steps) to test callbacks."""
        def answer() -> str:
            self._launched("debug")
            if subcmd == "help":
                return "guestslots: help progress\n"
            if subcmd == "progress" and len(extraargs) == 1 and extraargs[0].isdigit():
                total = int(extraargs[0])
                for done in range(total + 1):
                    self._emit(EVENT_PROGRESS, "", [0, 0, done, total])
                return ""
            raise RuntimeError(f"debug: unknown subcommand {subcmd!r}")
        return self._api("debug", [subcmd, extraargs], answer)
