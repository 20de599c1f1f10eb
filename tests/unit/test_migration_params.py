"""Typed migration parameters: every refusal names its parameter, and the guest's view
that a destination may not change.  The two mappings are tested beside their
backends' (test_qmp_migration_plan, test_libvirt_migration_params)."""

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
    host_side_difference,
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
    assert host_side_difference(record(), moved) == \
        "slot 0: path '/img/a' would become '/copy/a'"


def test_the_qemu_backend_refuses_host_side_changes_it_would_not_apply() -> None:
    """Seed 002: a destination configuration a hypervisor cannot apply fails; before,
    the QEMU backend accepted a changed image path and ignored it."""
    moved = record(slots=tuple(dataclasses.replace(s, path=s.path and "/copy/a")
                               for s in record().slots))
    with pytest.raises(MigrationParamError, match="cannot change host-side settings in "
                       "a migration: slot 0: path") as caught:
        check_destination(MigrationParams(destination_config=moved), record(), "qemu")
    assert caught.value.param == "destination_config"
    tap = record(nics=(dataclasses.replace(record().nics[0], tap="tap9"),))
    with pytest.raises(MigrationParamError, match="NIC 0: tap None would become 'tap9'"):
        check_destination(MigrationParams(destination_config=tap), record(), "qemu")
    # the same settings in another process (pid, sockets, work directory): accepted
    same = record(pid=99, workdir="/elsewhere", qmp_socket="/elsewhere/q")
    check_destination(MigrationParams(destination_config=same), record(), "qemu")


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


def test_libvirts_typed_parameters_are_taken_by_their_names() -> None:
    """Seed 002: a program written against libvirt's VIR_MIGRATE_PARAM_* names works
    unchanged; our Pythonic names stay."""
    typed = {"migrate_uri": "tcp:10.0.0.2:49152", "destination_name": "copy",
             "destination_xml": "<domain/>", "bandwidth": 100,
             "parallel.connections": 2, "migrate_disks": ["sdb", "sdaa"]}
    params = MigrationParams.from_typed(typed)
    assert params == MigrationParams(uri="tcp:10.0.0.2:49152", destination_name="copy",
                                     destination_config="<domain/>", bandwidth=100,
                                     parallel_connections=2, disks=[1, 26])
    assert params.to_typed() == typed
    assert MigrationParams.from_typed({}) == MigrationParams()
    assert MigrationParams.from_typed({"migrate_disks": "sdc"}).disks == (2,)  # one value
    assert MigrationParams(destination_uri="qemu:///system").to_typed() == {}


def test_libvirt_constants_match_the_typed_names() -> None:
    libvirt = pytest.importorskip("libvirt")
    from guestslots.model.migration import TYPED
    assert set(TYPED) == {libvirt.VIR_MIGRATE_PARAM_URI, libvirt.VIR_MIGRATE_PARAM_DEST_NAME,
                          libvirt.VIR_MIGRATE_PARAM_DEST_XML,
                          libvirt.VIR_MIGRATE_PARAM_BANDWIDTH,
                          libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS,
                          libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS}


@pytest.mark.parametrize(("typed", "param", "said"), [
    ({"migrate-uri": "unix:/x"}, "migrate-uri", "no such typed parameter"),
    ({"bandwidth": "100"}, "bandwidth", "VIR_TYPED_PARAM_ULLONG"),
    ({"bandwidth": True}, "bandwidth", "VIR_TYPED_PARAM_ULLONG"),
    ({"bandwidth": -1}, "bandwidth", "negative"),
    ({"migrate_uri": 5}, "migrate_uri", "VIR_TYPED_PARAM_STRING"),
    ({"destination_xml": None}, "destination_xml", "VIR_TYPED_PARAM_STRING"),
    ({"parallel.connections": 1000}, "parallel.connections", "the most it can be"),
    ({"migrate_disks": ["vda"]}, "migrate_disks", "not a slot's disk target"),
    ({"migrate_disks": ["sdb", "sdb"]}, "migrate_disks", "named twice"),
])
def test_a_wrong_typed_parameter_is_refused_by_its_name(typed: dict[str, Any], param: str,
                                                        said: str) -> None:
    with pytest.raises(MigrationParamError, match=said) as caught:
        MigrationParams.from_typed(typed)
    assert caught.value.param == param


@pytest.mark.parametrize("ours", [{"downtime_limit": 10}, {"with_disk_set": True},
                                  {"disk_directory": "/d", "disks": [0]},
                                  {"destination_config": record()}])
def test_what_has_no_typed_parameter_is_not_dropped(ours: dict[str, Any]) -> None:
    with pytest.raises(MigrationParamError, match="no libvirt typed parameter") as caught:
        MigrationParams(**ours).to_typed()
    assert caught.value.param in ours
