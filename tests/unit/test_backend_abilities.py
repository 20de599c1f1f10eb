"""What each backend can do beyond the Backend protocol is declared by the small
protocols it satisfies, which the Appliance checks with isinstance (never by
attribute name): this pins which backend has which ability, and (mypy reads this
file) that their signatures match."""

from __future__ import annotations

import pytest

from guestslots.backends import (
    Detachable,
    KeepsDiskSetMetadata,
    Migrates,
    RestoresUnderItsName,
    Saves,
    Snapshots,
    check_options,
)
from guestslots.backends.libvirt import LibvirtBackend
from guestslots.backends.qemu import QemuBackend

ABILITIES = (Saves, Migrates, Snapshots, Detachable, KeepsDiskSetMetadata, RestoresUnderItsName)


@pytest.mark.parametrize(("backend", "has"), [
    (QemuBackend, {Saves, Migrates, Snapshots, Detachable}),
    (LibvirtBackend, set(ABILITIES)),
])
def test_each_backend_declares_its_abilities(backend: type, has: set[type]) -> None:
    assert {ability for ability in ABILITIES if issubclass(backend, ability)} == has


def _signatures_match(qemu: QemuBackend, libvirt: LibvirtBackend) -> None:
    """Never run: mypy checks that each backend's methods fit the protocols."""
    saves: list[Saves] = [qemu, libvirt]
    migrates: list[Migrates] = [qemu, libvirt]
    snapshots: list[Snapshots] = [qemu, libvirt]
    detachable: list[Detachable] = [qemu, libvirt]
    metadata: KeepsDiskSetMetadata = libvirt
    named: RestoresUnderItsName = libvirt
    del saves, migrates, snapshots, detachable, metadata, named


def test_each_backend_checks_its_own_options() -> None:
    with pytest.raises(ValueError, match="uri= is for the libvirt backend"):
        check_options("qemu", "qemu:///system", False, 1)
    with pytest.raises(ValueError, match="needs a libvirt daemon"):
        check_options("libvirt", "embed", True, 1)
    with pytest.raises(ValueError, match="is not available"):
        check_options("xen", None, False, 1)
    check_options("qemu", None, True, 4)
    check_options("libvirt", "qemu:///system", True, 1)
    check_options("libvirt", None, False, 4)  # vCPUs by id on libvirt too (issue 33)
