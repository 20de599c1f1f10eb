"""Which libvirt errors mean that QEMU is gone (a hotplug then fails with a
QemuError, not a DriveError blaming the image)."""

from __future__ import annotations

import libvirt
import pytest

from guestslots.backends.libvirt.errors import monitor_lost

QEMU = libvirt.VIR_FROM_QEMU


@pytest.mark.parametrize("domain, code, message", [
    # CI, libvirt 9.0: QEMU killed while libvirt waited for its answer
    (QEMU, libvirt.VIR_ERR_SYSTEM_ERROR,
     "Unable to read from monitor: Connection reset by peer"),
    (QEMU, libvirt.VIR_ERR_INTERNAL_ERROR,
     "internal error: End of file from qemu monitor (vm='guestslots-x-0')"),
    (libvirt.VIR_FROM_NONE, libvirt.VIR_ERR_NO_DOMAIN,
     "Domain not found: no domain with matching uuid"),
])
def test_monitor_lost(domain: int, code: int, message: str) -> None:
    assert monitor_lost(domain, code, message)


@pytest.mark.parametrize("domain, code, message", [
    (QEMU, libvirt.VIR_ERR_INTERNAL_ERROR,
     "internal error: unable to execute QEMU command 'blockdev-add': Image is not "
     "in qcow2 format"),
    (libvirt.VIR_FROM_DOMAIN, libvirt.VIR_ERR_XML_ERROR, "XML error: bad target"),
    (QEMU, libvirt.VIR_ERR_SYSTEM_ERROR,
     "cannot access storage file '/x.img': No such file or directory"),
    (QEMU, libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: target sdb already exists"),
])
def test_refusal_is_not_loss(domain: int, code: int, message: str) -> None:
    assert not monitor_lost(domain, code, message)
