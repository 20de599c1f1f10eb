"""The libvirt backend's local helpers: which URIs are an embedded driver's."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from guestslots.backends.libvirt.connection import embedded


def test_embedded_uris_are_told_from_daemons() -> None:
    for uri in ("embed", "qemu:///embed?root=/tmp/x", "qemu:///embed"):
        assert embedded(uri), uri
    for uri in ("qemu:///system", "qemu:///session", "qemu+unix:///system?socket=/a/embed",
                "qemu+ssh://embed/system"):
        assert not embedded(uri), uri
