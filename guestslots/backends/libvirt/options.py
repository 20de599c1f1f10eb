"""What the libvirt backend accepts before launch (libvirt itself is not imported
unless a URI must be looked at)."""

from __future__ import annotations


def check(uri: str | None, detached: bool, max_vcpus: int) -> None:
    """Refuse what the libvirt backend cannot do: a detached appliance at the embedded
    driver (it lives in its caller's process)."""
    if detached:
        from .connection import embedded
        from .connection import uri as default_uri

        if embedded(uri or default_uri()):
            raise ValueError("detached=True on the libvirt backend needs a libvirt "
                             "daemon (uri='qemu:///system', or GUESTSLOTS_LIBVIRT_URI): "
                             "the embedded driver lives in its caller's process")
