"""The libvirt domain XML: golden files, and libvirt's own schema accepts it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("lxml")

from lxml import etree

from guestslots.backends.libvirt import connection
from guestslots.backends.libvirt.domxml import (
    DomainConfig,
    backup_xml,
    disk_xml,
    diskset_metadata,
    diskset_of,
    domain_xml,
    is_detached,
    live_disk,
    migration_xml,
    owner_of,
    restore_xml,
    slot_alias,
    snapshot_xml,
)
from guestslots.host.owner import Owner
from guestslots.model.drives import DriveSpec

GOLDEN = Path(__file__).parent / "golden"

CFG = DomainConfig(
    name="guestslots-test", accel="tcg", emulator="/usr/bin/qemu-system-x86_64",
    kernel="/a/vmlinux", initrd="/a/initrd",
    root_backing=(("/s/root.qcow2", "qcow2"), ("/a/root", "raw")),
    root_overlay="/w/root.qcow2", agent_socket="/w/agent.sock", console_log="/w/console.log",
    owner=Owner("h1", "0b4c1e9a-0000-4000-8000-000000000001", 4242, 987654),
)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    assert path.read_text() == text, f"{name} changed; if on purpose, update {path}"


def test_domain_xml_golden() -> None:
    _golden("domain-tcg.xml", domain_xml(CFG))


def test_disk_xml_golden() -> None:
    _golden("disk-overlay.xml", disk_xml(27, DriveSpec("/i/a.qcow2", "qcow2", label="data"),
                                         overlay="/w/overlay-slot27.qcow2", owner="ab"))
    _golden("disk-rw.xml", disk_xml(3, DriveSpec("/i/b.img", "raw", readonly=False), owner="ab"))
    assert slot_alias(3, "ab") == "ua-disk-ab-3"


def test_names_and_paths_are_escaped() -> None:
    xml = disk_xml(0, DriveSpec("/i/<a&b>'\".img", "raw", readonly=False), owner="ab")
    assert "/i/&lt;a&amp;b&gt;'&quot;.img" in xml


def test_the_owner_is_read_back() -> None:
    assert owner_of(domain_xml(CFG)) == CFG.owner
    assert owner_of(domain_xml(replace(CFG, owner=None))) is None
    assert owner_of("<domain><name>x</name></domain>") is None


def test_the_disk_set_is_read_back_from_where_libvirt_puts_it() -> None:
    domain = etree.fromstring(domain_xml(CFG).encode())
    assert diskset_of(domain_xml(CFG)) is None
    metadata = domain.find("metadata")
    assert metadata is not None
    # as libvirt's setMetadata stores it: the element in the namespace, under a prefix
    element = etree.fromstring(diskset_metadata([3, 0]).encode())
    stored = etree.SubElement(metadata, "{urn:guestslots:diskset:1}diskset",
                              nsmap={"guestslots-diskset": "urn:guestslots:diskset:1"})
    stored.extend(element)
    assert diskset_of(etree.tostring(domain).decode()) == [0, 3]
    stored.clear()
    assert diskset_of(etree.tostring(domain).decode()) == []
    etree.SubElement(stored, "slot", index="x")
    assert diskset_of(etree.tostring(domain).decode()) is None


def test_a_detached_appliances_qemu_listens_on_the_agent_socket_and_gc_knows_it() -> None:
    detached = replace(CFG, detached=True)
    for xml in (domain_xml(detached), restore_xml(domain_xml(detached), detached)):
        channel = etree.fromstring(xml.encode()).find("devices/channel/source")
        assert channel is not None and channel.get("mode") == "bind"
        assert is_detached(xml) and owner_of(xml) == CFG.owner
    attached = etree.fromstring(domain_xml(CFG).encode()).find("devices/channel/source")
    assert attached is not None and attached.get("mode") == "connect"
    assert not is_detached(domain_xml(CFG))
    assert not is_detached(domain_xml(replace(detached, owner=None)))  # no owner: not ours


def test_a_saved_domain_is_restored_with_this_launchs_paths_and_owner() -> None:
    saved = domain_xml(CFG)
    new = replace(CFG, root_overlay="/w2/root.qcow2", agent_socket="/w2/agent.sock",
                  console_log="/w2/console.log",
                  root_backing=(("/state/root.qcow2", "qcow2"), ("/a/root", "raw")),
                  owner=Owner("h2", "b2", 7, 8))
    xml = restore_xml(saved, new)
    for old in ("/w/root.qcow2", "/w/agent.sock", "/w/console.log", "/s/root.qcow2"):
        assert old not in xml
    for path in ("/w2/root.qcow2", "/w2/agent.sock", "/w2/console.log", "/state/root.qcow2"):
        assert path in xml
    assert owner_of(xml) == new.owner
    assert xml.count("<backingStore") == 3  # two files, then the empty end of the chain
    # everything else is the saved domain's: the fresh domain for the new paths is it
    assert restore_xml(xml, new) == xml
    def canonical(text: str) -> bytes:
        parser = etree.XMLParser(remove_blank_text=True)
        return etree.tostring(etree.fromstring(text, parser), method="c14n")

    assert canonical(xml) == canonical(domain_xml(new))
    with pytest.raises(ValueError, match="not 'other'"):
        restore_xml(saved, replace(new, name="other"))


def test_a_migrating_domain_gets_new_host_sockets_and_nothing_else() -> None:
    """The new QEMU runs beside the old one until the switch: its agent channel and
    console are new paths; the rest (what the guest sees) is the source's."""
    xml = migration_xml(domain_xml(CFG), "/w/agent-1.sock", "/w/console-1.log")
    assert "/w/agent.sock" not in xml and "/w/console.log" not in xml
    assert migration_xml(xml, CFG.agent_socket, CFG.console_log) == \
        etree.tostring(etree.fromstring(domain_xml(CFG).encode()), encoding="unicode")
    with pytest.raises(ValueError, match="agent channel"):
        migration_xml("<domain><name>x</name></domain>", "/a", "/c")


