"""What the QEMU backend accepts before launch (no import of QMP here: checked when
an Appliance is made)."""

from __future__ import annotations


def check(uri: str | None, detached: bool, max_vcpus: int) -> None:
    """Refuse options the QEMU backend has no use for: a libvirt URI."""
    if uri is not None:
        raise ValueError("uri= is for the libvirt backend")
