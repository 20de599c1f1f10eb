"""The libvirt domain XML: golden files, and libvirt's own schema accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lxml")

from lxml import etree

from guestslots.backends.libvirt.domxml import (
    DomainConfig,
    disk_xml,
    domain_xml,
    slot_alias,
)
from guestslots.model.drives import DriveSpec

GOLDEN = Path(__file__).parent / "golden"

CFG = DomainConfig(
    name="guestslots-test", accel="tcg", emulator="/usr/bin/qemu-system-x86_64",
    kernel="/a/vmlinux", initrd="/a/initrd",
    root_backing=(("/s/root.qcow2", "qcow2"), ("/a/root", "raw")),
    root_overlay="/w/root.qcow2", agent_socket="/w/agent.sock", console_log="/w/console.log",
)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    assert path.read_text() == text, f"{name} changed; if on purpose, update {path}"


def test_domain_xml_golden() -> None:
    _golden("domain-tcg.xml", domain_xml(CFG))


def test_disk_xml_golden() -> None:
    _golden("disk-overlay.xml", disk_xml(27, DriveSpec("/i/a.qcow2", "qcow2", label="data"),
                                         overlay="/w/overlay-slot27.qcow2"))
    _golden("disk-rw.xml", disk_xml(3, DriveSpec("/i/b.img", "raw", readonly=False)))
    assert slot_alias(3) == "ua-slot3"


def test_names_and_paths_are_escaped() -> None:
    xml = disk_xml(0, DriveSpec("/i/<a&b>'\".img", "raw", readonly=False))
    assert "/i/&lt;a&amp;b&gt;'&quot;.img" in xml


SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")


@pytest.mark.skipif(not SCHEMA.exists(),
                    reason="libvirt's schemas are not installed (./tools/setup installs them)")
def test_libvirts_schema_accepts_the_domain() -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    domain = domain_xml(CFG)
    disks = "".join(disk_xml(i, DriveSpec(f"/i/{i}.img", "raw")) for i in range(2))
    for text in (domain, domain.replace("</devices>", disks + "</devices>")):
        document = etree.fromstring(text.encode())
        assert schema.validate(document), schema.error_log
