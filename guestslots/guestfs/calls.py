"""The libguestfs calls the facade answers, under libguestfs's names, arguments and
return shapes: ``GuestFS`` is :class:`Calls` on a :class:`~.handle.Handle`.

Most are guestslots' own calls of the same name (:data:`SAME`, :data:`BOOLEANS`,
:data:`HASHES`); the rest are written here.  A libguestfs call that is not here is
not an attribute (``AttributeError``), never a wrong answer: programs probe for
calls that way.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..appliance import Appliance
from ..errors import GuestslotsError
from ..model.sources import is_url
from . import icons
from .events import EVENT_PROGRESS, EVENT_SUBPROCESS_QUIT
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


class Calls(Handle):
    """libguestfs's calls (see the module's text)."""

    if TYPE_CHECKING:  # the calls set from the tables below, for type checkers only
        def __getattr__(self, name: str) -> Any: ...

    # ---- drives and lifecycle

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
        if secret is not None:
            raise RuntimeError("add_drive: secrets are not taken here (they would be kept "
                               "in the appliance's records): use a key or an agent")
        url = None
        if protocol not in (None, "file"):
            url = _server_url(protocol, filename, server, username)
        elif is_url(filename):
            url = filename
        self._api("add_drive", [filename], lambda: self._add_drive(
            filename, readonly, format, label, url), optional)

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
        """Append *content* to file *path*."""
        def append() -> None:
            app = self._launched("write_append")
            data = content.encode() if isinstance(content, str) else content
            app.pwrite(path, data, int(app.stat(path)["size"]))
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

    def mount_vfs(self, options: str, vfstype: str, mountable: str, mountpoint: str) -> None:
        """Mount *mountable* on *mountpoint* with *options* (*vfstype* must be what
        the filesystem is)."""
        def mount() -> None:
            app = self._launched("mount_vfs")
            found = app.vfs_type(mountable)
            if vfstype and found != vfstype:
                raise RuntimeError(f"mount_vfs: {mountable}: a {found} filesystem, not "
                                   f"{vfstype}")
            app.mount_options(options, mountable, mountpoint)
        self._api("mount_vfs", [options, vfstype, mountable, mountpoint], mount)

    def mkfs(self, fstype: str, device: str, blocksize: int | None = None,
             features: str | None = None, inode: int | None = None,
             sectorsize: int | None = None, label: str | None = None) -> None:
        """Make a *fstype* filesystem on *device*."""
        self._api("mkfs", [fstype, device], lambda: self._launched("mkfs").mkfs(
            fstype, device, blocksize or 0, features or "", inode or 0, sectorsize or 0,
            label or ""), {"blocksize": blocksize, "features": features, "inode": inode,
                           "sectorsize": sectorsize, "label": label})

    mkfs_opts = mkfs

    def tar_in(self, tarfile: str, directory: str, compress: str | None = None,
               xattrs: bool | None = None, selinux: bool | None = None,
               acls: bool | None = None) -> None:
        """Unpack host tar file *tarfile* into *directory*."""
        self._api("tar_in", [tarfile, directory], lambda: self._launched("tar_in").tar_in(
            tarfile, directory, compress, bool(xattrs), bool(selinux), bool(acls)),
            {"compress": compress, "xattrs": xattrs, "selinux": selinux, "acls": acls})

    tar_in_opts = tar_in

    def tar_out(self, directory: str, tarfile: str, compress: str | None = None,
                numericowner: bool | None = None, excludes: list[str] | None = None,
                xattrs: bool | None = None, selinux: bool | None = None,
                acls: bool | None = None) -> None:
        """Pack *directory* into host tar file *tarfile*."""
        self._api("tar_out", [directory, tarfile], lambda: self._launched("tar_out").tar_out(
            directory, tarfile, compress, bool(numericowner), excludes, bool(xattrs),
            bool(selinux), bool(acls)), {"compress": compress, "numericowner": numericowner,
                                         "excludes": excludes, "xattrs": xattrs,
                                         "selinux": selinux, "acls": acls})

    tar_out_opts = tar_out

    def _progress(self, total: int) -> Callable[[int], None] | None:
        """A transfer's progress as ``EVENT_PROGRESS`` (position, total in bytes), if a
        callback listens for it."""
        if not any(mask & EVENT_PROGRESS for _cb, mask in self._callbacks.values()):
            return None
        done = 0

        def moved(chunk: int) -> None:
            nonlocal done
            done += chunk
            self._emit(EVENT_PROGRESS, "", [0, 0, done, total])
        return moved

    def download(self, remotefilename: str, filename: str) -> None:
        """Copy guest file *remotefilename* to host file *filename* (progress events
        as it goes)."""
        def copy() -> None:
            app = self._launched("download")
            size = int(app.stat(remotefilename)["size"]) if self._progress(0) else 0
            app.download(remotefilename, filename, progress=self._progress(size))
        self._api("download", [remotefilename, filename], copy)

    def upload(self, filename: str, remotefilename: str) -> None:
        """Copy host file *filename* to guest file *remotefilename* (progress events
        as it goes)."""
        def copy() -> None:
            size = os.path.getsize(filename) if os.path.isfile(filename) else 0
            self._launched("upload").upload(filename, remotefilename,
                                            progress=self._progress(size))
        self._api("upload", [filename, remotefilename], copy)

    def copy_out(self, remotepath: str, localdir: str) -> None:
        """Copy *remotepath* (a file or a directory, recursively) into host directory
        *localdir*."""
        def copy() -> None:
            app = self._launched("copy_out")
            if not os.path.isdir(localdir):
                raise RuntimeError(f"copy_out: {localdir}: target is not a directory")
            name = posixpath.basename(remotepath.rstrip("/")) or "/"
            if app.is_dir(remotepath):
                import tarfile
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    archive = os.path.join(tmp, "out.tar")
                    app.tar_out(remotepath, archive)
                    target = os.path.join(localdir, name)
                    os.makedirs(target, exist_ok=True)
                    with tarfile.open(archive) as tar:
                        tar.extractall(target, filter="data")
            else:
                app.download(remotepath, os.path.join(localdir, name))
        self._api("copy_out", [remotepath, localdir], copy)

    def copy_in(self, localpath: str, remotedir: str) -> None:
        """Copy host file or directory *localpath* (recursively) into *remotedir*."""
        def copy() -> None:
            app = self._launched("copy_in")
            if not app.is_dir(remotedir):
                raise RuntimeError(f"copy_in: {remotedir}: target is not a directory")
            name = os.path.basename(localpath.rstrip("/"))
            if os.path.isdir(localpath):
                import tarfile
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    archive = os.path.join(tmp, "in.tar")
                    with tarfile.open(archive, "w") as tar:
                        tar.add(localpath, arcname=name)
                    app.tar_in(archive, remotedir)
            else:
                app.upload(localpath, posixpath.join(remotedir, name))
        self._api("copy_in", [localpath, remotedir], copy)

    # ---- the handle's state and settings beyond get/set pairs

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
        self.set_hv(hv or "/usr/bin/qemu-system-x86_64")

    def get_qemu(self) -> str:
        """Deprecated in libguestfs: :meth:`get_hv`."""
        return str(self.get_hv())

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
    "checksum", "du", "df", "df_h", "vfs_type", "vfs_label", "vfs_uuid", "mount", "mount_ro",
    "mount_options", "write", "read_file", "part_init", "part_add", "part_disk", "part_del",
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