def test_a_copied_disk_is_its_copy_without_a_chain_at_the_destination() -> None:
    live = etree.fromstring(domain_xml(CFG).encode())
    devices = live.find("devices")
    assert devices is not None
    chained = DriveSpec("/i/1.img", "raw", readonly=False, chain=("/s/1.qcow2", "/s/2.qcow2"))
    for i, drive in ((1, chained), (2, DriveSpec("/i/2.img", "raw", readonly=False))):
        devices.append(etree.fromstring(disk_xml(i, drive, owner="ab").encode()))
    xml = migration_xml(etree.tostring(live, encoding="unicode"), "/w/a-1.sock",
                        "/w/c-1.log", {slot_alias(1, "ab"): ("/copies/slot1.img", "raw")})
    def attr(disk: etree._Element, path: str, name: str) -> str | None:
        found = disk.find(path)
        return None if found is None else found.get(name)

    disks = {attr(d, "target", "dev"): d
             for d in etree.fromstring(xml.encode()).iterfind("devices/disk")}
    copied, kept = disks["sdb"], disks["sdc"]
    assert attr(copied, "source", "file") == "/copies/slot1.img"
    assert attr(copied, "driver", "type") == "raw"
    backing = copied.findall("backingStore")
    assert len(backing) == 1 and len(backing[0]) == 0  # declared empty: nothing below
    assert attr(kept, "source", "file") == "/i/2.img"
    with pytest.raises(ValueError, match="no single disk"):
        migration_xml(xml, "/a", "/c", {slot_alias(5, "ab"): ("/x", "raw")})


def test_a_restored_domain_takes_its_throwaway_overlays_from_where_they_were_moved() -> None:
    """A throwaway slot's overlay was copied out of the old work directory: the
    restored domain reads the copy, and every other slot keeps its file."""
    live = etree.fromstring(domain_xml(CFG).encode())
    devices = live.find("devices")
    assert devices is not None
    for i, overlay in ((1, "/w/slot1.qcow2"), (2, None)):
        drive = DriveSpec(f"/i/{i}.img", "raw", readonly=overlay is not None)
        devices.append(etree.fromstring(disk_xml(i, drive, overlay, owner="ab").encode()))
    xml = restore_xml(etree.tostring(live, encoding="unicode"), CFG,
                      {"/w/slot1.qcow2": "/w2/slot1.qcow2"})
    files = [s.get("file") for s in etree.fromstring(xml.encode()).iterfind(
        "devices/disk/source")]
    assert "/w2/slot1.qcow2" in files and "/w/slot1.qcow2" not in files
    assert "/i/2.img" in files


def test_live_disk_finds_a_slot_by_alias() -> None:
    """What an abandoned attach left is found by its alias in the live XML."""
    live = etree.fromstring(domain_xml(CFG).encode())
    devices = live.find("devices")
    assert devices is not None
    for i in (2, 5):
        disk = etree.fromstring(disk_xml(i, DriveSpec(f"/i/{i}.img", "raw"), owner="ab").encode())
        devices.append(disk)
    text = etree.tostring(live, encoding="unicode")
    found = live_disk(text, slot_alias(5, "ab"))
    assert found is not None and "/i/5.img" in found and "/i/2.img" not in found
    assert live_disk(text, slot_alias(3, "ab")) is None


def test_a_root_caller_at_a_daemon_runs_qemu_as_root_relabelling_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """qemu:///system runs QEMU as its own user and chowns what it opens (the work
    directory it cannot reach, the caller's images): libguestfs's static DAC label."""
    assert "seclabel" not in domain_xml(CFG)
    root = etree.fromstring(domain_xml(replace(CFG, dac_label="0:0")).encode())
    [label] = root.findall("seclabel")
    assert {k: str(v) for k, v in label.attrib.items()} == {
        "type": "static", "model": "dac", "relabel": "no"}
    assert label.findtext("label") == "0:0"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert connection.dac_label("qemu:///system") == "0:0"
    assert connection.dac_label("qemu:///session") == "0:0"
    assert connection.dac_label("qemu+unix:///system?socket=/x/sock") == "0:0"
    for uri in ("embed", "qemu:///embed?root=/x", "qemu+ssh://root@far/system"):
        assert connection.dac_label(uri) == "", uri
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert connection.dac_label("qemu:///system") == ""


