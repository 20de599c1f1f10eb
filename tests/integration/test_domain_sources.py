"""A libvirt domain's disk in a slot: a running domain read at one point in time while
its disk changes, the backup job gone after; a shut-off domain's disk from its file."""

from __future__ import annotations

import json
import subprocess
import sys
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


def domain_xml(raw: Path, qcow2: Path | None) -> str:
    second = "" if qcow2 is None else f"""<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{qcow2}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>"""
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
    {second}
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


def test_every_disk_of_a_running_domain_at_one_point_in_time(
        app: Appliance, running: tuple[Any, Path], libvirtd_uri: str) -> None:
    domain, _ = running
    app.hotplug(0, str(images.ext4(running[1].with_name("other.fs"), {"x": "y"})))
    assert app.hotplug_domain_disks(NAME, uri=libvirtd_uri) == [1, 2]  # the first empty
    guest_writes(domain, 0xCD)
    assert app.list_filesystems() == {"/dev/sda": "ext4", "/dev/sdb1": "ext4",
                                      "/dev/sdc1": "ext4"}
    assert [s.format for s in app.slots()[1:3]] == ["raw", "raw"]  # the exports: raw
    app.unplug(1)
    assert not no_job(domain)  # slot 2 still reads through the job
    with app.mounted("/dev/sdc1", "/", readonly=True):
        assert app.cat("/whoami") == "in-the-domain\n"
    app.unplug(2)
    assert no_job(domain)  # the last slot of the job ended it
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


CLI = str(Path(sys.executable).parent / "guestslots")
FISH = str(Path(sys.executable).parent / "guestslots-fish")


@pytest.fixture
def os_domain(libvirtd_uri: str, tmp_path: Path) -> Iterator[Any]:
    """A running domain whose one disk holds a small Linux (hostname "indomain")."""
    import libvirt

    image = images.linux_image(tmp_path, "domos", hostname="indomain")
    conn = libvirt.open(libvirtd_uri)
    domain = conn.createXML(domain_xml(image, None).replace(NAME, "guestslots-os-test"))
    try:
        yield domain
    finally:
        domain.destroy()
        conn.close()


def test_the_cli_and_the_shell_take_a_domain(running: tuple[Any, Path], os_domain: Any,
                                             libvirtd_uri: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)

    cat = run(CLI, "cat", "-c", libvirtd_uri, "-d", "guestslots-os-test", "/etc/hostname")
    assert (cat.returncode, cat.stdout.strip()) == (0, "indomain"), cat.stderr
    report = run(CLI, "inspect", "-c", libvirtd_uri, "-d", NAME)
    assert report.returncode == 0, report.stderr
    assert [(r["image"], r["device"]) for r in json.loads(report.stdout)] == [
        (f"{NAME}:vda", "/dev/sda"), (f"{NAME}:vdb", "/dev/sdb")]
    fish = run(FISH, "-c", libvirtd_uri, "-d", NAME, "-m", "/dev/sdb1", "cat", "/whoami")
    assert (fish.returncode, fish.stdout) == (0, "in-the-domain\n"), fish.stderr
    usage = run(CLI, "cat", "-c", libvirtd_uri, "-d", NAME, "disk.img", "/whoami")
    assert usage.returncode == 2 and usage.stderr.endswith(
        "guestslots: error: cat: with -d DOMAIN, give only the PATH\n")
    mountpoint = running[1].parent / "mnt"
    mountpoint.mkdir()
    mounted = run(CLI, "mount", "-c", libvirtd_uri, "-d", "guestslots-os-test", "-i",
                  str(mountpoint))
    assert mounted.returncode == 0, mounted.stderr
    try:
        assert (mountpoint / "etc" / "hostname").read_text() == "indomain\n"
        assert not no_job(os_domain)  # the mount reads the domain through its export
    finally:
        umounted = run(CLI, "umount", str(mountpoint))
    assert umounted.returncode == 0, umounted.stderr
    missing = run(CLI, "ls", "-c", libvirtd_uri, "-d", "nosuchdomain", "/")
    assert missing.returncode == 1 and "Domain not found" in missing.stderr
    assert no_job(running[0]) and no_job(os_domain)  # every command ended its export


def test_gc_ends_the_export_of_a_caller_that_died(running: tuple[Any, Path],
                                                  libvirtd_uri: str) -> None:
    domain, _ = running
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from guestslots.domains import PointInTime; "
         f"print(PointInTime({NAME!r}, ['vda'], {libvirtd_uri!r}).begin()['vda'], "
         "flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    url = holder.stdout.readline()  # the job runs once the holder printed its export
    assert url.startswith("nbd+unix:///vda?socket="), url
    job_dir = Path(url.split("socket=")[1].strip()).parent
    assert not no_job(domain)
    kept = subprocess.run([CLI, "gc"], capture_output=True, text=True, timeout=120,
                          check=True)
    assert str(job_dir) not in kept.stdout and not no_job(domain)  # its caller lives
    holder.kill()
    holder.wait()
    gc = subprocess.run([CLI, "gc"], capture_output=True, text=True, timeout=120,
                        check=True)
    assert f"ended the point-in-time export of domain {NAME}" in gc.stdout, gc.stdout
    assert no_job(domain) and not job_dir.exists()


def test_the_libguestfs_facade_adds_a_running_domain(running: tuple[Any, Path],
                                                     libvirtd_uri: str, tmp_path: Path
                                                     ) -> None:
    """add_domain and add_libvirt_dom, as virt-inspector's programs call them: every
    disk of the running domain, read-only, at one point in time, after a drive of
    its own; the export ends with the handle."""
    import guestslots.guestfs as guestfs

    domain, _ = running
    other = images.ext4(tmp_path / "first.fs", {"x": "y"})
    g = guestfs.GuestFS(python_return_dict=True, environment=False, close_on_exit=False)
    g.add_drive_opts(str(other), format="raw", readonly=True)
    with pytest.raises(RuntimeError, match="^add_domain: .*read-only"):
        g.add_domain(NAME, libvirturi=libvirtd_uri)
    assert g.add_domain(NAME, libvirturi=libvirtd_uri, readonly=True) == 2
    g.launch()
    guest_writes(domain, 0xCD)
    assert g.list_devices() == ["/dev/sda", "/dev/sdb", "/dev/sdc"]
    assert g.list_filesystems() == {"/dev/sda": "ext4", "/dev/sdb1": "ext4",
                                    "/dev/sdc1": "ext4"}
    g.mount_ro("/dev/sdb1", "/")
    assert g.cat("/whoami") == "in-the-domain\n"
    g.close()
    assert no_job(domain)
    h = guestfs.GuestFS(environment=False, close_on_exit=False)
    assert h.add_libvirt_dom(domain, readonly=True) == 2
    h.launch()
    assert h.list_devices() == ["/dev/sda", "/dev/sdb"]
    h.close()
    assert no_job(domain)
