"""Guest calls that move a whole directory as a tar archive: tar-out and tar-in, with
libguestfs's names, arguments and meanings.

Paired with the agent's ``archive`` area: tar-out streams GNU tar's archive of the
guest directory (one process per call), tar-in extracts inside the guest root.
"""

from __future__ import annotations

from .base import GuestCalls, HostFile, Progress, host_file, serialised


class ArchiveCalls(GuestCalls):
    """tar_out and tar_in."""

    @serialised
    def tar_out(self, directory: str, tarfile: HostFile, compress: str | None = None,
                numericowner: bool = False, excludes: list[str] | None = None,
                xattrs: bool = False, selinux: bool = False, acls: bool = False, *,
                progress: Progress | None = None) -> None:
        """Write guest *directory* as a tar archive to host file *tarfile* (members
        ``./...``; symbolic links stored, not followed).  *compress*: ``gzip``,
        ``bzip2`` or ``xz``; *numericowner*: owners by number only; *excludes*: glob
        patterns of members to leave out; *xattrs*, *selinux*, *acls*: keep those.
        The transfer times out only if it stalls."""
        with host_file(tarfile, "wb") as sink, self._agent_for("tar_out") as agent:
            agent.download("tar_out", sink, progress=progress, directory=directory,
                           compress=compress, numericowner=numericowner,
                           excludes=list(excludes or []), xattrs=xattrs, selinux=selinux,
                           acls=acls)

    @serialised
    def tar_in(self, tarfile: HostFile, directory: str, compress: str | None = None,
               xattrs: bool = False, selinux: bool = False, acls: bool = False, *,
               progress: Progress | None = None) -> None:
        """Extract host tar archive *tarfile* into guest *directory* (GNU tar as root:
        owners by number, modes kept).  *compress*: ``gzip``, ``bzip2`` or ``xz``;
        *xattrs*, *selinux*, *acls*: restore those.  As GNU tar, a leading ``/`` is
        stripped from member names and a member with ``..`` is skipped, the call then
        failing once the rest is extracted; symbolic links already in the guest cannot
        lead tar out of the filesystem holding *directory*."""
        with host_file(tarfile, "rb") as source, self._agent_for("tar_in") as agent:
            agent.upload("tar_in", source, progress=progress, directory=directory,
                         compress=compress, xattrs=xattrs, selinux=selinux, acls=acls)
