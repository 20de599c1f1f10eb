"""The QEMU backend's mapping of migration parameters to QMP commands (pure): the
source's and destination's commands, the mirrors of copied slots, the jobs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...model.migration import MAX_BANDWIDTH, MIB, MigrationParamError, MigrationParams


@dataclass(frozen=True)
class QmpPlan:
    """QMP commands for a migration, in order, as (command, arguments).

    ``destination``: on the destination QEMU (started with ``-incoming defer``, the
    copies plugged) before the stream; ``mirrors``: on the source, one NBD client
    node and one mirror job per copied disk (wait for each job's BLOCK_JOB_READY
    before ``migrate``); ``source``: the stream's own settings and ``migrate``.
    With copied disks the source pauses at ``pre-switchover`` (its VM stopped, the
    destination not yet started): ``switchover`` cancels the mirrors (a mirror
    cancelled when ready ends with its target in step: BLOCK_JOB_COMPLETED for each
    of ``jobs``), ``finish_source`` removes them, ``finish_destination`` stops the
    destination's NBD server (so its exports hold no image when the VM starts),
    and ``resume`` lets the stream finish."""

    destination: tuple[tuple[str, dict[str, Any]], ...]
    mirrors: tuple[tuple[str, dict[str, Any]], ...]
    source: tuple[tuple[str, dict[str, Any]], ...]
    switchover: tuple[tuple[str, dict[str, Any]], ...] = ()
    finish_source: tuple[tuple[str, dict[str, Any]], ...] = ()
    finish_destination: tuple[tuple[str, dict[str, Any]], ...] = ()
    resume: tuple[tuple[str, dict[str, Any]], ...] = ()
    jobs: tuple[str, ...] = ()
    #: The source's NBD client nodes the mirrors write to.
    targets: tuple[str, ...] = ()


def check_params(params: MigrationParams) -> None:
    """Refuse (before anything starts) what the QEMU backend cannot carry out: a
    libvirt destination, a new name (its appliance is known by its id, which a
    migration keeps: seed 002's rename is "only allowed with hypervisors that
    support renaming"), a stream URI the new process cannot listen at."""
    if params.destination_uri:
        raise MigrationParamError("destination_uri", "the QEMU backend moves the "
                                  "appliance to a new QEMU process of its own, not to a "
                                  "libvirt")
    if params.destination_name:
        raise MigrationParamError("destination_name", "the QEMU backend cannot rename "
                                  "an appliance: it is known by its id, which the new "
                                  "process keeps")
    if params.uri:
        check_uri(params.uri)


def check_uri(uri: str) -> None:
    """Refuse a stream URI the new QEMU process cannot listen at: it takes
    ``unix:PATH`` (an absolute path) or ``tcp:HOST:PORT``."""
    scheme, _, rest = uri.partition(":")
    if scheme == "unix" and rest.startswith("/") and not rest.startswith("//"):
        return
    if scheme == "tcp" and re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+):[0-9]{1,5}",
                                        rest) and 0 < int(rest.rsplit(":", 1)[1]) < 65536:
        return
    raise MigrationParamError("uri", f"{uri!r}: the new QEMU process listens at "
                              "unix:/ABSOLUTE/PATH or tcp:HOST:PORT")


def qmp_plan(params: MigrationParams, disk_nodes: Mapping[int, tuple[str, str]],
             nbd_socket: str = "") -> QmpPlan:
    """The QMP commands that carry out *params*.  *disk_nodes*: for each slot to copy
    (``params.disk_slots``), the block node the guest's device reads on the source
    and on the destination (where the copy is plugged); *nbd_socket*: a Unix
    socket path for the destination's NBD server (needed when disks are copied).

    The mirrors run in ``write-blocking`` mode: once ready, a guest write completes
    only when it is on both sides, so the copy keeps pace with any write rate and
    the final catch-up, inside the downtime, is short."""
    if not params.uri:
        raise MigrationParamError("uri", "QMP needs a URI (unix:PATH, tcp:HOST:PORT...)")
    check_params(params)
    if disk_nodes and not nbd_socket:
        raise MigrationParamError("disks", "copying disks needs an NBD socket")
    server = {"type": "unix", "path": nbd_socket}
    destination: list[tuple[str, dict[str, Any]]] = []
    mirrors: list[tuple[str, dict[str, Any]]] = []
    switchover: list[tuple[str, dict[str, Any]]] = []
    finish_source: list[tuple[str, dict[str, Any]]] = []
    jobs, targets = [], []
    if disk_nodes:
        # nbd-server-start takes the legacy (nested) form of a socket address
        destination.append(("nbd-server-start", {"addr": {"type": "unix",
                                                          "data": {"path": nbd_socket}}}))
    for slot in sorted(disk_nodes):
        node, copy = disk_nodes[slot]
        export, target, job = f"migrate-{slot}", f"migrate-target-{slot}", f"migrate-{slot}"
        destination.append(("block-export-add", {"type": "nbd", "id": export,
                                                 "node-name": copy, "name": export,
                                                 "writable": True}))
        mirrors.append(("blockdev-add", {"driver": "nbd", "node-name": target,
                                         "server": server, "export": export}))
        mirrors.append(("blockdev-mirror", {"job-id": job, "device": node,
                                            "target": target, "sync": "full",
                                            "copy-mode": "write-blocking",
                                            "auto-dismiss": False}))
        switchover.append(("block-job-cancel", {"device": job}))
        finish_source += [("job-dismiss", {"id": job}),
                          ("blockdev-del", {"node-name": target})]
        jobs.append(job)
        targets.append(target)
    parameters: dict[str, Any] = {"max-bandwidth": params.bandwidth * MIB}
    capabilities = []
    if params.downtime_limit:
        parameters["downtime-limit"] = params.downtime_limit
    if params.parallel_connections > 1:
        parameters["multifd-channels"] = params.parallel_connections
        capabilities.append({"capability": "multifd", "state": True})
    source: list[tuple[str, dict[str, Any]]] = []
    if capabilities:
        destination.insert(0, ("migrate-set-capabilities",
                               {"capabilities": list(capabilities)}))
        destination.insert(1, ("migrate-set-parameters",
                               {"multifd-channels": params.parallel_connections}))
    if disk_nodes:
        capabilities.append({"capability": "pause-before-switchover", "state": True})
    if capabilities:
        source.append(("migrate-set-capabilities", {"capabilities": capabilities}))
    if not params.bandwidth:
        # 0 is "the default" for callers; QEMU's own default is 128 MiB/s, a limit
        # no local migration wants
        parameters["max-bandwidth"] = MAX_BANDWIDTH * MIB
    source.append(("migrate-set-parameters", parameters))
    source.append(("migrate", {"uri": params.uri}))
    finish_destination: list[tuple[str, dict[str, Any]]] = \
        [("nbd-server-stop", {})] if disk_nodes else []
    resume: list[tuple[str, dict[str, Any]]] = \
        [("migrate-continue", {"state": "pre-switchover"})] if disk_nodes else []
    return QmpPlan(tuple(destination), tuple(mirrors), tuple(source), tuple(switchover),
                   tuple(finish_source), tuple(finish_destination), tuple(resume),
                   tuple(jobs), tuple(targets))
