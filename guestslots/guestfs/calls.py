"""The libguestfs calls the facade answers, under libguestfs's names, arguments and
return shapes: ``GuestFS`` is :class:`Calls` on a :class:`~.handle.Handle`.

Most are guestslots' own calls of the same name (:data:`SAME`, :data:`BOOLEANS`,
:data:`HASHES`); the rest are written here and in :mod:`.drives` (drives and the
handle's life), :mod:`.transfers` (files in and out) and :mod:`.queries` (the
handle's state and small queries).  A libguestfs call that is not here is
not an attribute (``AttributeError``), never a wrong answer: programs probe for
calls that way.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..appliance import Appliance
from ..errors import GuestOSError, GuestslotsError
from .drives import DriveCalls
from .queries import QueryCalls
from .transfers import TransferCalls


class Calls(DriveCalls, TransferCalls, QueryCalls):
    """libguestfs's calls (see the module's text)."""

    if TYPE_CHECKING:  # the calls set from the tables below, for type checkers only
        def __getattr__(self, name: str) -> Any: ...

    # ---- listing and inspection (hash results and booleans adapted)

    def blkid(self, device: str) -> list[tuple[str, str]] | dict[str, str]:
        """What libblkid finds on *device* (a hash: DEVNAME, then its tags)."""
        return self._api("blkid", [device], lambda: self._maybe_convert_to_dict(
            {"DEVNAME": device, **self._launched("blkid").blkid(device)}))

    def list_devices(self) -> list[str]:
        """The drives' devices (/dev/sda...), in order."""
        return self._api("list_devices", [], lambda: [
            s.device for s in self._launched("list_devices").slots() if s.path is not None])

    def inspect_os(self) -> list[str]:
        """The root filesystems of the operating systems found."""
        return self._api("inspect_os", [], lambda: [
            str(found["root"]) for found in self._launched("inspect_os").inspect_os()])

    def inspect_list_applications2(self, root: str) -> list[dict[str, Any]]:
        """The applications installed in the OS on *root* (its filesystems mounted), as
        libguestfs's ``application2`` structs."""
        def listed() -> list[dict[str, Any]]:
            apps = self._launched("inspect_list_applications2").inspect_list_applications(root)
            return [_application2(app) for app in apps]
        return self._api("inspect_list_applications2", [root], listed)

    def inspect_list_applications(self, root: str) -> list[dict[str, Any]]:
        """Deprecated in libguestfs: :meth:`inspect_list_applications2` with the older
        ``application`` struct's fields."""
        def listed() -> list[dict[str, Any]]:
            apps = self._launched("inspect_list_applications").inspect_list_applications(root)
            return [{k.replace("app2_", "app_"): v for k, v in _application2(app).items()
                     if k in _APPLICATION1} for app in apps]
        return self._api("inspect_list_applications", [root], listed)

    def stat(self, path: str) -> dict[str, int]:
        """Deprecated in libguestfs (:meth:`statns`): stat(2) of *path*, in seconds."""
        return self._api("stat", [path], lambda: _stat(
            self._launched("stat").stat(path)))

    def lstat(self, path: str) -> dict[str, int]:
        """Deprecated in libguestfs (:meth:`lstatns`): lstat(2) of *path*."""
        return self._api("lstat", [path], lambda: _stat(
            self._launched("lstat").lstat(path)))

    def statns(self, path: str) -> dict[str, int]:
        """stat(2) of *path*, with nanoseconds (libguestfs's ``statns`` struct)."""
        return self._api("statns", [path], lambda: _statns(
            self._launched("statns").stat(path)))

    def lstatns(self, path: str) -> dict[str, int]:
        """lstat(2) of *path*, with nanoseconds."""
        return self._api("lstatns", [path], lambda: _statns(
            self._launched("lstatns").lstat(path)))

    def filesize(self, file: str) -> int:
        """The size of *file* in bytes."""
        return self._api("filesize", [file], lambda: int(
            self._launched("filesize").stat(file)["size"]))

    def read_lines(self, path: str) -> list[str]:
        """The lines of *path* without their line ends."""
        return self._api("read_lines", [path], lambda: self._launched(
            "read_lines").cat(path).splitlines())

    def write_append(self, path: str, content: bytes | str) -> None:
        """Append *content* to file *path*, which is created if it does not exist (as
        libguestfs's does: Nova's append_file to a new file)."""
        def append() -> None:
            app = self._launched("write_append")
            data = content.encode() if isinstance(content, str) else content
            try:
                size = int(app.stat(path)["size"])
            except GuestOSError as e:
                if e.errno != errno.ENOENT:
                    raise
                app.write(path, data)
                return
            app.pwrite(path, data, size)
        self._api("write_append", [path, content], append)

    def glob_expand(self, pattern: str, directoryslash: bool | None = None) -> list[str]:
        """The paths matching *pattern*; directories end in ``/`` unless
        *directoryslash* is false."""
        slash = True if directoryslash is None else bool(directoryslash)
        return self._api("glob_expand", [pattern], lambda: self._launched(
            "glob_expand").glob_expand(pattern, slash), {"directoryslash": directoryslash})

    glob_expand_opts = glob_expand

    def umount(self, pathordevice: str, force: bool | None = None,
               lazyunmount: bool | None = None) -> None:
        """Unmount the filesystem mounted on *pathordevice* (or from it)."""
        self._api("umount", [pathordevice], lambda: self._launched("umount").umount(
            pathordevice), {"force": force, "lazyunmount": lazyunmount})

    umount_opts = umount

    def mount(self, mountable: str, mountpoint: str) -> None:
        """Mount *mountable* (a device, LV, or ``btrfsvol:DEVICE/SUBVOLUME``) on
        *mountpoint*, a directory of what is mounted already (``/`` first)."""
        self._api("mount", [mountable, mountpoint], lambda: self._mount_at(
            "mount", lambda app: app.mount(mountable, mountpoint), mountpoint))

    def mount_ro(self, mountable: str, mountpoint: str) -> None:
        """:meth:`mount`, read-only."""
        self._api("mount_ro", [mountable, mountpoint], lambda: self._mount_at(
            "mount_ro", lambda app: app.mount_ro(mountable, mountpoint), mountpoint))

    def mount_options(self, options: str, mountable: str, mountpoint: str) -> None:
        """:meth:`mount` with mount *options* (``ro``, ``noatime``...)."""
        self._api("mount_options", [options, mountable, mountpoint], lambda: self._mount_at(
            "mount_options", lambda app: app.mount_options(options, mountable, mountpoint),
            mountpoint))

    def mount_vfs(self, options: str, vfstype: str, mountable: str, mountpoint: str) -> None:
        """Mount *mountable* on *mountpoint* with *options* (*vfstype* must be what
        the filesystem is)."""
        def mount(app: Appliance) -> None:
            found = app.vfs_type(mountable)
            if vfstype and found != vfstype:
                raise RuntimeError(f"mount_vfs: {mountable}: a {found} filesystem, not "
                                   f"{vfstype}")
            app.mount_options(options, mountable, mountpoint)
        self._api("mount_vfs", [options, vfstype, mountable, mountpoint],
                  lambda: self._mount_at("mount_vfs", mount, mountpoint))

    def _mount_at(self, name: str, mount: Callable[[Appliance], None],
                  mountpoint: str) -> None:
        """*mount* on the launched appliance; a mount point that is not a directory
        fails as libguestfs's daemon words it."""
        app = self._launched(name)
        try:
            mount(app)
        except GuestOSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR) or mountpoint == "/":
                raise
            try:  # the mount point, not the device, is what is missing?
                is_dir = app.is_dir(mountpoint)
            except GuestslotsError:  # nothing mounted at / either
                is_dir = False
            if is_dir:
                raise
            raise RuntimeError(f"{name}: mount: {mountpoint}: mount point is not a "
                               "directory") from None

    def mkfs(self, fstype: str, device: str, blocksize: int | None = None,
             features: str | None = None, inode: int | None = None,
             sectorsize: int | None = None, label: str | None = None) -> None:
        """Make a *fstype* filesystem on *device*."""
        self._api("mkfs", [fstype, device], lambda: self._launched("mkfs").mkfs(
            fstype, device, blocksize or 0, features or "", inode or 0, sectorsize or 0,
            label or ""), {"blocksize": blocksize, "features": features, "inode": inode,
                           "sectorsize": sectorsize, "label": label})

    mkfs_opts = mkfs


