"""Typed migration parameters (seed 002): every refusal names its parameter, the guest's
view that a destination may not change, and the two mappings (QMP, libvirt)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from guestslots.model.migration import (
    MAX_BANDWIDTH,
    PARAMS,
    MigrationParamError,
    MigrationParams,
    check_destination,
    guest_abi_difference,
    libvirt_params,
    qmp_plan,
)
from guestslots.model.runtime import NicRecord, RuntimeRecord, SlotRecord


def record(**changes: Any) -> RuntimeRecord:
    base = RuntimeRecord(
        id="9f2c41d7", backend="qemu", pid=4242, started=1.5, updated=2.5,
        workdir="/tmp/guestslots-x", qmp_socket="/tmp/guestslots-x/qmp.sock",
        agent_socket="/tmp/guestslots-x/agent.sock", layout_key="k",
        slots=(SlotRecord(0, "/dev/sda", "disk-9f2c-0", "filled", "/img/a", "raw", False,
                          False, None, "slot0"),
               SlotRecord(1, "/dev/sdb", "disk-9f2c-1", "empty", serial="slot1")),
        vcpus_max=4, vcpus_plugged=(0, 1),
        nics=(NicRecord(0, "nic-9f2c-0", "user", "52:54:00:9f:2c:00", "10.0.2.15/24"),),
        diskset=(0,))
    return dataclasses.replace(base, **changes)


def test_values_read_back_and_defaults_fill_the_rest() -> None:
    p = MigrationParams(uri="unix:/run/m.sock", bandwidth=64, disks=[2, 0])
    assert (p.uri, p.bandwidth, p.disks, p.with_disk_set) == ("unix:/run/m.sock", 64,
                                                              (0, 2), False)
    assert p.destination_name == "" and p.destination_config is None
    assert p.items() == {"uri": "unix:/run/m.sock", "bandwidth": 64, "disks": (0, 2)}
    assert MigrationParams.from_mapping(p.items()) == p
    assert p.replace(bandwidth=0).items() == {"uri": "unix:/run/m.sock", "disks": (0, 2)}
    assert "bandwidth=64" in repr(p)
    with pytest.raises(AttributeError, match="read-only"):
        p.bandwidth = 1


@pytest.mark.parametrize(("values", "param", "why"), [
    ({"bandwdith": 10}, "bandwdith", "did you mean 'bandwidth'"),
    ({"color": "red"}, "color", "no such parameter"),
    ({"bandwidth": -1}, "bandwidth", "-1 is negative"),
    ({"bandwidth": MAX_BANDWIDTH + 1}, "bandwidth", "the most it can be"),
    ({"bandwidth": 1.5}, "bandwidth", "whole number"),
    ({"bandwidth": True}, "bandwidth", "whole number"),
    ({"bandwidth": "10"}, "bandwidth", "whole number"),
    ({"downtime_limit": -5}, "downtime_limit", "negative"),
    ({"parallel_connections": 256}, "parallel_connections", "the most it can be"),
    ({"uri": 7}, "uri", "a string is needed"),
    ({"uri": "unix:/a\0b"}, "uri", "NUL"),
    ({"with_disk_set": 1}, "with_disk_set", "True or False"),
    ({"disks": "sda"}, "disks", "list of slot indices"),
    ({"disks": [0, -1]}, "disks", "-1 is not a slot index"),
    ({"disks": [1, 1]}, "disks", "named twice"),
    ({"disks": [0], "with_disk_set": True}, "disks", "not both"),
    ({"destination_config": {"slots": []}}, "destination_config", "RuntimeRecord"),
])
def test_every_refusal_names_the_parameter(values: dict[str, Any], param: str,
                                            why: str) -> None:
    with pytest.raises(MigrationParamError, match=why) as caught:
        MigrationParams.from_mapping(values)
    assert caught.value.param == param
    assert f"migration parameter {param!r}" in str(caught.value)


def test_the_largest_bandwidth_still_fits_qemus_bytes_per_second() -> None:
    plan = qmp_plan(MigrationParams(uri="unix:/m", bandwidth=MAX_BANDWIDTH), {})
    assert dict(plan.source)["migrate-set-parameters"]["max-bandwidth"] <= (1 << 63) - 1


def test_every_parameter_is_documented_and_has_a_valid_default() -> None:
    for name, spec in PARAMS.items():
        assert spec.doc, name
        # given explicitly, the default passes the parameter's own check (before, the
        # default was compared with itself through __getattr__, which cannot fail)
        given = MigrationParams(**{name: spec.default})
        assert getattr(given, name) == spec.default, name
        assert given == MigrationParams(), name  # and counts as not set


def test_the_disks_copied_are_the_named_ones_or_the_disk_set() -> None:
    assert MigrationParams(disks=[2]).disk_slots([0], [0, 2]) == (2,)
    assert MigrationParams(with_disk_set=True).disk_slots([3, 0], [0, 3]) == (0, 3)
    assert MigrationParams().disk_slots([0], [0]) == ()
    with pytest.raises(MigrationParamError, match="slot 1 is empty") as caught:
        MigrationParams(disks=[1]).disk_slots([], [0])
    assert caught.value.param == "disks"


def test_host_side_changes_are_not_a_change_for_the_guest() -> None:
    moved = record(pid=99, workdir="/elsewhere", qmp_socket="/elsewhere/q",
                   slots=tuple(dataclasses.replace(s, path=s.path and "/copy/a")
                               for s in record().slots))
    assert guest_abi_difference(record(), moved) is None
    check_destination(MigrationParams(destination_config=moved), record(), "qemu")


@pytest.mark.parametrize(("change", "said"), [
    ({"memory_mb": 1024}, "memory 512 MiB would become 1024 MiB"),
    ({"vcpus_max": 2}, "vCPU ids 0..3 would become 0..1"),
    ({"vcpus_plugged": (0,)}, "plugged vCPUs [0, 1] would become [0]"),
    ({"slots": record().slots[:1]}, "2 slots would become 1"),
    ({"slots": (dataclasses.replace(record().slots[0], serial="other"),
                record().slots[1])}, "slot 0: serial 'slot0' would become 'other'"),
    ({"slots": (dataclasses.replace(record().slots[0], readonly=True),
                record().slots[1])}, "slot 0: read-only False would become True"),
    ({"nics": ()}, "1 NICs would become 0"),
    ({"nics": (dataclasses.replace(record().nics[0], mac="52:54:00:00:00:01"),)},
     "NIC 0: MAC '52:54:00:9f:2c:00' would become '52:54:00:00:00:01'"),
])
def test_a_destination_that_changes_the_guests_view_is_refused(
    change: dict[str, Any], said: str,
) -> None:
    assert guest_abi_difference(record(), record(**change)) == said
    with pytest.raises(MigrationParamError, match="refused, it would change") as caught:
        check_destination(MigrationParams(destination_config=record(**change)), record(),
                          "qemu")
    assert caught.value.param == "destination_config" and said in str(caught.value)


def test_each_backend_takes_its_own_kind_of_destination_config() -> None:
    with pytest.raises(MigrationParamError, match="domain XML"):
        check_destination(MigrationParams(destination_config=record()), record(), "libvirt")
    with pytest.raises(MigrationParamError, match="takes a RuntimeRecord"):
        check_destination(MigrationParams(destination_config="<domain/>"), record(), "qemu")
    check_destination(MigrationParams(destination_config="<domain/>"), record(), "libvirt")


def test_the_qmp_mapping_of_a_plain_migration() -> None:
    plan = qmp_plan(MigrationParams(uri="unix:/run/m.sock", bandwidth=10,
                                    downtime_limit=50), {})
    assert plan.destination == () and plan.mirrors == () and plan.jobs == ()
    assert plan.source == (
        ("migrate-set-parameters", {"max-bandwidth": 10 << 20, "downtime-limit": 50}),
        ("migrate", {"uri": "unix:/run/m.sock"}),
    )
    unlimited = qmp_plan(MigrationParams(uri="unix:/m"), {})
    assert unlimited.source[0][1]["max-bandwidth"] == MAX_BANDWIDTH << 20
    with pytest.raises(MigrationParamError, match="needs a URI"):
        qmp_plan(MigrationParams(), {})


def test_the_qmp_mapping_copies_disks_over_nbd_and_sets_multifd_on_both_sides() -> None:
    plan = qmp_plan(MigrationParams(uri="unix:/m", parallel_connections=4),
                    {1: ("slot1-top", "slot1-fmt"), 0: ("slot0-snap2", "slot0-fmt")},
                    nbd_socket="/run/nbd.sock")
    names = [c for c, _ in plan.destination]
    assert names == ["migrate-set-capabilities", "migrate-set-parameters",
                     "nbd-server-start", "block-export-add", "block-export-add"]
    # the destination gets multifd, never the pause (that is the source's to take)
    assert plan.destination[0][1] == {"capabilities": [{"capability": "multifd",
                                                        "state": True}]}
    # the server takes QEMU's legacy socket address, the client node the flat one
    assert plan.destination[2][1] == {"addr": {"type": "unix",
                                               "data": {"path": "/run/nbd.sock"}}}
    # the export is of the copy's node there; the mirror reads the guest's node here
    assert plan.destination[3][1]["node-name"] == "slot0-fmt"
    assert plan.destination[3][1]["writable"] is True
    assert [c for c, _ in plan.mirrors] == ["blockdev-add", "blockdev-mirror"] * 2
    mirror = plan.mirrors[1][1]
    assert mirror == {"job-id": "migrate-0", "device": "slot0-snap2",
                      "target": "migrate-target-0", "sync": "full",
                      "copy-mode": "write-blocking", "auto-dismiss": False}
    assert plan.mirrors[0][1]["export"] == plan.destination[3][1]["name"]
    assert plan.mirrors[0][1]["server"] == {"type": "unix", "path": "/run/nbd.sock"}
    assert plan.jobs == ("migrate-0", "migrate-1")
    assert plan.targets == ("migrate-target-0", "migrate-target-1")  # abandoned on failure
    assert plan.source[0] == ("migrate-set-capabilities", {"capabilities": [
        {"capability": "multifd", "state": True},
        {"capability": "pause-before-switchover", "state": True}]})
    assert plan.source[1][1]["multifd-channels"] == 4
    # at the pause: the mirrors end in step, go, the exports go, the stream goes on
    assert plan.switchover == (("block-job-cancel", {"device": "migrate-0"}),
                               ("block-job-cancel", {"device": "migrate-1"}))
    assert [c for c, _ in plan.finish_source] == ["job-dismiss", "blockdev-del"] * 2
    assert plan.finish_destination == (("nbd-server-stop", {}),)
    assert plan.resume == (("migrate-continue", {"state": "pre-switchover"}),)
    with pytest.raises(MigrationParamError, match="NBD socket"):
        qmp_plan(MigrationParams(uri="unix:/m"), {0: ("n", "n")})


def test_a_migration_that_copies_nothing_never_pauses() -> None:
    plan = qmp_plan(MigrationParams(uri="unix:/m"), {})
    assert plan.switchover == plan.finish_source == plan.finish_destination == ()
    assert plan.resume == ()
    assert all(c != "migrate-set-capabilities" for c, _ in plan.source)


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


def test_the_qmp_mapping_refuses_a_destination_libvirt() -> None:
    with pytest.raises(MigrationParamError, match="'destination_uri': the QEMU backend"):
        qmp_plan(MigrationParams(uri="unix:/m", destination_uri="qemu:///system"), {})


def test_progress_reads_libvirts_job_statistics() -> None:
    from guestslots.model.migration import MigrationProgress

    stats = {"type": 2, "time_elapsed": 900, "downtime": 300, "memory_total": 512 << 20,
             "memory_processed": 80 << 20, "memory_remaining": 432 << 20,
             "memory_bps": 100_000_000, "disk_total": 64 << 20, "disk_processed": 1 << 20}
    running = MigrationProgress.from_libvirt(stats, "active")
    assert running == MigrationProgress("active", 80 << 20, 432 << 20, 512 << 20, 800.0,
                                        300, 0, 0, 1 << 20, 64 << 20)
    done = MigrationProgress.from_libvirt({"time_elapsed": 1500, "downtime": 48,
                                           "memory_bps": True}, "completed")
    assert (done.total_time_ms, done.downtime_ms, done.expected_downtime_ms,
            done.mbps) == (1500, 48, 0, 0.0)


def test_progress_reads_query_migrate_and_tolerates_what_qemu_leaves_out() -> None:
    from guestslots.model.migration import MigrationProgress

    running = MigrationProgress.from_qmp({
        "status": "active", "expected-downtime": 300, "total-time": 1200,
        "ram": {"transferred": 1 << 20, "remaining": 3 << 20, "total": 512 << 20,
                "mbps": 268.4}})
    assert running == MigrationProgress("active", 1 << 20, 3 << 20, 512 << 20, 268.4,
                                        300, 1200, 0)
    done = MigrationProgress.from_qmp({"status": "completed", "downtime": 41,
                                       "total-time": 2100, "ram": {"mbps": "?"}})
    assert (done.status, done.downtime_ms, done.total_time_ms, done.mbps) == (
        "completed", 41, 2100, 0.0)
    assert MigrationProgress.from_qmp({}).status == "none"
    copying = MigrationProgress.from_qmp({"status": "copying-disks", "disk": {
        "transferred": 5 << 20, "remaining": 27 << 20, "total": 32 << 20}})
    assert (copying.disk_transferred, copying.disk_total, copying.transferred) == (
        5 << 20, 32 << 20, 0)