def test_a_migrating_domain_gets_the_destination_daemons_label() -> None:
    """From the embedded driver (no label) to qemu:///system (QEMU as root, nothing
    relabelled), and back: the destination's label, whatever the source's was."""
    labelled = migration_xml(domain_xml(CFG), "/w/a-1.sock", "/w/c-1.log", dac_label="0:0")
    [label] = etree.fromstring(labelled.encode()).findall("seclabel")
    assert label.get("relabel") == "no" and label.findtext("label") == "0:0"
    back = migration_xml(labelled, "/w/a-2.sock", "/w/c-2.log")
    assert "seclabel" not in back
    assert migration_xml(labelled, "/w/a-2.sock", "/w/c-2.log", {}, "0:0").count(
        "<seclabel") == 1


def test_local_daemons_are_opened_by_their_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that embeds the driver cannot open a plain qemu:///system (libvirt
    routes it to the embedded driver: "Missing URI parameter 'root'")."""
    assert connection.target("qemu:///system") == \
        "qemu+unix:///system?socket=/run/libvirt/libvirt-sock"
    monkeypatch.setattr(connection, "_root", None)
    assert connection.target("qemu:///session") == "qemu:///session"  # autostarts
    monkeypatch.setattr(connection, "_root", object())
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert connection.target("qemu:///session") == \
        "qemu+unix:///session?socket=/run/user/1000/libvirt/libvirt-sock"
    for other in ("qemu+unix:///system?socket=/x", "qemu+ssh://far/system", "embed"):
        assert connection.target(other) == other


SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")


@pytest.mark.skipif(not SCHEMA.exists(),
                    reason="libvirt's schemas are not installed (./tools/setup installs them)")
def test_libvirts_schema_accepts_the_domain() -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    domain = domain_xml(CFG)
    disks = "".join(disk_xml(i, DriveSpec(f"/i/{i}.img", "raw"), owner="ab") for i in range(2))
    for text in (domain, domain.replace("</devices>", disks + "</devices>"),
                 domain_xml(replace(CFG, dac_label="0:0"))):
        document = etree.fromstring(text.encode())
        assert schema.validate(document), schema.error_log


BACKUP_SCHEMA = SCHEMA.with_name("domainbackup.rng")


@pytest.mark.skipif(not BACKUP_SCHEMA.exists(),
                    reason="libvirt's schemas are not installed (./tools/setup installs them)")
def test_libvirts_schema_accepts_the_export_backup() -> None:
    text = backup_xml([(0, "/o/a.img", "raw"), (27, "/o/b.qcow2", "qcow2")], ["vda", "sdb"])
    document = etree.fromstring(text.encode())
    schema = etree.RelaxNG(etree.parse(str(BACKUP_SCHEMA)))
    assert schema.validate(document), schema.error_log
    disks = {d.get("name"): d.get("backup") for d in document.iter("disk")}
    assert disks == {"sda": "yes", "sdab": "yes", "vda": "no", "sdb": "no"}
    target = document.find("disks/disk/target")
    assert target is not None and target.get("file") == "/o/a.img"


def test_a_disk_on_snapshot_overlays_declares_its_whole_chain() -> None:
    drive = DriveSpec("/i/a.img", "raw", False, chain=("/i/a.s1.qcow2", "/i/a.s2.qcow2"))
    disk = etree.fromstring(disk_xml(2, drive, owner="ab").encode())
    assert disk.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert disk.find("source").get("file") == "/i/a.s2.qcow2"  # type: ignore[union-attr]
    chain = []
    for backing in disk.iter("backingStore"):
        fmt, source = backing.find("format"), backing.find("source")
        if fmt is not None and source is not None:
            chain.append((fmt.get("type"), source.get("file")))
    assert chain == [("qcow2", "/i/a.s1.qcow2"), ("raw", "/i/a.img")]
    assert disk.find("readonly") is None
    # ending in an empty one: libvirt opens exactly these, nothing a header names
    assert [b for b in disk.iter("backingStore") if len(b) == 0]


def test_a_snapshot_takes_exactly_the_disks_asked_for() -> None:
    xml = etree.fromstring(snapshot_xml("n1", [(1, "/i/b.n1.qcow2")], ["vda", "sda"]).encode())
    assert xml.findtext("name") == "n1"
    disks = {d.get("name"): d for d in xml.iterfind("disks/disk")}
    assert disks["sdb"].get("snapshot") == "external"
    assert disks["sdb"].find("source").get("file") == "/i/b.n1.qcow2"  # type: ignore[union-attr]
    assert disks["sdb"].find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert disks["vda"].get("snapshot") == disks["sda"].get("snapshot") == "no"


def test_domain_xml_with_hotpluggable_vcpus_golden() -> None:
    """max_vcpus > 1: vCPU 0 at boot, the other ids hotpluggable, one socket of cores
    (a vCPU's id is its core id, as on the QEMU backend)."""
    _golden("domain-tcg-vcpus.xml", domain_xml(replace(CFG, max_vcpus=4)))