def _application2(app: dict[str, object]) -> dict[str, Any]:
    fields = ("name", "display_name", "epoch", "version", "release", "arch", "install_path",
              "trans_path", "publisher", "url", "source_package", "summary", "description")
    out: dict[str, Any] = {f"app2_{f}": app.get(f, 0 if f == "epoch" else "") for f in fields}
    out["app2_epoch"] = int(out["app2_epoch"] or 0)
    for i in range(1, 5):
        out[f"app2_spare{i}"] = ""
    return out


_APPLICATION1 = {f"app2_{f}" for f in ("name", "display_name", "epoch", "version", "release",
                                       "install_path", "trans_path", "publisher", "url",
                                       "source_package", "summary", "description")}


def _stat(st: dict[str, int]) -> dict[str, int]:
    return {"dev": st["dev"], "ino": st["ino"], "mode": st["mode"], "nlink": st["nlink"],
            "uid": st["uid"], "gid": st["gid"], "rdev": st.get("rdev", 0),
            "size": st["size"], "blksize": st.get("blksize", 4096),
            "blocks": st.get("blocks", 0), "atime": st["atime"] // 10**9,
            "mtime": st["mtime"] // 10**9, "ctime": st["ctime"] // 10**9}


def _statns(st: dict[str, int]) -> dict[str, int]:
    out = {"st_dev": st["dev"], "st_ino": st["ino"], "st_mode": st["mode"],
           "st_nlink": st["nlink"], "st_uid": st["uid"], "st_gid": st["gid"],
           "st_rdev": st.get("rdev", 0), "st_size": st["size"],
           "st_blksize": st.get("blksize", 4096), "st_blocks": st.get("blocks", 0)}
    for t in ("atime", "mtime", "ctime"):
        out[f"st_{t}_sec"], out[f"st_{t}_nsec"] = divmod(st[t], 10**9)
    for i in range(1, 7):
        out[f"st_spare{i}"] = 0
    return out


# ---- calls that are guestslots' own, same arguments (positional) and results

#: Same name, arguments and result.
SAME = (
    "list_partitions", "mounts", "umount_all", "sync", "cat", "ls", "ll", "mkdir",
    "mkdir_p", "rm", "rm_rf", "rm_f", "rmdir", "touch", "chmod", "chown", "lchown", "ln",
    "realpath",
    "ln_f", "ln_s", "ln_sf", "readlink", "find", "head", "head_n", "tail", "tail_n",
    "checksum", "du", "df", "df_h", "vfs_type", "vfs_label", "vfs_uuid", "write",
    "read_file", "part_init", "part_add", "part_disk", "part_del",
    "part_list", "part_get_parttype", "part_set_bootable",
    "part_get_mbr_id", "part_get_gpt_type", "part_set_gpt_type", "part_get_name",
    "part_set_name", "part_to_dev", "part_to_partnum", "set_label", "set_uuid", "pvcreate",
    "vgcreate", "lvcreate", "lvcreate_free", "lvremove", "vgremove", "pvremove", "lvresize",
    "lvs", "vgs", "pvs", "vg_activate", "vg_activate_all", "list_md_devices",
    "list_dm_devices", "md_stop", "inspect_get_roots", "inspect_get_type",
    "inspect_get_distro", "inspect_get_product_name", "inspect_get_product_variant",
    "inspect_get_major_version", "inspect_get_minor_version", "inspect_get_hostname",
    "inspect_get_arch", "inspect_get_package_format", "inspect_get_package_management",
    "inspect_get_osinfo", "inspect_get_windows_systemroot",
    "inspect_get_windows_current_control_set", "inspect_get_windows_software_hive",
    "inspect_get_windows_system_hive", "blockdev_getsize64",
    "blockdev_getss", "blockdev_getsz", "blockdev_flushbufs", "blockdev_rereadpt",
    "blockdev_setro", "blockdev_setrw", "sh", "sh_lines", "command", "command_lines",
    "zero_device", "e2fsck_f", "resize2fs", "resize2fs_size", "resize2fs_M", "fsck",
    "truncate", "truncate_size", "file", "grep", "egrep", "fgrep", "grepi", "egrepi",
    "fgrepi", "zgrep", "zegrep", "zfgrep", "zgrepi", "zegrepi", "zfgrepi", "cp", "cp_a",
    "cp_r", "mv", "case_sensitive_path", "mkswap", "zerofree", "fstrim", "statvfs",
    "pread", "pread_device", "pwrite", "pwrite_device", "utimens", "hexdump", "md_detail",
    "getxattrs", "lgetxattrs", "setxattr", "removexattr", "copy_device_to_device",
    "copy_device_to_file", "copy_file_to_device", "copy_file_to_file",
    "hivex_open", "hivex_close", "hivex_root", "hivex_node_name", "hivex_node_children",
    "hivex_node_get_child", "hivex_node_parent", "hivex_node_values",
    "hivex_node_get_value", "hivex_value_key", "hivex_value_type", "hivex_value_value",
    "hivex_value_string", "xfs_growfs", "md_create", "aug_init", "aug_load", "aug_close",
    "aug_get", "aug_set", "aug_setm", "aug_clear", "aug_rm", "aug_mv", "aug_insert",
    "aug_defvar", "aug_label", "aug_match", "aug_ls", "aug_save",
)
#: libguestfs returns these booleans as 0 or 1.
BOOLEANS = ("exists", "is_file", "is_dir", "is_zero", "is_zero_device", "blockdev_getro",
            "part_get_bootable")
#: libguestfs's hashes: lists of pairs unless ``python_return_dict=True``.
HASHES = ("list_filesystems", "mountpoints", "inspect_get_mountpoints",
          "inspect_get_drive_mappings")

#: Settings each with ``set_NAME`` and ``get_NAME``; the getters of booleans answer
#: 0 or 1, as libguestfs's do.
SETTINGS = ("verbose", "trace", "autosync", "memsize", "smp", "backend",
            "backend_settings", "recovery_proc", "append", "program", "identifier",
            "path", "tmpdir", "pgroup", "cachedir", "hv")
_BOOLEAN_SETTINGS = ("verbose", "trace", "autosync", "recovery_proc", "pgroup")


#: libguestfs's names of arguments that guestslots names otherwise.
_RENAMED = {"mountable": "device", "remotefilename": "remotefile"}


def _same(name: str, convert: Callable[[Calls, Any], Any] | None = None
          ) -> Callable[..., Any]:
    method = getattr(Appliance, name)

    def call(self: Calls, *args: Any, **optional: Any) -> Any:
        named = {_RENAMED.get(k, k): v for k, v in optional.items() if v is not None}

        def run() -> Any:
            result = method(self._launched(name), *args, **named)
            return convert(self, result) if convert is not None else result
        return self._api(name, list(args), run, optional)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    return call


def _setting(name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def setter(self: Calls, value: Any) -> None:
        def store() -> None:
            if name == "backend_settings":
                self._settings[name] = list(value)
            elif name == "memsize":
                self._settings[name] = int(value)
                self._memsize_set = True
            elif name in _BOOLEAN_SETTINGS:
                self._settings[name] = bool(value)
            else:
                self._settings[name] = value
        self._api(f"set_{name}", [value], store)

    def getter(self: Calls) -> Any:
        def read() -> Any:
            value = self._settings[name]
            if name in _BOOLEAN_SETTINGS:
                return int(bool(value))
            return list(value) if isinstance(value, list) else value
        return self._api(f"get_{name}", [], read)

    setter.__name__, getter.__name__ = f"set_{name}", f"get_{name}"
    setter.__doc__ = f"Set the handle's {name} (as libguestfs's set_{name})."
    getter.__doc__ = f"The handle's {name} (as libguestfs's get_{name})."
    return setter, getter


for _name in SAME:
    setattr(Calls, _name, _same(_name))
for _name in BOOLEANS:
    setattr(Calls, _name, _same(_name, lambda self, r: int(bool(r))))
for _name in HASHES:
    setattr(Calls, _name, _same(_name, lambda self, r: self._maybe_convert_to_dict(r)))
for _name in SETTINGS:
    _set, _get = _setting(_name)
    setattr(Calls, f"set_{_name}", _set)
    setattr(Calls, f"get_{_name}", _get)
# the backend's older names (Nova asks for them)
setattr(Calls, "set_attach_method", getattr(Calls, "set_backend"))  # noqa: B009, B010
setattr(Calls, "get_attach_method", getattr(Calls, "get_backend"))  # noqa: B009, B010
