"""NIC slots (seed 001): the model's rules, QEMU's arguments, libvirt's XML, the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guestslots.backends.qemu.qmpargs import (
    netdev_add_args,
    nic_device_args,
    nic_ids,
    nic_slots_in_use,
)
from guestslots.model.nics import (
    MAX_NICS,
    NicError,
    NicTable,
    default_mac,
    make_nic,
    pci_slot,
)
from guestslots.model.runtime import NicRecord, RuntimeRecord

OWNER = "9f2c41d7"


def test_user_nics_each_have_their_own_fixed_network() -> None:
    nic = make_nic(0, "user", OWNER)
    assert (nic.address, nic.gateway, nic.dns, nic.net) == (
        "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "10.0.2.0/24")
    assert make_nic(5, "user", OWNER).address == "10.0.7.15/24"
    assert nic.mac == default_mac(OWNER, 0) == "52:54:00:9f:2c:00"
    # reproducible from what is recorded, distinct per slot
    assert len({make_nic(s, "user", OWNER).mac for s in range(MAX_NICS)}) == MAX_NICS
    assert make_nic(1, "user", OWNER, mac="52:54:00:AA:BB:CC").mac == "52:54:00:aa:bb:cc"


def test_tap_nics_take_the_given_address() -> None:
    nic = make_nic(1, "tap", OWNER, tap="tap-x", address="192.168.5.2/24",
                   gateway="192.168.5.1")
    assert (nic.network, nic.tap, nic.address, nic.gateway, nic.net) == (
        "tap", "tap-x", "192.168.5.2/24", "192.168.5.1", None)


@pytest.mark.parametrize(("args", "match"), [
    ((MAX_NICS, "user"), "NIC slots are 0 to 7"),
    ((-2, "user"), "NIC slots are 0 to 7"),
    ((True, "user"), "whole number"),
    ((0, "bridge"), "network 'bridge'"),
    ((0, "user", OWNER, "01:00:5e:00:00:01"), "unicast"),
    ((0, "user", OWNER, "52:54:00:00:00"), "six hex bytes"),
    ((0, "user", OWNER, None, "tap0"), "fixed addresses"),
    ((0, "tap", OWNER, None, None, "10.0.0.2/24"), "needs tap=NAME"),
    ((0, "tap", OWNER, None, "a" * 16, "10.0.0.2/24"), "host interface name"),
    ((0, "tap", OWNER, None, "t0"), "needs address="),
    ((0, "tap", OWNER, None, "t0", "10.0.0.2"), "give the prefix"),
    ((0, "tap", OWNER, None, "t0", "10.0.0.300/24"), "10.0.0.300"),
    ((0, "tap", OWNER, None, "t0", "10.0.0.255/24"), "network's own address"),
    ((0, "tap", OWNER, None, "t0", "10.0.0.2/24", "10.0.1.1"), "not another address"),
    ((0, "tap", OWNER, None, "t0", "10.0.0.2/24", "10.0.0.2"), "not another address"),
])
def test_bad_nics_are_refused_by_name(args: tuple[object, ...], match: str) -> None:
    slot, network, *rest = args
    full = [slot, network, OWNER, *rest[1:]] if rest else [slot, network, OWNER]
    with pytest.raises(NicError, match=match):
        make_nic(*full)  # type: ignore[arg-type]


def test_slots_minus_one_both_ways_with_what_the_backend_reports() -> None:
    table = NicTable(OWNER)
    assert table.add_slot(-1, live=True, config=False) == 0
    table.live[0] = make_nic(0, "user", OWNER)
    # slot 1's PCI address is taken in the VM (another process plugged it): skipped
    assert table.add_slot(-1, live=True, config=False, in_use=frozenset({0, 1})) == 2
    with pytest.raises(NicError, match="already has a NIC"):
        table.add_slot(1, live=True, config=False, in_use=frozenset({1}))
    # the definition is separate: in_use is the running VM's, not the definition's
    assert table.add_slot(-1, live=False, config=True, in_use=frozenset({0, 1})) == 0
    table.live[3] = make_nic(3, "user", OWNER)
    assert table.remove_slot(-1, live=True, config=False) == 3
    with pytest.raises(NicError, match="has no NIC"):
        table.remove_slot(1, live=True, config=False)
    with pytest.raises(NicError, match="has no NIC"):
        table.remove_slot(0, live=True, config=True)  # not in the definition
    with pytest.raises(NicError, match="no NIC is plugged"):
        NicTable(OWNER).remove_slot(-1, live=True, config=False)
    for slot in range(MAX_NICS):
        table.live[slot] = make_nic(slot, "user", OWNER)
    with pytest.raises(NicError, match="every NIC slot is in use"):
        table.add_slot(-1, live=True, config=False)
    assert [n.device_id for n in table.listed(True)][:2] == [
        f"nic-{OWNER}-0", f"nic-{OWNER}-1"]


def test_qemu_arguments_name_the_slot_reproducibly() -> None:
    user = make_nic(2, "user", OWNER)
    assert nic_ids(2, OWNER) == (f"nic-{OWNER}-2", f"nic-{OWNER}-2-net")
    assert netdev_add_args(2, user, OWNER) == {
        "type": "user", "id": f"nic-{OWNER}-2-net", "net": "10.0.4.0/24",
        "host": "10.0.4.2", "dns": "10.0.4.3", "ipv6": False}
    assert nic_device_args(2, user, OWNER) == {
        "driver": "virtio-net-pci", "id": f"nic-{OWNER}-2", "netdev": f"nic-{OWNER}-2-net",
        "mac": user.mac, "bus": "pci.0", "addr": "0x12"}
    tap = make_nic(0, "tap", OWNER, tap="t0", address="10.9.0.2/24")
    assert netdev_add_args(0, tap, OWNER, "fd0") == {
        "type": "tap", "id": f"nic-{OWNER}-0-net", "fd": "fd0"}
    with pytest.raises(ValueError, match="passed file descriptor"):
        netdev_add_args(0, tap, OWNER)


def test_slots_in_use_are_read_from_qemus_pci_bus_and_devices() -> None:
    pci = [{"slot": 0}, {"slot": 1}, {"slot": 2}, {"slot": pci_slot(3)}]
    peripherals = [{"name": "scsi0"}, {"name": f"nic-{OWNER}-5"}, {"name": "nic-00000001-6"}]
    assert nic_slots_in_use(pci, peripherals, OWNER) == frozenset({3, 5})


def test_the_runtime_record_carries_the_nics_and_reads_schema_1() -> None:
    nic = NicRecord(0, f"nic-{OWNER}-0", "user", "52:54:00:9f:2c:00", "10.0.2.15/24",
                    "10.0.2.2")
    record = RuntimeRecord(id=OWNER, backend="qemu", pid=1, started=1.0, updated=2.0,
                           workdir="/w", nics=(nic,))
    doc = json.loads(record.to_json())
    assert doc["nics"][0]["device_id"] == f"nic-{OWNER}-0"
    assert RuntimeRecord.from_json(record.to_json()) == record
    # a schema 1 record (before NICs) still reads, with none
    old = {k: v for k, v in doc.items() if k != "nics"}
    old["schema"] = 1
    assert RuntimeRecord.from_json(json.dumps(old)).nics == ()


lxml = pytest.importorskip("lxml")


def test_libvirt_interfaces_match_the_qemu_layout() -> None:
    from lxml import etree

    from guestslots.backends.libvirt.domxml import (
        interface_xml,
        live_interface,
        nic_alias,
    )
    from guestslots.backends.libvirt.domxml import (
        nic_slots_in_use as libvirt_in_use,
    )

    user = etree.fromstring(interface_xml(1, make_nic(1, "user", OWNER), owner=OWNER))

    def attrs(element: etree._Element, tag: str) -> dict[str, str]:
        found = element.find(tag)
        assert found is not None, tag
        return {str(k): str(v) for k, v in found.attrib.items()}

    assert user.get("type") == "user"
    assert attrs(user, "mac") == {"address": default_mac(OWNER, 1)}
    assert attrs(user, "alias") == {"name": f"ua-nic-{OWNER}-1"}
    assert attrs(user, "ip") == {"family": "ipv4", "address": "10.0.3.0", "prefix": "24"}
    assert attrs(user, "address")["slot"] == "0x11"
    tap = etree.fromstring(interface_xml(0, make_nic(0, "tap", OWNER, tap="t0",
                                                     address="10.9.0.2/24"), owner=OWNER))
    assert tap.get("type") == "ethernet"
    assert attrs(tap, "target") == {"dev": "t0", "managed": "no"}

    live = ("<domain><devices><disk><address type='pci' bus='0x00' slot='0x12'/></disk>"
            + interface_xml(4, make_nic(4, "user", OWNER), owner=OWNER)
            + "</devices></domain>")
    assert libvirt_in_use(live, OWNER) == frozenset({2, 4})
    found = live_interface(live, nic_alias(4, OWNER))
    assert found is not None and "10.0.6.0" in found
    assert live_interface(live, nic_alias(3, OWNER)) is None


SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")


@pytest.mark.skipif(not SCHEMA.exists(), reason="libvirt's schemas are not installed")
def test_libvirts_schema_accepts_the_interfaces() -> None:
    from lxml import etree

    from guestslots.backends.libvirt.domxml import domain_xml, interface_xml

    from .test_domxml import CFG

    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    nics = interface_xml(0, make_nic(0, "user", OWNER), owner=OWNER) + interface_xml(
        1, make_nic(1, "tap", OWNER, tap="t0", address="10.9.0.2/24"), owner=OWNER)
    document = etree.fromstring(domain_xml(CFG).replace("</devices>", nics + "</devices>")
                                .encode())
    assert schema.validate(document), schema.error_log


def test_the_shell_shows_which_nic_carries_the_default_route() -> None:
    from guestslots.commands import format_nic
    from guestslots.model.nics import Nic, with_guest_view

    nic = Nic(0, "nic-x-0", "user", "52:54:00:9f:2c:00", "10.0.2.15/24", "10.0.2.2", None)
    assert format_nic(with_guest_view(nic, "eth0", True, True)).endswith(
        "gateway:10.0.2.2 eth0 up default-route")
    assert format_nic(with_guest_view(nic, "eth0", True)).endswith("eth0 up")
    assert format_nic(nic) == "0 nic-x-0 user 52:54:00:9f:2c:00 10.0.2.15/24 gateway:10.0.2.2"
