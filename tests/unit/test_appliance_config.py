"""The Appliance before launch: reservations, checks and state errors (no VM needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from guestslots import (
    CONFIG,
    LIVE,
    Appliance,
    DriveError,
    FlagError,
    LabelError,
    SlotError,
    SlotState,
    StateError,
    VcpuError,
)


def test_reservations_before_launch(tmp_path: Path) -> None:
    img = tmp_path / "a.img"
    img.write_bytes(b"\0" * 4096)
    app = Appliance()
    assert app.add_drive("/dev/null") == 0
    assert app.add_drive(img, label="base") == 1
    assert app.list_devices() == ["/dev/sda", "/dev/sdb"]
    slots = app.slots()
    assert [s.state for s in slots] == [SlotState.EMPTY, SlotState.FILLED]
    assert (slots[1].path, slots[1].readonly, slots[1].serial) == (str(img), True, "base")
    assert app.list_disk_labels() == {"base": "/dev/sdb"}
    assert app.max_slots() == 255


def test_bad_drives_before_launch_change_nothing(tmp_path: Path) -> None:
    app = Appliance()
    app.add_drive("/dev/null")
    with pytest.raises(DriveError, match="no such file"):
        app.add_drive(tmp_path / "missing.img")
    with pytest.raises(LabelError, match="an empty slot has no label"):
        app.add_drive("/dev/null", label="x")
    assert len(app.slots()) == 1


def test_calls_that_need_a_running_appliance(tmp_path: Path) -> None:
    app = Appliance()
    app.add_drive("/dev/null")
    with pytest.raises(StateError, match="hotplug: the appliance must be running for LIVE"):
        app.hotplug(0, "/dev/null", flags=LIVE)
    with pytest.raises(StateError, match="unplug"):
        app.unplug(0, flags=LIVE | CONFIG)
    with pytest.raises(StateError, match="list_filesystems"):
        app.list_filesystems()
    app.shutdown()  # shutting down an appliance never launched is fine
    # the definition can still change, and a launch would start from it
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 4096)
    assert app.hotplug(-1, image) == 0  # CURRENT before launch: CONFIG
    assert app.slots()[0].path == str(image) and app.slots()[0].config is not None
    assert app.add_drive("/dev/null") == 1


def test_flags_before_launch_change_the_definition(tmp_path: Path) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 4096)
    app = Appliance()
    for _ in range(3):
        app.add_drive("/dev/null")
    assert app.hotplug(1, image, label="one", flags=CONFIG) == 1
    assert app.hotplug(-1, image, readonly=True) == 0  # the first slot the definition leaves
    with pytest.raises(SlotError, match="already has a drive in the definition"):
        app.hotplug(1, image)
    with pytest.raises(LabelError, match="already used by slot 1 in the definition"):
        app.hotplug(2, image, label="one")
    assert [s.state for s in app.slots()] == [SlotState.FILLED, SlotState.FILLED,
                                              SlotState.EMPTY]
    assert app.unplug(-1) == 1  # CURRENT before launch: CONFIG, the highest filled
    with pytest.raises(SlotError, match="already empty in the definition"):
        app.unplug(1, flags=CONFIG)
    with pytest.raises(FlagError, match="unplug: flags must be a combination"):
        app.unplug(0, flags=4)
    assert [s.config is not None for s in app.slots()] == [True, False, False]


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend 'xen'"):
        Appliance("xen")


def test_a_uri_is_for_libvirt_only() -> None:
    with pytest.raises(ValueError, match="uri= is for the libvirt backend"):
        Appliance("qemu", uri="qemu:///system")
    assert Appliance("libvirt", uri="qemu:///system").uri == "qemu:///system"


def test_flags_of_the_wrong_type_are_a_clear_error(tmp_path: Path) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 4096)
    app = Appliance()
    app.add_drive("/dev/null")
    for flags in ("live", 2.0, None):
        with pytest.raises(FlagError, match="flags must be a combination"):
            app.hotplug(0, image, flags=flags)  # type: ignore[arg-type]
    assert app.slots()[0].config is None


def test_a_writable_image_twice_in_the_definition_is_refused(tmp_path: Path) -> None:
    """Refused when added, not in the middle of a launch by QEMU's lock."""
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 4096)
    app = Appliance()
    app.add_drive(image, readonly=False)
    with pytest.raises(DriveError, match=r"slot 0 \(/dev/sda\) holds this image writable in "
                                         "the definition"):
        app.add_drive(image)
    app.add_drive("/dev/null")
    with pytest.raises(DriveError, match="holds this image writable in the definition"):
        app.hotplug(1, image, overlay=True)  # CURRENT before launch: CONFIG
    assert [s.config is not None for s in app.slots()] == [True, False]
    other = tmp_path / "b.img"
    other.write_bytes(b"\0" * 4096)
    app.add_drive(other)
    app.add_drive(other, overlay=True)  # nobody writes to the image itself: fine


