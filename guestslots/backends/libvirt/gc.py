"""``guestslots gc`` for libvirt: destroy appliance domains whose owner died.

Each appliance domain records its owning process in its ``<metadata>``
(:func:`.domxml.owner_of`).  A domain whose owner is gone is destroyed (its
transient definition goes with it; a persistent one is undefined too).  Domains
of other machines, without an owner (not ours), or of detached appliances (they
outlive their owner by design: ``guestslots stop ID`` ends one) are left alone and
reported.
On the embedded driver there is nothing to ask: a dead caller's embedded root is
a stale work directory, and its QEMU dies with it
(:func:`guestslots.host.workdir.remove_stale`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import libvirt

from ...errors import GuestslotsError
from . import connection
from .domxml import is_detached, owner_of

PREFIX = "guestslots-"


def collect(uri: str, say: Callable[[str], None]) -> int:
    """Destroy the appliance domains at *uri* whose owner died; return how many."""
    try:
        conn = connection.connect(uri)
        domains = conn.listAllDomains(0)
    except libvirt.libvirtError as e:
        raise GuestslotsError(f"gc: libvirt at {uri}: {e.get_error_message()} "
                              f"(code {e.get_error_code()})") from None
    destroyed = 0
    for domain in domains:
        name = domain.name()
        if not name.startswith(PREFIX):
            continue
        try:
            xml = domain.XMLDesc(0)
        except libvirt.libvirtError:
            continue  # gone meanwhile
        owner = owner_of(xml)
        alive = owner.alive() if owner is not None else None
        if is_detached(xml):
            say(f"left {name}: a detached appliance (guestslots stop ID ends it)")
        elif owner is None:
            say(f"left {name}: it names no owner")
        elif alive is None:
            say(f"left {name}: its owner is on {owner.host}, not this machine's boot")
        elif alive:
            say(f"left {name}: its owner (pid {owner.pid}) is alive")
        else:
            with contextlib.suppress(libvirt.libvirtError):
                if domain.isActive():
                    domain.destroy()
                if domain.isPersistent():
                    domain.undefine()
            say(f"destroyed {name}: its owner (pid {owner.pid}) died")
            destroyed += 1
    return destroyed
