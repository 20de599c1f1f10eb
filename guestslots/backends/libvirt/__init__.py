"""The libvirt backend: the appliance as a transient libvirt domain.

By default through libvirt's embedded QEMU driver (no daemon, see
:mod:`.connection`); the domain XML is built with lxml from the same
configuration as QEMU's command line (:mod:`.domxml`).  Slots are plugged with
``attachDeviceFlags`` and unplugged with ``detachDeviceFlags``, the removal
confirmed by libvirt's device-removed event, never assumed.

Saved states through libvirt's own ``saveFlags`` / ``restoreFlags``, kept and
verified by :mod:`guestslots.host.savedstate` like the QEMU backend's.  libvirt
restores a state only under the name and uuid it was saved with, so domains are
named ``guestslots-LAYOUT-N`` with the first N free at the connection: the N-th
appliance of a layout running at once boots cold once, and restores its own
state from then on.  libvirt's save stops the domain, so the launch that saved
restores what it saved (which proves the state before any other launch uses it).
"""

from __future__ import annotations

import os

from ...host.cache import cache_root

# The embedded driver logs to standard error (where a CLI's one-line errors go) unless
# told otherwise, and libvirt reads this when it is imported: errors go to a file in
# the cache instead (the calls raise them anyway).
cache_root().mkdir(parents=True, exist_ok=True)
os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", f"4:file:{cache_root() / 'libvirt.log'}")

from .migration import DomainMigration


class LibvirtBackend(DomainMigration):
    """One appliance VM run as a transient libvirt domain."""
