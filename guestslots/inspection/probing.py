"""What inspection asks of an appliance (:class:`Guest`), and :class:`Probed`, which
answers its many "is this a file?" questions about one filesystem in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .binaries import ARCH_BINARIES
from .releases import RELEASE_FILES


class Guest(Protocol):
    """The public calls inspection uses (an :class:`~guestslots.appliance.Appliance`)."""

    def mounts(self) -> list[str]: ...
    def list_filesystems(self) -> dict[str, str]: ...
    def blkid(self, device: str) -> dict[str, str]: ...
    def mount(self, device: str, mountpoint: str, options: str = "") -> None: ...
    def mount_ro(self, device: str, mountpoint: str) -> None: ...
    def umount_all(self) -> None: ...
    def is_file(self, path: str, followsymlinks: bool = False) -> bool: ...
    def is_dir(self, path: str, followsymlinks: bool = False) -> bool: ...
    def cat(self, path: str) -> str: ...
    def pread(self, path: str, count: int, offset: int) -> bytes: ...
    def ls(self, directory: str) -> list[str]: ...
    def readlink(self, path: str) -> str: ...
    def case_sensitive_path(self, path: str) -> str: ...
    def hivex_open(self, filename: str) -> None: ...
    def hivex_close(self) -> None: ...
    def hivex_root(self) -> int: ...
    def hivex_node_get_child(self, nodeh: int, name: str) -> int: ...
    def hivex_node_values_all(self, nodeh: int) -> dict[str, tuple[int, bytes]]: ...
    def hivex_node_children_named(self, nodeh: int) -> dict[str, int]: ...
    def file_types(self, paths: Sequence[str], followsymlinks: bool = False) -> list[str]: ...


#: The paths inspection asks about on every filesystem it mounts on ``/``: the
#: Linux root test, release files, hostname, architecture, package manager,
#: CoreOS and a separate /usr.
PROBED = tuple(dict.fromkeys((
    "/etc/os-release", "/etc", "/bin", "/usr/bin", "/etc/fstab", "/etc/hosts",
    *RELEASE_FILES, "/etc/HOSTNAME", "/etc/hostname", "/etc/sysconfig/network",
    *ARCH_BINARIES, "/usr/bin/dnf", "/root", "/home", "/usr", "/etc/coreos/update.conf",
    "/local", "/share", "/src", "/share/coreos", "/lib/os-release",
    "/share/coreos/lsb-release", "/bin/dnf",
)))


class Probed:
    """*app* for one inspection: :meth:`is_file` and :meth:`is_dir` of the
    :data:`PROBED` paths come from one :meth:`Guest.file_types` call per mount (and
    per kind of lookup, symlinks followed or not) instead of a round trip each; any
    mount or unmount forgets them.  Everything else goes to *app*."""

    def __init__(self, app: Guest) -> None:
        self._app = app
        self._types: dict[bool, dict[str, str]] = {}

    def _type(self, path: str, follow: bool) -> str | None:
        if path not in PROBED:
            return None
        if follow not in self._types:
            self._types[follow] = dict(zip(PROBED, self._app.file_types(PROBED, follow),
                                           strict=True))
        return self._types[follow][path]

    def is_file(self, path: str, followsymlinks: bool = False) -> bool:
        known = self._type(path, followsymlinks)
        return known == "f" if known is not None else self._app.is_file(path, followsymlinks)

    def is_dir(self, path: str, followsymlinks: bool = False) -> bool:
        known = self._type(path, followsymlinks)
        return known == "d" if known is not None else self._app.is_dir(path, followsymlinks)

    def mount(self, device: str, mountpoint: str, options: str = "") -> None:
        self._types.clear()
        self._app.mount(device, mountpoint, options)

    def mount_ro(self, device: str, mountpoint: str) -> None:
        self._types.clear()
        self._app.mount_ro(device, mountpoint)

    def umount_all(self) -> None:
        self._types.clear()
        self._app.umount_all()

    def mounts(self) -> list[str]:
        return self._app.mounts()

    def list_filesystems(self) -> dict[str, str]:
        return self._app.list_filesystems()

    def blkid(self, device: str) -> dict[str, str]:
        return self._app.blkid(device)

    def cat(self, path: str) -> str:
        return self._app.cat(path)

    def pread(self, path: str, count: int, offset: int) -> bytes:
        return self._app.pread(path, count, offset)

    def ls(self, directory: str) -> list[str]:
        return self._app.ls(directory)

    def readlink(self, path: str) -> str:
        return self._app.readlink(path)

    def case_sensitive_path(self, path: str) -> str:
        return self._app.case_sensitive_path(path)

    def file_types(self, paths: Sequence[str], followsymlinks: bool = False) -> list[str]:
        return self._app.file_types(paths, followsymlinks)

    def hivex_open(self, filename: str) -> None:
        self._app.hivex_open(filename)

    def hivex_close(self) -> None:
        self._app.hivex_close()

    def hivex_root(self) -> int:
        return self._app.hivex_root()

    def hivex_node_get_child(self, nodeh: int, name: str) -> int:
        return self._app.hivex_node_get_child(nodeh, name)

    def hivex_node_values_all(self, nodeh: int) -> dict[str, tuple[int, bytes]]:
        return self._app.hivex_node_values_all(nodeh)

    def hivex_node_children_named(self, nodeh: int) -> dict[str, int]:
        return self._app.hivex_node_children_named(nodeh)
