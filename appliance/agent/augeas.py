"""Augeas on the mounted guest filesystem (libguestfs's ``aug_*`` calls), through
libaugeas (no process).

The lenses are the appliance's, compiled once in the agent's own root (a guest's
lens files are never read); every call that reads or writes the guest's files
runs inside the guest filesystem (chroot), so a guest symlink resolves within it.
The one handle is kept: ``aug_init`` reloads the guest's files into it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import Any

from .channel import Channel
from .common import Fail, check_path

AUG_NO_LOAD = 1 << 5
#: libguestfs's aug_init flags that only choose how files are saved.
_SAVE_MODES = {1: "backup", 2: "newfile", 64: "noop"}


class _Lib:
    def __init__(self) -> None:
        name = ctypes.util.find_library("augeas") or "libaugeas.so.0"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.aug_init.restype = ctypes.c_void_p
        lib.aug_init.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        string_out = ctypes.POINTER(ctypes.c_char_p)
        # the addresses of aug_match's strings, freed here: never through c_char_p,
        # whose values are copies
        strings_out = ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))
        for fn, args in (
            ("aug_load", []), ("aug_save", []),
            ("aug_get", [ctypes.c_char_p, string_out]),
            ("aug_set", [ctypes.c_char_p, ctypes.c_char_p]),
            ("aug_setm", [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]),
            ("aug_rm", [ctypes.c_char_p]),
            ("aug_mv", [ctypes.c_char_p, ctypes.c_char_p]),
            ("aug_insert", [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]),
            ("aug_defvar", [ctypes.c_char_p, ctypes.c_char_p]),
            ("aug_match", [ctypes.c_char_p, strings_out]),
            ("aug_label", [ctypes.c_char_p, string_out]),
            ("aug_error", []), ("aug_error_message", []), ("aug_error_details", []),
        ):
            f = getattr(lib, fn)
            f.argtypes = [ctypes.c_void_p, *args]
            f.restype = ctypes.c_char_p if fn in ("aug_error_message",
                                                   "aug_error_details") else ctypes.c_int
        lib.free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.libc = ctypes.CDLL(None)
        self.libc.free.argtypes = [ctypes.c_void_p]


class AugeasCalls(Channel):
    """libguestfs's ``aug_*`` calls."""

    def _aug_lib(self) -> Any:
        if getattr(self, "_augeas_lib", None) is None:
            try:
                self._augeas_lib = _Lib()
            except OSError:
                raise Fail("augeas (libaugeas0) is not in this appliance", errno.ENOSYS) \
                    from None
        return self._augeas_lib

    def _aug(self, call: str) -> tuple[Any, int]:
        handle = getattr(self, "_augeas", None)
        if not getattr(self, "_augeas_open", False) or handle is None:
            raise Fail(f"{call}: you must call aug_init first", errno.EINVAL)
        return self._aug_lib().lib, handle

    def _aug_check(self, lib: Any, handle: int, rc: int, what: str) -> int:
        if rc < 0:
            message = (lib.aug_error_message(handle) or b"").decode(errors="replace")
            details = (lib.aug_error_details(handle) or b"").decode(errors="replace")
            raise Fail(f"{what}: {message}{': ' + details if details else ''}", errno.EINVAL)
        return rc

    def call_aug_init(self, root: str, flags: int) -> None:
        """Open augeas on directory *root* of the mounted guest filesystem; with
        ``AUG_NO_LOAD`` (32) its files are read only by :meth:`call_aug_load`."""
        check_path(root)
        lib = self._aug_lib()
        if getattr(self, "_augeas", None) is None:
            # the lenses, compiled here in the agent's own root; nothing is loaded yet
            handle = lib.lib.aug_init(b"/", None, AUG_NO_LOAD)
            if not handle:
                raise Fail("aug_init: augeas could not start", errno.ENOMEM)
            self._augeas = handle
        self._augeas_root = root
        self._augeas_open = True
        handle = self._augeas
        mode = next((m for bit, m in _SAVE_MODES.items() if int(flags) & bit), "overwrite")
        self._aug_check(lib.lib, handle, lib.lib.aug_set(handle, b"/augeas/save",
                                                         mode.encode()), "aug_init")
        if not int(flags) & AUG_NO_LOAD:
            self.call_aug_load()

    def _guest_root(self) -> Any:
        """Inside the guest filesystem, at the root aug_init was given."""
        import contextlib

        @contextlib.contextmanager
        def inside() -> Any:
            with self.root.inside():
                root = getattr(self, "_augeas_root", "/")
                if root != "/":
                    os.chroot(root)  # within the guest: the way out is the agent's own
                    os.chdir("/")
                yield
        return inside()

    def call_aug_load(self) -> None:
        lib, handle = self._aug("aug_load")
        with self._guest_root():
            self._aug_check(lib, handle, lib.aug_load(handle), "aug_load")

    def call_aug_close(self) -> None:
        lib, handle = self._aug("aug_close")
        lib.aug_rm(handle, b"/files")  # the guest's files leave the kept handle
        self._augeas_open = False

    def call_aug_get(self, augpath: str) -> str:
        lib, handle = self._aug("aug_get")
        value = ctypes.c_char_p()
        rc = self._aug_check(lib, handle, lib.aug_get(handle, augpath.encode(),
                                                      ctypes.byref(value)), "aug_get")
        if rc == 0:
            raise Fail(f"aug_get: no matching node: {augpath}", errno.ENOENT)
        if rc > 1:
            raise Fail(f"aug_get: multiple matching nodes: {augpath}", errno.EINVAL)
        if value.value is None:
            raise Fail(f"aug_get: no value: {augpath}", errno.ENOENT)
        return value.value.decode("utf-8", "surrogateescape")

    def call_aug_set(self, augpath: str, val: str) -> None:
        lib, handle = self._aug("aug_set")
        self._aug_check(lib, handle, lib.aug_set(handle, augpath.encode(), val.encode()),
                        "aug_set")

    def call_aug_setm(self, base: str, sub: str, val: str) -> int:
        lib, handle = self._aug("aug_setm")
        return self._aug_check(lib, handle, lib.aug_setm(
            handle, base.encode(), sub.encode() if sub else None, val.encode()), "aug_setm")

    def call_aug_clear(self, augpath: str) -> None:
        lib, handle = self._aug("aug_clear")
        self._aug_check(lib, handle, lib.aug_set(handle, augpath.encode(), None), "aug_clear")

    def call_aug_rm(self, augpath: str) -> int:
        lib, handle = self._aug("aug_rm")
        return self._aug_check(lib, handle, lib.aug_rm(handle, augpath.encode()), "aug_rm")

    def call_aug_mv(self, src: str, dest: str) -> None:
        lib, handle = self._aug("aug_mv")
        self._aug_check(lib, handle, lib.aug_mv(handle, src.encode(), dest.encode()),
                        "aug_mv")

    def call_aug_insert(self, augpath: str, label: str, before: bool) -> None:
        lib, handle = self._aug("aug_insert")
        self._aug_check(lib, handle, lib.aug_insert(handle, augpath.encode(),
                                                    label.encode(), int(bool(before))),
                        "aug_insert")

    def call_aug_defvar(self, name: str, expr: str | None) -> int:
        lib, handle = self._aug("aug_defvar")
        return self._aug_check(lib, handle, lib.aug_defvar(
            handle, name.encode(), expr.encode() if expr else None), "aug_defvar")

    def call_aug_label(self, augpath: str) -> str:
        lib, handle = self._aug("aug_label")
        label = ctypes.c_char_p()
        rc = self._aug_check(lib, handle, lib.aug_label(handle, augpath.encode(),
                                                        ctypes.byref(label)), "aug_label")
        if rc != 1 or label.value is None:
            raise Fail(f"aug_label: no single node: {augpath}", errno.EINVAL)
        return label.value.decode("utf-8", "surrogateescape")

    def call_aug_match(self, augpath: str) -> list[str]:
        lib, handle = self._aug("aug_match")
        matches = ctypes.POINTER(ctypes.c_void_p)()
        n = self._aug_check(lib, handle, lib.aug_match(handle, augpath.encode(),
                                                       ctypes.byref(matches)), "aug_match")
        libc = self._aug_lib().libc
        found = []
        try:
            for i in range(n):
                address = matches[i]
                found.append(ctypes.string_at(address).decode("utf-8", "surrogateescape"))
                libc.free(address)
        finally:
            if matches:
                libc.free(ctypes.cast(matches, ctypes.c_void_p))
        return found

    def call_aug_ls(self, augpath: str) -> list[str]:
        """The nodes under *augpath*, sorted (libguestfs's aug_ls)."""
        base = augpath.rstrip("/") if augpath != "/" else ""
        return sorted(self.call_aug_match(f"{base}/*"))

    def call_aug_save(self) -> None:
        lib, handle = self._aug("aug_save")
        with self._guest_root():
            self._aug_check(lib, handle, lib.aug_save(handle), "aug_save")
