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
from guestslots.model.cpus import (
    MAX_VCPUS,
    VcpuError,
    VcpuTable,
    check_counts,
    check_tcg_change,
    check_tcg_definition,
    tcg_vcpu_rules,
)


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
    rules = tcg_vcpu_rules("7.2.22")
    if refused is None:
        check_tcg_change(vcpu, adding, live, 4, unplugged, rules)
    else:
        with pytest.raises(VcpuError, match=refused):
            check_tcg_change(vcpu, adding, live, 4, unplugged, rules)


def test_tcg_rules_are_chosen_by_the_version_qemu_reports() -> None:
    """Measured on 7.2 and 10.0 (tools/bench/qemu_rules.py); a version not measured
    gets every limit, and its refusals say so."""
    old, new, other = tcg_vcpu_rules("7.2.22"), tcg_vcpu_rules("10.0.2"), \
        tcg_vcpu_rules("8.2.2")
    assert (old.qemu, old.save_after_unplug, old.pci_after_unplug) == ("7.2", False, False)
    assert (new.qemu, new.save_after_unplug, new.pci_after_unplug) == ("10.0", False, True)
    assert not new.plug_after_unplug  # 10.0 dies within a few plug/unplug cycles
    assert (other.measured, other.save_after_unplug, other.gaps) == (False, False, False)
    assert new.gaps and not old.gaps
    with pytest.raises(VcpuError, match=r"QEMU 10\.0 under TCG crashes on a vCPU plug"):
        check_tcg_change(1, True, {0}, 4, True, new)
    with pytest.raises(VcpuError, match=r"QEMU 8\.2 under TCG .*this version was not"):
        check_tcg_change(1, True, {0}, 4, True, other)
    assert tcg_vcpu_rules("unknown").measured is False


def test_qemu_10s_guest_survives_gaps_so_any_free_id_is_plugged() -> None:
    lenient = tcg_vcpu_rules("10.0.2")
    assert lenient.gaps and not tcg_vcpu_rules("7.2.22").gaps
    check_tcg_change(3, True, {0}, 4, False, lenient)   # a gap
    check_tcg_change(1, False, {0, 1, 3}, 4, False, lenient)  # not the highest
    with pytest.raises(VcpuError, match="before vCPU 1"):
        check_tcg_change(3, True, {0}, 4, False, tcg_vcpu_rules("7.2.22"))
    # so may a definition (a launch plugs it as hotplugs); 7.2's keeps 0..k-1, and so
    # does an unmeasured version's
    check_tcg_definition(2, {0, 2}, lenient)
    with pytest.raises(VcpuError, match=r"QEMU 7\.2 under TCG locks up with a gap"):
        check_tcg_definition(2, {0, 2}, tcg_vcpu_rules("7.2.22"))
    with pytest.raises(VcpuError, match=r"QEMU 8\.2 under TCG locks up .*was not\)"):
        check_tcg_definition(2, {0, 2}, tcg_vcpu_rules("8.2.2"))
