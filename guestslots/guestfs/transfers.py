"""libguestfs's calls that move files between the host and the guest (with progress
events where libguestfs sends them)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable

from .events import EVENT_PROGRESS
from .handle import Handle


class TransferCalls(Handle):
    """Files in and out: tar_in/out, download, upload, copy_in/out."""

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
