"""The libvirt backend's mapping of migration parameters to its typed parameters and
flags (moved with libvirt_params from test_migration_params, unchanged)."""

from __future__ import annotations

import pytest

from guestslots.backends.libvirt.params import libvirt_params
from guestslots.model.migration import MigrationParamError, MigrationParams

from .test_migration_params import record


def test_the_libvirt_mapping_uses_libvirts_names_and_flags() -> None:
    libvirt = pytest.importorskip("libvirt")
    typed, flags = libvirt_params(
        MigrationParams(uri="tcp:10.0.0.2:49152", destination_name="copy",
                        destination_uri="qemu:///system",
                        destination_config="<domain/>", bandwidth=100,
                        parallel_connections=2, with_disk_set=True), ["sda", "sdc"],
        "unix:///w/nbd.sock")
    assert typed == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp:10.0.0.2:49152",
                     libvirt.VIR_MIGRATE_PARAM_DEST_NAME: "copy",
                     libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain/>",
                     libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
                     libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 2,
                     libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["sda", "sdc"],
                     libvirt.VIR_MIGRATE_PARAM_DISKS_URI: "unix:///w/nbd.sock"}
    assert flags == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
                     | libvirt.VIR_MIGRATE_PARALLEL | libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    there = MigrationParams(destination_uri="qemu:///system")
    plain, plain_flags = libvirt_params(there)
    assert plain == {} and not plain_flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK
    with pytest.raises(MigrationParamError, match="'destination_uri': the libvirt backend"):
        libvirt_params(MigrationParams())
    with pytest.raises(MigrationParamError, match="migrateSetMaxDowntime"):
        libvirt_params(there.replace(downtime_limit=10))
    with pytest.raises(MigrationParamError, match="domain XML"):
        libvirt_params(there.replace(destination_config=record()))
    # the copies' directory is the backend's (their paths go into the XML)
    assert libvirt_params(there.replace(disks=[0], disk_directory="/copies")) == \
        (plain, plain_flags)


@pytest.mark.parametrize("uri", ["tcp://10.0.0.2:49152", "tcp:10.0.0.2:49152",
                                 "rdma://h", "unix:///w/m.sock"])
def test_migrate_uris_libvirt_takes(uri: str) -> None:
    typed, _ = libvirt_params(MigrationParams(destination_uri="qemu:///system", uri=uri))
    assert typed["migrate_uri"] == uri


@pytest.mark.parametrize("uri", ["bogus://x", "unix:/w/m.sock", "tcp:", "exec:cat",
                                 "/w/m.sock"])
def test_a_migrate_uri_libvirt_would_refuse_late_is_refused_first(uri: str) -> None:
    with pytest.raises(MigrationParamError, match="libvirt's QEMU driver takes") as caught:
        libvirt_params(MigrationParams(destination_uri="qemu:///system", uri=uri))
    assert caught.value.param == "uri"
