#!/usr/bin/env python3
"""Acceptance check, kept outside the suite: the five design documents' examples
(``../shared/seeds/``), call by call, with guestslots's names for them (issue 33).
Each step prints what the seed says, what was done, and ok / FAILED; the exit
status is the number of failures.

Run ``.venv/bin/python tools/acceptance/seeds.py [--backend qemu|libvirt]``.  On
libvirt, migration needs a libvirt daemon to go to: a private one is started (root
only; see ``guestslots.testing.libvirtd``).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import guestslots
from guestslots import CONFIG, CURRENT, LIVE, MigrationParams
from guestslots.host import runtime
from guestslots.testing import testimages as images

failures: list[str] = []


def step(seed: str, says: str, check: Callable[[], Any]) -> None:
    """Run *check* (an assertion, or a call that must not raise) for *says*."""
    try:
        result = check()
        ok = result is None or result is True or (result is not False)
        detail = "" if result in (None, True) else f" -> {result!r}"
    except Exception as e:  # reported, not raised: every step runs
        ok, detail = False, f" -> {type(e).__name__}: {e}"
    print(f"[{seed}] {'ok    ' if ok else 'FAILED'} {says}{detail}")
    if not ok:
        failures.append(f"{seed}: {says}")


def refused(call: Callable[[], Any], error: type[Exception], words: str) -> bool:
    """Whether *call* raises *error* with *words* in its message."""
    try:
        call()
    except error as e:
        if words not in str(e):
            raise AssertionError(f"refused, but said: {e}") from None
        return True
    raise AssertionError("accepted")


@contextlib.contextmanager
def destination(backend: str, tmp: Path) -> Iterator[dict[str, Any]]:
    """Where a migration goes: nothing to name on QEMU (a new local process); a
    private libvirt daemon on libvirt."""
    if backend != "libvirt":
        yield {}
        return
    from guestslots.backends.libvirt.connection import capabilities_cache
    from guestslots.testing.libvirtd import private_libvirtd

    with private_libvirtd(tmp / "libvirtd", capabilities_cache()) as uri:
        yield {"destination_uri": uri}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="qemu")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        disk1 = images.ext4(tmp / "disk1.img", {"n": "disk1\n"}, size_mib=32)
        disk2 = images.ext4(tmp / "disk2.img", {"n": "disk2\n"}, size_mib=32)
        g = guestslots.Appliance(args.backend, max_vcpus=4)

        # 003: /dev/null drives reserve slots; hotplug by index after launch
        def reserve_and_launch() -> None:
            for _ in range(3):
                g.add_drive("/dev/null")
            g.launch()

        step("003", 'guestfs_add_drive (g, "/dev/null") x3, then guestfs_launch',
             reserve_and_launch)
        step("003", "list_devices shows the slots, not the hidden appliance drive",
             lambda: g.list_devices() == ["/dev/sda", "/dev/sdb", "/dev/sdc"])
        step("003", "hotplug an image into slot 1: /dev/sdb is that image",
             lambda: g.hotplug(1, disk1, readonly=False) == 1
             and g.list_filesystems()["/dev/sdb"] == "ext4")
        step("003", "hotplug into slot -1 (the first empty one)",
             lambda: g.hotplug(-1, disk2, readonly=False) == 0)

        # 000: vCPUs by id, -1 both ways, LIVE / CONFIG / CURRENT
        step("000", "virDomainAddVcpu(domain, vcpu=1, LIVE | CONFIG)",
             lambda: g.add_vcpu(vcpu=1, flags=LIVE | CONFIG) == 1)
        step("000", "virDomainAddVcpu(domain, -1, LIVE): the first free id",
             lambda: g.add_vcpu(-1, LIVE) == 2)
        step("000", "the guest has them online",
             lambda: [v.state for v in g.vcpus()] == ["online", "online", "online",
                                                      "absent"])
        # 001: NICs, reproducible device ids, the runtime file on every hotplug
        step("001", "HotAddNic: a NIC in the first free slot, device id from the uuid and "
             "slot", lambda: g.add_nic() == 0 and g.nics()[0].device_id == f"nic-{g.id}-0")
        step("001", "the runtime file is updated on every hotplug",
             lambda: [n.slot for n in runtime.read(runtime.record_path(g.id)).nics] == [0]
             and runtime.read(runtime.record_path(g.id)).slots[1].path == str(disk1))
        step("001", "HotDelNic by slot", lambda: g.remove_nic(0) == 0 and g.nics() == [])

        # 004: the disk set
        step("004", "virDomainDiskSetAdd(dom, disk, 0): 0, then 1 if already in the set",
             lambda: (g.diskset_add("/dev/sdb", 0), g.diskset_add(1, 0)) == (0, 1))
        step("004", "virDomainDiskSetRemove(dom, disk, 0) of one absent: 1",
             lambda: g.diskset_remove(2, 0) == 1)
        step("004", "virDomainDiskSetAddAll / Size / List(dom, array, n=1, 0)",
             lambda: (g.diskset_add_all(0), g.diskset_size(0), g.diskset_list(1, 0))
             == (0, 2, [0]))
        step("004", "RemoveAll, then Add the one to migrate",
             lambda: (g.diskset_remove_all(0), g.diskset_add(1, 0)) == (0, 0))
        step("004", "flags are ignored for now: 0 only",
             lambda: refused(lambda: g.diskset_size(1), guestslots.FlagError, "reserved"))
        step("004", "virDomainSnapshotCreateXML(dom, xml, 0): all disks",
             lambda: len(g.snapshot("all")) == 2)
        step("004", "... with VIR_DOMAIN_SAVE_DISK_SET: the set's disks only",
             lambda: len(g.snapshot("set", diskset=True)) == 1)

        # 002: typed migration parameters
        with destination(args.backend, tmp) as there:
            typed = {"bandwidth": 64}
            params = MigrationParams.from_typed(typed).replace(**there)
            step("002", "VIR_MIGRATE_PARAM_BANDWIDTH as a typed parameter, by its name",
                 lambda: MigrationParams.from_typed(typed).bandwidth == 64)
            step("002", "an unknown typed parameter is refused, by its name",
                 lambda: refused(lambda: MigrationParams.from_typed({"bandwith": 1}),
                                 guestslots.MigrationParamError, "'bandwith'"))
            if args.backend == "qemu":
                step("002", "VIR_MIGRATE_PARAM_DEST_NAME: 'only allowed with hypervisors "
                     "that support domain renaming'",
                     lambda: refused(lambda: g.migrate(MigrationParams.from_typed(
                         {"destination_name": "copy"})), guestslots.MigrationParamError,
                         "cannot rename"))
            copies = tmp / "copies"
            copies.mkdir()
            step("002/004", "virDomainMigrate(..., VIR_MIGRATE_WITH_DISK_SET): the set's "
                 "disk copied, the guest carries on",
                 lambda: g.migrate(params.replace(with_disk_set=True,
                                                  disk_directory=str(copies))).status
                 == "completed" and g.list_filesystems()["/dev/sdb"] == "ext4")

            # 004: save with memory, live, all disks
            step("004", "virDomainSaveFlags(dom, to, xml, VIR_DOMAIN_SAVE_LIVE): resumed "
                 "after", lambda: g.save(tmp / "saved", live=True, disks="all")
                 and g.state is guestslots.ApplianceState.RUNNING)

            # 000 again, last: under TCG, QEMU 7.2 plugs nothing (a NIC neither) and saves
            # or migrates nothing after a vCPU unplug, until the next launch
            tcg = g.accel is not None and g.accel.accel == "tcg"
            if args.backend == "libvirt" and tcg:
                step("000", "virDomainRemoveVcpu(domain, -1, LIVE): 'may fail if the "
                     "hypervisor does not support' it (libvirt under TCG)",
                     lambda: refused(lambda: g.remove_vcpu(-1, LIVE), guestslots.VcpuError,
                                     "cannot unplug a vCPU under TCG"))
            else:
                step("000", "virDomainRemoveVcpu(domain, -1, LIVE): the highest",
                     lambda: g.remove_vcpu(-1, LIVE) == 2)
            step("000", "flags other than LIVE / CONFIG: a flag error",
                 lambda: refused(lambda: g.add_vcpu(3, 4), guestslots.FlagError,
                                 "flags must be a combination"))

            # 003 again: unplug, names stay contiguous and stable
            step("003", "unplug slot 0: slot 1 stays /dev/sdb",
                 lambda: g.unplug(0) == 0 and g.slots()[1].device == "/dev/sdb")
            g.shutdown()
            step("000", "CURRENT after shutdown is CONFIG: the definition",
                 lambda: g.add_vcpu(-1, CURRENT) >= 1 and g.vcpus()[1].present)
            g.shutdown()

            def restored() -> bool:  # (at the private libvirt daemon on libvirt)
                back = guestslots.restore(tmp / "saved")
                try:
                    return back.slots()[1].path == str(tmp / "saved" / "disks" / "slot1.img")
                finally:
                    back.shutdown()

            step("004", "the live save restores, on its copies of all disks", restored)
        # 001: the runtime file of an appliance whose QEMU died relaunches it
        h = guestslots.Appliance(args.backend)
        h.add_drive(disk2, readonly=True)
        h.launch()
        h.kill()
        with contextlib.suppress(guestslots.GuestslotsError):
            h.list_filesystems()  # the call that finds QEMU gone

        def relaunched() -> bool:
            h.relaunch()
            return h.list_devices() == ["/dev/sda"] and h.slots()[0].path == str(disk2)

        step("001", "restart with the identical layout from the runtime file", relaunched)
        h.shutdown()
    print(f"{len(failures)} failed" if failures else "every seed example passed")
    return len(failures)


if __name__ == "__main__":
    raise SystemExit(main())
