"""Guest calls over the appliance's NICs (see :meth:`Appliance.add_nic`).

Paired with the agent's ``net`` area.
"""

from __future__ import annotations

from .base import GuestCalls, serialised


class NetCalls(GuestCalls):
    """Fetching into the mounted guest filesystem over a plugged NIC."""

    @serialised
    def fetch(self, url: str, path: str, timeout: float = 60.0) -> int:
        """Fetch *url* (``http`` or ``https``, as the appliance sees it: the host's
        127.0.0.1 is the ``user`` network's gateway, ``http://10.0.2.2:PORT/...``) into
        guest file *path*, replacing it; return its size.  Needs a plugged NIC
        (:meth:`add_nic`) and a writable mount."""
        return int(self._call("fetch", wait_for=float(timeout) + 10, url=url, path=path,
                              timeout=timeout))
