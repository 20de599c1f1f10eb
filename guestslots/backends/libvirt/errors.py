"""Which libvirt errors say that QEMU's monitor is gone (QEMU died or hangs up),
as opposed to QEMU or libvirt refusing a request.

libvirt reports a monitor it can no longer read as a system error of its QEMU
driver (``Unable to read from monitor: Connection reset by peer``), the code of
an image it cannot open too, and one that reached its end as an internal error
(``End of file from qemu monitor``), the code of QEMU's refusal of a command:
the message tells them apart.  (Untranslated: a translated message is not
recognised, and the caller asks the process itself.)
"""

from __future__ import annotations

import libvirt


def monitor_lost(domain: int, code: int, message: str) -> bool:
    """Whether a libvirt error (its *domain*, *code* and *message*) means the QEMU
    monitor is lost rather than a refused request."""
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return True
    return (domain == libvirt.VIR_FROM_QEMU
            and code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR)
            and "monitor" in message.lower())
