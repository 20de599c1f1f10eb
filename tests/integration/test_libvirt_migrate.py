"""The libvirt backend's live migration (issue 13, seed 002): the domain moves to
another libvirt on this host (a private libvirtd,
:mod:`guestslots.testing.libvirtd`) with libvirt's typed parameters, and the
appliance carries on there through the same object:
mounts, the agent channel, hotplug (its events come from the new libvirt now), the
runtime record; bad parameters are refused before anything moves.

Runs in the libvirt pass (the session's appliances are libvirt's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guestslots import (
    Appliance,
    MigrationParamError,
    MigrationParams,
    MigrationProgress,
    QemuError,
    QemuTimeout,
)
from guestslots.appliance import BACKEND_ENV
from guestslots.backends.libvirt import LibvirtBackend
from guestslots.host import runtime
from guestslots.testing import testimages as images

from .test_faults import wait_gone

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif((os.environ.get(BACKEND_ENV) or "qemu") != "libvirt",
                       reason="the libvirt backend's migration: runs in the libvirt pass"),
]
libvirt = pytest.importorskip("libvirt")


def backend(app: Appliance) -> LibvirtBackend:
    found = app._backend
    assert isinstance(found, LibvirtBackend)
    return found


def launched(slots: int = 2) -> Appliance:
    app = Appliance(max_vcpus=4)  # test_migrate's layout: the same saved state
    for _ in range(slots):
        app.add_drive("/dev/null")
    app.launch()
    return app


def test_the_appliance_carries_on_at_the_other_libvirt(libvirtd_uri: str,
                                                        tmp_path: Path) -> None:
    disk = images.ext4(tmp_path / "rw.img", {"before": "written before\n"}, size_mib=32)
    other = images.ext4(tmp_path / "other.img", {"n": "plugged after\n"})
    app = launched()
    try:
        source_uri = runtime.read(runtime.record_path(app.id)).uri
        app.hotplug(0, disk, readonly=False)
        app.mount("/dev/sda", "/")
        app.write("/in-cache", "only in the page cache\n")
        app.add_vcpu(1)  # the domain's XML carries it over
        old_pid = app.pid
        assert old_pid is not None
        seen: list[MigrationProgress] = []
        done = app.migrate(MigrationParams(destination_uri=libvirtd_uri, bandwidth=1000),
                           progress=seen.append)
        assert done.status == "completed" and done.total_time_ms > 0, done
        assert done.transferred > 0 and done.total > 0, done
        assert all(p.status == "active" for p in seen)
        wait_gone(old_pid)
        assert app.pid not in (None, old_pid)
        # the domain is the other libvirt's now, and the record says so
        there = libvirt.open(libvirtd_uri)
        try:
            assert [d.name() for d in there.listAllDomains(0)] == [backend(app).domain_name]
        finally:
            there.close()
        record = runtime.read(runtime.record_path(app.id))
        assert record.uri == libvirtd_uri != source_uri and record.pid == app.pid
        # the same guest through the same object: the mount, the page cache, the vCPU
        assert app.cat("/in-cache") == "only in the page cache\n"
        assert [v.state for v in app.vcpus()] == ["online", "online", "absent", "absent"]
        assert app.add_vcpu(2) == 2  # plugged over there
        assert record.vcpus_plugged == (0, 1)
        app.write("/after", "written over there\n")
        # hotplug and unplug there (confirmed by the other libvirt's events)
        app.hotplug(1, other)
        app.mkdir("/other")
        app.mount_ro("/dev/sdb", "/other")
        assert app.cat("/other/n") == "plugged after\n"
        app.umount("/other")
        app.unplug(1)
        assert app.slots()[1].state.value == "empty"
        app.umount_all()
        app.unplug(0)
        app.hotplug(0, disk)
        app.mount_ro("/dev/sda", "/")
        assert app.cat("/after") == "written over there\n"
        pid = app.pid
    finally:
        app.shutdown()
    assert pid is not None
    wait_gone(pid)
    there = libvirt.open(libvirtd_uri)
    try:
        assert there.listAllDomains(0) == []  # shut down over there too
    finally:
        there.close()


def test_a_bandwidth_limit_reaches_the_source_qemu(libvirtd_uri: str,
                                                   other_libvirtd_uri: str) -> None:
    """libvirt's ``bandwidth`` typed parameter is the migration's speed: read back from
    the source domain (libvirt asks its QEMU) while the job runs, at each progress
    report; an unlimited migration reads libvirt's "unlimited".  An appliance at one
    private libvirtd moves to another unlimited, then back at 16 MiB/s.  (What the
    limit does to the rate and the duration is measured by tools/bench/bench_migrate.py;
    this test asserted them before.)"""
    app = Appliance("libvirt", uri=libvirtd_uri)
    app.add_drive("/dev/null")
    app.launch()

    def speeds(params: MigrationParams) -> set[int]:
        source = runtime.read(runtime.record_path(app.id))
        seen: set[int] = set()

        def read_back(progress: MigrationProgress) -> None:
            if progress.transferred == 0:
                return  # libvirt's first report can come before the job set its speed
            conn = libvirt.open(source.uri)
            try:
                domain = conn.lookupByName(source.domain)
                speed = domain.migrateGetMaxSpeed()
                # read while the job ran (after it, libvirt answers its default)
                if domain.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_UNBOUNDED:
                    seen.add(speed)
            except libvirt.libvirtError:
                pass  # the domain left in the meantime: no reading
            finally:
                conn.close()

        done = app.migrate(params, progress=read_back)
        assert done.status == "completed" and done.transferred > 0, done
        return seen

    try:
        unlimited = speeds(MigrationParams(destination_uri=other_libvirtd_uri))
        assert unlimited and all(s > 1 << 40 for s in unlimited), unlimited
        assert speeds(MigrationParams(destination_uri=libvirtd_uri, bandwidth=16)) == {16}
        assert app.list_devices() == ["/dev/sda"]  # still answering, back where it began
        assert runtime.read(runtime.record_path(app.id)).uri == libvirtd_uri
    finally:
        app.shutdown()


def test_bad_destinations_are_refused_before_anything_moves(libvirtd_uri: str,
                                                            tmp_path: Path) -> None:
    app = launched()
    try:
        pid = app.pid
        here = runtime.read(runtime.record_path(app.id)).uri
        with pytest.raises(MigrationParamError, match="'destination_uri': the libvirt"):
            app.migrate()
        with pytest.raises(MigrationParamError, match="'destination_uri': .* the libvirt "
                                                      "the appliance runs in"):
            app.migrate(MigrationParams(destination_uri=here))
        with pytest.raises(MigrationParamError, match="embedded driver cannot take"):
            app.migrate(MigrationParams(destination_uri=f"qemu:///embed?root={tmp_path}"))
        with pytest.raises(MigrationParamError, match="'destination_uri': cannot connect"):
            app.migrate(MigrationParams(destination_uri=f"qemu+unix:///system?socket="
                                                        f"{tmp_path}/none"))
        with pytest.raises(MigrationParamError, match="'destination_config': not an "
                                                      "appliance's"):
            app.migrate(MigrationParams(destination_uri=libvirtd_uri,
                                        destination_config="<domain/>"))
        # a stream URI libvirt's QEMU driver refuses, said before libvirt starts a
        # destination (before: libvirt's error once it had)
        with pytest.raises(MigrationParamError, match="'uri': 'bogus://x': libvirt's QEMU"):
            app.migrate(MigrationParams(destination_uri=libvirtd_uri, uri="bogus://x"))
        app.hotplug(0, images.ext4(tmp_path / "x.img", {"n": "x\n"}), readonly=False)
        # a destination XML that changes what the guest sees: libvirt refuses it
        domain = backend(app).domain
        assert domain is not None
        xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        bigger = xml.replace("<memory unit='KiB'>524288</memory>",
                             "<memory unit='KiB'>1048576</memory>")
        assert bigger != xml
        with pytest.raises(QemuError, match=r"(?s)runs on here: .*memory"):
            app.migrate(MigrationParams(destination_uri=libvirtd_uri,
                                        destination_config=bigger))
        # too slow for its timeout: libvirt aborts the job, the domain runs on here
        with pytest.raises(QemuTimeout, match="abandoned; the appliance runs on here"):
            app.migrate(MigrationParams(destination_uri=libvirtd_uri, bandwidth=1),
                        timeout=1)
        there = libvirt.open(libvirtd_uri)
        try:
            assert there.listAllDomains(0) == []  # nothing left over there
        finally:
            there.close()
        # nothing moved: the same process answers
        assert app.pid == pid
        assert app.list_devices()[0] == "/dev/sda"
    finally:
        app.shutdown()
