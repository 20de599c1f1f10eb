"""The libvirt backend's mapping of migration parameters to libvirt's typed
parameters (``migrate3``) and flags (pure: the names are spelled here, as libvirt's
C constants name them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...model.migration import MigrationParamError, MigrationParams

#: libvirt's typed parameter names (VIR_MIGRATE_PARAM_*) and flags (VIR_MIGRATE_*);
#: spelled here so that this model does not need libvirt-python.
LIBVIRT_URI = "migrate_uri"
LIBVIRT_DEST_NAME = "destination_name"
LIBVIRT_DEST_XML = "destination_xml"
LIBVIRT_BANDWIDTH = "bandwidth"
LIBVIRT_MIGRATE_DISKS = "migrate_disks"
LIBVIRT_DISKS_URI = "disks_uri"
LIBVIRT_PARALLEL_CONNECTIONS = "parallel.connections"
VIR_MIGRATE_LIVE = 1
VIR_MIGRATE_NON_SHARED_DISK = 64
VIR_MIGRATE_ABORT_ON_ERROR = 4096
VIR_MIGRATE_PARALLEL = 131072


def check_uri(uri: str) -> None:
    """Refuse a ``migrate_uri`` libvirt's QEMU driver would refuse only once the
    destination has started: it takes ``tcp://HOST[:PORT]`` (or ``tcp:HOST:PORT``),
    ``rdma://HOST[:PORT]`` or ``unix:///PATH``.  (libvirt's TUNNELLED mode, in which
    no ``migrate_uri`` may be given, is not one guestslots uses.)"""
    scheme, _, rest = uri.partition(":")
    if scheme in ("tcp", "rdma") and rest.strip("/"):
        return
    if scheme == "unix" and rest.startswith("///"):
        return
    raise MigrationParamError("uri", f"{uri!r}: libvirt's QEMU driver takes "
                              "tcp://HOST[:PORT], rdma://HOST[:PORT] or unix:///PATH")


def libvirt_params(params: MigrationParams, disk_targets: Sequence[str] = (),
                   disks_uri: str = "") -> tuple[dict[str, Any], int]:
    """libvirt's typed parameters and flags for ``migrate3`` / ``migrateToURI3``:
    *disk_targets* are the target names (``sda``...) of the disks to copy
    (``params.disk_slots`` mapped through the domain's disks), *disks_uri* where
    the destination's NBD server for them listens (empty: libvirt's TCP port).
    ``disk_directory`` is the caller's: the copies' paths go into the
    destination's XML."""
    typed: dict[str, Any] = {}
    flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_ABORT_ON_ERROR
    if not params.destination_uri:
        raise MigrationParamError("destination_uri", "the libvirt backend moves the "
                                  "appliance to another libvirt: name its URI")
    if params.uri:
        check_uri(params.uri)
        typed[LIBVIRT_URI] = params.uri
    if params.destination_name:
        typed[LIBVIRT_DEST_NAME] = params.destination_name
    if params.destination_config is not None:
        if not isinstance(params.destination_config, str):
            raise MigrationParamError("destination_config", "the libvirt backend takes "
                                      "the destination's domain XML")
        typed[LIBVIRT_DEST_XML] = params.destination_config
    if params.bandwidth:
        typed[LIBVIRT_BANDWIDTH] = params.bandwidth
    if params.downtime_limit:
        raise MigrationParamError("downtime_limit", "libvirt takes it while the migration "
                                  "runs (migrateSetMaxDowntime), not as a parameter")
    if params.parallel_connections > 1:
        typed[LIBVIRT_PARALLEL_CONNECTIONS] = params.parallel_connections
        flags |= VIR_MIGRATE_PARALLEL
    if disk_targets:
        typed[LIBVIRT_MIGRATE_DISKS] = list(disk_targets)
        flags |= VIR_MIGRATE_NON_SHARED_DISK
        if disks_uri:
            typed[LIBVIRT_DISKS_URI] = disks_uri
    return typed, flags