def test_vcpu_and_nic_flag_errors_are_flag_errors() -> None:
    """Seed 000: a bad flags value is a flag error (before: SlotError(-1) from a vCPU or
    NIC call, which has no slot)."""
    app = Appliance(max_vcpus=4)
    app.add_drive("/dev/null")
    calls: list[Callable[[], int]] = [
        lambda: app.add_vcpu(1, flags=4), lambda: app.remove_vcpu(1, flags=8),
        lambda: app.add_nic(flags=4), lambda: app.remove_nic(0, flags=-1)]
    for call in calls:
        with pytest.raises(FlagError, match="flags must be a combination") as caught:
            call()
        assert not isinstance(caught.value, SlotError)
    assert [v.id for v in app.vcpus() if v.state != "absent"] == [0]


def test_the_vcpu_argument_is_named_as_the_seed_names_it() -> None:
    """Seed 000's AddVcpu(domain, vcpu, flags): ``vcpu=`` (before: a TypeError, the
    argument was ``id``, which shadowed the builtin); ``id=`` still works, deprecated."""
    app = Appliance(max_vcpus=4)
    app.add_drive("/dev/null")
    assert app.add_vcpu(vcpu=1, flags=CONFIG) == 1
    with pytest.warns(DeprecationWarning, match=r"add_vcpu\(id=...\) is deprecated"):
        assert app.add_vcpu(id=2, flags=CONFIG) == 2
    with pytest.raises(TypeError, match="both vcpu and id"):
        app.add_vcpu(3, id=3)
    assert app.remove_vcpu(vcpu=2) == 2  # CURRENT before launch: CONFIG
    with pytest.warns(DeprecationWarning, match=r"remove_vcpu\(id=...\)"):
        assert app.remove_vcpu(id=1) == 1


def test_a_definition_tcg_cannot_launch_is_refused_when_asked() -> None:
    """Seed 000 under TCG (issue 33): add_vcpu(3, CONFIG) with vCPU 2 absent was
    accepted, and the next launch raised; now it is refused when asked, and so is a
    CONFIG removal that leaves a gap."""
    app = Appliance(max_vcpus=4, accel="tcg")
    app.add_drive("/dev/null")
    with pytest.raises(VcpuError, match=r"would be \[0, 3\]: under TCG .* vCPU 1 absent"):
        app.add_vcpu(3, flags=CONFIG)
    assert app.add_vcpu(1, flags=CONFIG) == 1
    assert app.add_vcpu(2, flags=CONFIG) == 2
    with pytest.raises(VcpuError, match=r"would be \[0, 2\]"):
        app.remove_vcpu(1, flags=CONFIG)
    assert app.remove_vcpu(2, flags=CONFIG) == 2
    assert [v.id for v in app.vcpus() if v.present] == [0, 1]
    # under KVM the ids may leave gaps
    kvm = Appliance(max_vcpus=4, accel="kvm")
    assert kvm.add_vcpu(3, flags=CONFIG) == 3
