#!/usr/bin/env python3
"""Live migration of a running appliance into a new local QEMU process (two slots
plugged, a filesystem mounted, a vCPU and a NIC added): the time the call takes, QEMU's
total time and downtime, and the bytes sent, unlimited, at a bandwidth limit and with
both disks copied into new files (seed 004), and on the libvirt backend between
two private libvirt daemons (root only); then
save and restore of the same appliance (also with its two-disk set copied in), and a
snapshot of its two-disk set; medians of several rounds.  libguestfs has no migration
(nor hotplug, since 1.48): the peer figure printed is its fastest way to the same
place, a new appliance with the same disks added and the filesystem mounted again
(launch + mount), same run.  Run ``.venv/bin/python tools/bench/bench_migrate.py
[--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.testing import peer
from guestslots.testing import testimages as images

PEER = """
import json, sys, time
images, tcg, rounds = json.loads(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
import peer  # guestslots/testing/peer.py, which runs on the system Python alone
took = []
for _ in range(rounds):
    t = time.perf_counter()
    g = peer._handle(tcg)
    for image in images:
        g.add_drive_opts(image, format="raw", readonly=0)
    g.launch()
    g.mount("/dev/sda", "/")
    took.append(time.perf_counter() - t)
    g.shutdown(); g.close()
print(json.dumps(sorted(took)[len(took) // 2]))
"""


def with_disks(app: guestslots.Appliance, disks: list[Path]) -> guestslots.Appliance:
    """*app* launched with a slot per disk, each plugged writable, the first mounted."""
    for _ in disks:
        app.add_drive("/dev/null")
    app.launch()
    for i, disk in enumerate(disks):
        app.hotplug(i, disk, readonly=False)
    app.mount("/dev/sda", "/")
    return app


def libvirt_rounds(rounds: int, tmp: Path, disks: list[Path], bandwidth: int
                   ) -> dict[str, tuple[float, ...]] | None:
    """The libvirt backend's migration (``migrate3``) between two private libvirt
    daemons on this host, back and forth, unlimited and at *bandwidth* MiB/s taking
    turns, with the same two disks plugged and one mounted: per kind, medians of
    (call s, libvirt's total ms, downtime ms, bytes); None where no private libvirtd
    can run (not root)."""
    from contextlib import ExitStack

    from guestslots.backends.libvirt.connection import capabilities_cache
    from guestslots.testing.libvirtd import private_libvirtd, unavailable

    if unavailable():
        return None
    with ExitStack() as stack:
        uris = [stack.enter_context(private_libvirtd(tmp / f"libvirtd-{n}",
                                                     capabilities_cache()))
                for n in range(2)]
        app = with_disks(guestslots.Appliance("libvirt"), disks)
        try:
            app.migrate(guestslots.MigrationParams(destination_uri=uris[0]))  # from embed
            runs: dict[str, list[tuple[float, int, int, int]]] = {
                "libvirt": [], f"libvirt {bandwidth} MiB/s": []}
            for i in range(2 * rounds):
                label, limit = (("libvirt", 0) if i % 2 == 0  # 0: unlimited
                                else (f"libvirt {bandwidth} MiB/s", bandwidth))
                t = time.perf_counter()
                done = app.migrate(guestslots.MigrationParams(destination_uri=uris[
                    (i + 1) % 2], bandwidth=limit))
                runs[label].append((time.perf_counter() - t, done.total_time_ms,
                                    done.downtime_ms, done.transferred))
                assert app.cat("/n") == "0\n"
        finally:
            app.shutdown()
    return {label: tuple(statistics.median(r[k] for r in results) for k in range(4))
            for label, results in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bandwidth", type=int, default=64, help="MiB/s for the limited run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        disks = [images.ext4(Path(tmp) / f"d{i}.img", {"n": f"{i}\n"}, size_mib=64)
                 for i in range(2)]
        app = with_disks(guestslots.Appliance(max_vcpus=4), disks)
        try:
            app.add_vcpu(1)
            app.add_nic(network="user")
            tcg = app.accel is not None and app.accel.accel == "tcg"
            # the kinds take turns, round by round: the first migrations after a launch
            # take longer, whatever their kind (4.7 s against 0.5-1 s a few later,
            # measured), which must not fall on one kind only
            kinds: dict[str, Callable[[Path], guestslots.MigrationParams]] = {
                "unlimited": lambda _: guestslots.MigrationParams(),
                f"{args.bandwidth} MiB/s":
                    lambda _: guestslots.MigrationParams(bandwidth=args.bandwidth),
                # seed 004: both disks copied into new files (the slots move on)
                "copying disks": lambda copies: guestslots.MigrationParams(
                    disks=[0, 1], disk_directory=str(copies))}
            runs: dict[str, list[tuple[float, int, int, int]]] = {k: [] for k in kinds}
            for i in range(args.rounds):
                for label, make in kinds.items():
                    copies = Path(tmp) / f"copies-{i}"
                    copies.mkdir(exist_ok=True)
                    params = make(copies)
                    t = time.perf_counter()
                    done = app.migrate(params)
                    took = time.perf_counter() - t
                    assert app.cat("/n") == "0\n"
                    runs[label].append((took, done.total_time_ms, done.downtime_ms,
                                        done.transferred))
            assert app.slots()[0].path == str(Path(tmp) / f"copies-{args.rounds - 1}"
                                              / "slot0.img")
            rows = {label: tuple(statistics.median(r[k] for r in results) for k in range(4))
                    for label, results in runs.items()}
            saves, restores = [], []
            for i in range(args.rounds):
                t = time.perf_counter()
                saved = app.save(Path(tmp) / f"saved-{i}")
                saves.append(time.perf_counter() - t)
                t = time.perf_counter()
                app = guestslots.restore(saved)
                restores.append(time.perf_counter() - t)
                assert app.cat("/n") == "0\n"
            app.diskset_add_all()
            with_set, with_set_back = [], []
            for i in range(args.rounds):
                t = time.perf_counter()
                saved = app.save(Path(tmp) / f"with-set-{i}", with_disk_set=True)
                with_set.append(time.perf_counter() - t)
                t = time.perf_counter()
                app = guestslots.restore(saved)
                with_set_back.append(time.perf_counter() - t)
                assert app.cat("/n") == "0\n"
            snaps = []
            for i in range(args.rounds):
                t = time.perf_counter()
                app.snapshot(f"s{i}", diskset=True)
                snaps.append(time.perf_counter() - t)
        finally:
            app.shutdown()
        on_libvirt = libvirt_rounds(args.rounds, Path(tmp), disks, args.bandwidth)
        here = Path(peer.__file__).parent
        out = subprocess.run(["/usr/bin/python3", "-c", PEER, json.dumps([str(d) for d in disks]),
                              "1" if tcg else "0", str(args.rounds), str(here)],
                             capture_output=True, text=True, check=True)
        theirs = json.loads(out.stdout)
    print(f"accelerator: {'tcg' if tcg else 'kvm'}; medians of {args.rounds} rounds")
    print(f"{'migration':<18} {'call s':>8} {'QEMU total ms':>14} {'downtime ms':>12} "
          f"{'MiB sent':>9}")
    for label, (call, total, down, nbytes) in rows.items():
        print(f"{label:<18} {call:>8.2f} {total:>14.0f} {down:>12.0f} {nbytes / 2**20:>9.1f}")
    if on_libvirt is not None:  # migrate3 between two libvirtd on this host
        for label, (call, total, down, nbytes) in on_libvirt.items():
            print(f"{label:<18} {call:>8.2f} {total:>14.0f} {down:>12.0f} "
                  f"{nbytes / 2**20:>9.1f}  (MiB/s over the job: "
                  f"{nbytes / 2**20 / (total / 1000):.1f})")
    print(f"save {statistics.median(saves):.2f} s, restore {statistics.median(restores):.2f} s, "
          f"snapshot of the two-disk set {statistics.median(snaps) * 1000:.0f} ms")
    print(f"save with the two-disk set (2 x 64 MiB copied) "
          f"{statistics.median(with_set):.2f} s, its restore "
          f"{statistics.median(with_set_back):.2f} s")
    best = rows["unlimited"][0]
    print(f"libguestfs, new appliance with the disks + mount: {theirs:.2f} s "
          f"({theirs / best:.1f}x the unlimited migration; it keeps no page cache, "
          "mount or process state)")


if __name__ == "__main__":
    main()
