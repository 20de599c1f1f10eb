"""vCPU slots (seed 000): ids, -1 both ways, the boot CPU, flags' sets; and how both
backends declare them."""

from __future__ import annotations

import pytest

from guestslots.backends.qemu.qmpargs import (
    MachineConfig,
    qemu_command,
    vcpu_device_args,
    vcpu_positions,
)
from guestslots.model.cpus import MAX_VCPUS, VcpuError, VcpuTable, check_counts, check_tcg_change


def test_launch_plugs_the_first_vcpus_and_reserves_the_rest() -> None:
    t = VcpuTable(2, 4)
    assert t.config == {0, 1}
    listed = t.list(running=False)
    assert [v.present for v in listed] == [True, True, False, False]
    assert {v.online for v in listed} == {None}  # not running: nothing to ask the guest
    t.live = {0, 1}
    assert [v.state for v in t.list(True, online={0})] == ["online", "present", "absent",
                                                            "absent"]


@pytest.mark.parametrize(("vcpus", "max_vcpus", "why"), [
    (0, 4, "vcpus=0"), (5, 4, "vcpus=5"), (1, 0, "max_vcpus=0"),
    (1, MAX_VCPUS + 1, f"the machine allows 1 to {MAX_VCPUS}"), (1.5, 4, "whole number"),
])
def test_impossible_counts_are_refused(vcpus: int, max_vcpus: int, why: str) -> None:
    with pytest.raises(VcpuError, match=why):
        check_counts(vcpus, max_vcpus)


def test_add_takes_the_given_id_or_the_first_free_one() -> None:
    t = VcpuTable(1, 4)
    t.live = {0, 2}
    assert t.add_id(-1, live=True, config=False) == 1
    assert t.add_id(3, live=True, config=False) == 3
    with pytest.raises(VcpuError, match="vCPU 2 is already plugged"):
        t.add_id(2, live=True, config=False)
    with pytest.raises(VcpuError, match="vCPU 4 does not exist: this appliance has ids 0 to 3"):
        t.add_id(4, live=True, config=False)
    with pytest.raises(VcpuError, match="does not exist"):
        t.add_id(-2, live=True, config=False)
    t.live = {0, 1, 2, 3}
    with pytest.raises(VcpuError, match="every vCPU id is plugged"):
        t.add_id(-1, live=True, config=False)
    # both sets: the first id free in both
    t.live, t.config = {0, 1}, {0, 2}
    assert t.add_id(-1, live=True, config=True) == 3


def test_remove_takes_the_given_id_or_the_highest_and_never_the_boot_cpu() -> None:
    t = VcpuTable(1, 4)
    t.live = {0, 1, 3}
    assert t.remove_id(-1, live=True, config=False) == 3
    assert t.remove_id(1, live=True, config=False) == 1
    with pytest.raises(VcpuError, match="vCPU 2 is not plugged"):
        t.remove_id(2, live=True, config=False)
    with pytest.raises(VcpuError, match="boot CPU"):
        t.remove_id(0, live=True, config=False)
    t.live = {0}
    with pytest.raises(VcpuError, match="only vCPU 0"):
        t.remove_id(-1, live=True, config=False)
    # the definition is a set of its own (CONFIG)
    t.config = {0, 2}
    assert t.remove_id(-1, live=False, config=True) == 2
    assert t.live == {0}  # choosing an id changes nothing


def test_qemu_boots_with_vcpu_0_and_the_ids_reserved() -> None:
    cfg = MachineConfig(qemu="q", accel="tcg", kernel="/k", initrd="/i", root_overlay="/r",
                        qmp_socket="/q", agent_socket="/a", console_log="/c", max_vcpus=4)
    cmd = qemu_command(cfg)
    assert cmd[cmd.index("-smp") + 1] == "1,maxcpus=4"
    one = MachineConfig(**{**cfg.__dict__, "max_vcpus": 1})
    assert qemu_command(one)[qemu_command(one).index("-smp") + 1] == "1"  # as before


def test_vcpu_ids_follow_qemus_positions_by_topology() -> None:
    # as query-hotpluggable-cpus lists them on pc (highest core first)
    listed = [{"props": {"core-id": c, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1,
               "type": "max-x86_64-cpu"} for c in (3, 2, 1, 0)]
    listed[3]["qom-path"] = "/machine/unattached/device[0]"
    positions = vcpu_positions(listed)
    assert [p["props"]["core-id"] for p in positions] == [0, 1, 2, 3]
    assert vcpu_device_args(2, positions[2], "ab") == {
        "driver": "max-x86_64-cpu", "id": "cpu-ab-2", "core-id": 2, "thread-id": 0, "socket-id": 0}


@pytest.mark.parametrize(("vcpu", "adding", "live", "unplugged", "refused"), [
    (1, True, {0}, False, None),                  # the lowest free id
    (2, True, {0}, False, "before vCPU 1"),       # a gap
    (3, True, {0, 1, 2}, False, None),
    (1, True, {0}, True, "was unplugged since"),  # a plug after an unplug crashes QEMU
    (2, False, {0, 1, 2}, False, None),           # the highest
    (1, False, {0, 1, 2}, False, "before vCPU 2"),
    (2, False, {0, 1, 2}, True, None),            # unplugging stays possible
])
def test_tcgs_vcpu_rules(vcpu: int, adding: bool, live: set[int], unplugged: bool,
                         refused: str | None) -> None:
    if refused is None:
        check_tcg_change(vcpu, adding, live, 4, unplugged)
    else:
        with pytest.raises(VcpuError, match=refused):
            check_tcg_change(vcpu, adding, live, 4, unplugged)
