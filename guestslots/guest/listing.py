"""Guest calls for looking around as in a shell: df, df-h, ll, file.

Paired with the agent's ``listing`` area.
"""

from __future__ import annotations

from .base import GuestCalls, serialised


class ListingCalls(GuestCalls):
    """df, df-h, ll and file."""

    @serialised
    def df(self) -> str:
        """Space used and free on every mounted guest filesystem, as ``df`` shows it
        (1K blocks), with the API's device names and the guest's mount points."""
        return self._out(str(self._call("df")))

    @serialised
    def df_h(self) -> str:
        """As :meth:`df`, in sizes people read (``df -h``: K, M, G in powers of 1024)."""
        return self._out(str(self._call("df", human_readable=True)))

    @serialised
    def ll(self, directory: str) -> str:
        """Every entry of guest directory *directory* with its details, as ``ls -la``
        shows them (owners by number unless root)."""
        return str(self._call("ll", directory=directory))

    @serialised
    def file(self, path: str) -> str:
        """What *path* is: ``directory``, ``symbolic link``, ``character device``,
        ``block device``, ``FIFO``, ``socket``, or for a regular file what ``file -zb``
        says of its contents (``ASCII text``, ``ELF 64-bit LSB pie executable...``)."""
        return str(self._call("file", path=path))
