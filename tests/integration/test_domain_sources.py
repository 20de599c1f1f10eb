"""A libvirt domain's disk in a slot: a running domain read at one point in time while
its disk changes, the backup job gone after; a shut-off domain's disk from its file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import guestslots
from guestslots import Appliance, DriveError, SlotState
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration,
              pytest.mark.single_pass("the domain's disk is an NBD source, the same on both "
                                      "backends; the domain runs at a private libvirtd")]

NAME = "guestslots-source-test"


def domain_xml(raw: Path, qcow2: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{NAME}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{raw}'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{qcow2}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>"""


@pytest.fixture
def running(libvirtd_uri: str, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A defined, running domain at the private libvirtd: vda a raw MBR disk whose ext4
    names itself, vdb a qcow2; the domain and its image."""
    import libvirt

    fs = images.ext4(tmp_path / "d.fs", {"whoami": "in-the-domain\n"})
    raw = images.partitioned(tmp_path / "d.img", "dos", fs)
    qcow2 = images.qcow2(raw, tmp_path / "d.qcow2")
    conn = libvirt.open(libvirtd_uri)
    domain = conn.defineXML(domain_xml(raw, qcow2))
    domain.create()
    try:
        yield domain, raw
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
        conn.close()


def guest_writes(domain: Any, byte: int) -> None:
    """The domain's guest overwrites the first MiB of vda (through QEMU's block layer,
    as the guest's own writes go: HMP ``qemu-io`` on the disk's device)."""
    import libvirt_qemu

    device = "/machine/peripheral/virtio-disk0/virtio-backend"
    said = libvirt_qemu.qemuMonitorCommand(
        domain, f'qemu-io -d {device} "write -P {byte:#x} 0 1M"',
        libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    assert "rror" not in said, said


def no_job(domain: Any) -> bool:
    import libvirt

    return bool(domain.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE)


def test_a_running_domains_disk_is_read_as_it_was_when_plugged(
        app: Appliance, running: tuple[Any, Path], libvirtd_uri: str) -> None:
    domain, raw = running
    disks = guestslots.domain_disks(NAME, uri=libvirtd_uri)
    assert [(d.target, d.format, d.source) for d in disks] == [
        ("vda", "raw", str(raw)), ("vdb", "qcow2", str(raw.with_suffix(".qcow2")))]
    before = raw.read_bytes()[:512]
    assert app.hotplug_domain(0, NAME, "vda", uri=libvirtd_uri) == 0
    assert not no_job(domain)
    guest_writes(domain, 0xAB)
    assert raw.read_bytes()[:4] == b"\xab" * 4  # the domain's disk changed...
    assert app.pread_device("/dev/sda", 512, 0) == before  # ...not the slot's view
    assert app.list_filesystems() == {"/dev/sda1": "ext4"}
    with app.mounted("/dev/sda1", "/", readonly=True):
        assert app.cat("/whoami") == "in-the-domain\n"
    with pytest.raises(DriveError, match="point-in-time export"):  # one job per domain
        app.hotplug_domain(1, NAME, "vdb", uri=libvirtd_uri)
    assert app.slots()[1].state is SlotState.EMPTY
    app.unplug(0)
    assert no_job(domain)  # the unplug ended the backup job
    app.hotplug_domain(0, NAME, "vda", uri=libvirtd_uri)  # a new point in time
    assert app.pread_device("/dev/sda", 4, 0) == b"\xab" * 4
    app.unplug(0)


def test_a_domains_export_ends_with_the_appliance(running: tuple[Any, Path],
                                                  libvirtd_uri: str) -> None:
    domain, _ = running
    with Appliance() as other:
        other.add_drive("/dev/null")
        other.launch()
        other.hotplug_domain(-1, NAME, uri=libvirtd_uri)
        assert not no_job(domain)
    assert no_job(domain)


def test_a_shut_off_domains_disk_is_opened_from_its_file(
        app: Appliance, running: tuple[Any, Path], libvirtd_uri: str) -> None:
    domain, _ = running
    domain.destroy()
    app.hotplug_domain(0, NAME, "vdb", uri=libvirtd_uri)
    assert app.slots()[0].format == "qcow2" and app.slots()[0].readonly
    assert app.list_filesystems() == {"/dev/sda1": "ext4"}
    app.unplug(0)


def test_a_missing_domain_or_disk_is_a_clear_error(app: Appliance, running: tuple[Any, Path],
                                                   libvirtd_uri: str) -> None:
    with pytest.raises(DriveError, match="domain nosuchdomain .*Domain not found"):
        app.hotplug_domain(0, "nosuchdomain", uri=libvirtd_uri)
    with pytest.raises(DriveError, match="has no disk vdz \\(it has vda, vdb\\)"):
        app.hotplug_domain(0, NAME, "vdz", uri=libvirtd_uri)
    assert app.slots()[0].state is SlotState.EMPTY
