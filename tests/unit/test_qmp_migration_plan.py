"""The QEMU backend's mapping of migration parameters to QMP commands (moved with
qmp_plan from test_migration_params, unchanged)."""

from __future__ import annotations

import pytest

from guestslots.backends.qemu.migration_plan import check_params, qmp_plan
from guestslots.model.migration import MAX_BANDWIDTH, MigrationParamError, MigrationParams


def test_the_largest_bandwidth_still_fits_qemus_bytes_per_second() -> None:
    plan = qmp_plan(MigrationParams(uri="unix:/m", bandwidth=MAX_BANDWIDTH), {})
    assert dict(plan.source)["migrate-set-parameters"]["max-bandwidth"] <= (1 << 63) - 1


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


def test_the_qmp_mapping_refuses_a_destination_libvirt() -> None:
    with pytest.raises(MigrationParamError, match="'destination_uri': the QEMU backend"):
        qmp_plan(MigrationParams(uri="unix:/m", destination_uri="qemu:///system"), {})


@pytest.mark.parametrize("uri", ["unix:/w/m.sock", "tcp:127.0.0.1:4444", "tcp:[::1]:4444",
                                 "tcp:localhost:1"])
def test_stream_uris_the_new_process_can_listen_at(uri: str) -> None:
    check_params(MigrationParams(uri=uri))


@pytest.mark.parametrize("uri", ["bogus:/x", "unix:relative.sock", "unix://host/x",
                                 "tcp:localhost", "tcp:localhost:0", "tcp:host:70000",
                                 "exec:cat", "fd:3", "tcp://127.0.0.1:4444", "/w/m.sock"])
def test_a_stream_uri_it_cannot_listen_at_is_refused_before_anything_starts(uri: str) -> None:
    with pytest.raises(MigrationParamError, match="listens at unix:") as caught:
        check_params(MigrationParams(uri=uri))
    assert caught.value.param == "uri"


def test_the_qemu_backend_refuses_a_new_name() -> None:
    """Seed 002: a rename only where the hypervisor supports it; before, the QEMU
    backend accepted destination_name and ignored it."""
    with pytest.raises(MigrationParamError, match="cannot rename") as caught:
        check_params(MigrationParams(destination_name="copy"))
    assert caught.value.param == "destination_name"
