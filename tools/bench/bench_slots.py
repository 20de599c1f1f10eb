#!/usr/bin/env python3
"""Benchmark the slot model: launch, hotplug, unplug and a per-image scan.

Prints medians (and min/max) of:

- cold launch: appliance build (empty cache) + boot to the first answered call;
- launch with the appliance cached;
- hotplug latency: ``hotplug()`` until the new disk opens in the appliance;
- unplug latency: ``unplug()`` until QEMU and the guest both dropped the disk;
- hotplug until udev's ``/dev/disk/guestslots/<label>`` link exists (not awaited by calls);
- per image: hotplug + list_filesystems + mount_ro + read a file + unplug;
- with libguestfs installed (it makes the layouts): hotplug of a disk holding an
  LVM volume group (activation included), the same per-image scan reading the
  root LV, a forced unplug of the active VG's slot, and assembling an md RAID1
  by hotplugging its two members;

and, when libguestfs (Debian's python3-guestfs) is installed, the same launch
and per-image figures for it (one launch per image, as libguestfs 1.48 must;
direct backend, TCG forced where KVM does not run), measured in the same run,
with the ratios.  Run it with ``.venv/bin/python tools/bench/bench_slots.py``;
``--json FILE`` also writes the figures.  It installs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.testing import peer
from guestslots.testing.testimages import named_image


def median_of(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples)}


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def make_images(directory: Path, n: int) -> list[Path]:
    return [named_image(directory, f"image{i}", None) for i in range(n)]


def launch_once(cache_dir: str | None) -> float:
    env_before = os.environ.get("GUESTSLOTS_CACHE_DIR")
    if cache_dir:
        os.environ["GUESTSLOTS_CACHE_DIR"] = cache_dir
    try:
        app = guestslots.Appliance()
        app.add_drive("/dev/null")
        t = timed(app.launch)
        app.shutdown()
        return t
    finally:
        if cache_dir:
            if env_before is None:
                del os.environ["GUESTSLOTS_CACHE_DIR"]
            else:
                os.environ["GUESTSLOTS_CACHE_DIR"] = env_before


def bench_volumes(app: guestslots.Appliance, volumes: dict[str, list[str]],
                  cycles: int) -> dict[str, dict[str, float]]:
    """LVM and md RAID through slots 0 and 1 of a running appliance."""
    (lvm_image,) = volumes["lvm-root"]
    raid_a, raid_b = volumes["md-raid1"]
    plug, per_image, forced, raid = [], [], [], []
    for _ in range(cycles):
        plug.append(timed(lambda: app.hotplug(0, lvm_image)))
        app.mount_ro("/dev/vgroot/root", "/")
        forced.append(timed(lambda: app.unplug(0, force=True)))

        def scan() -> None:
            app.hotplug(0, lvm_image)
            assert "/dev/vgroot/root" in app.list_filesystems()
            app.mount_ro("/dev/vgroot/root", "/")
            assert app.cat("/whoami") == "lvm-root-root\n"
            app.unplug(0, force=True)
        per_image.append(timed(scan))

        def assemble() -> None:
            app.hotplug(0, raid_a)
            app.hotplug(1, raid_b)
            assert app.list_md_devices() == ["/dev/md0"]
        raid.append(timed(assemble))
        app.unplug(1, force=True)
        app.unplug(0)
    return {
        "hotplug of a VG's disk, activation included": median_of(plug),
        "forced unplug: unmount, deactivate VG, unplug": median_of(forced),
        "per LVM image: plug + activate, list fs, mount LV, read, unplug": median_of(per_image),
        "md RAID1: hotplug both members until assembled": median_of(raid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="hotplug/unplug cycles")
    parser.add_argument("--images", type=int, default=10, help="images for the per-image scan")
    parser.add_argument("--launches", type=int, default=3, help="launches of each kind")
    parser.add_argument("--peer-images", type=int, default=3, help="libguestfs launches (0: skip)")
    parser.add_argument("--volume-cycles", type=int, default=5,
                        help="LVM and md RAID cycles (0: skip; needs libguestfs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="guestslots-bench-") as tmp:
        work = Path(tmp)
        imgs = make_images(work, max(args.images, args.peer_images, 1))

        cold = [launch_once(str(work / f"cold-cache{i}")) for i in range(args.launches)]
        results["cold launch (build + boot)"] = median_of(cold)
        cached = [launch_once(None) for _ in range(args.launches)]
        results["launch, appliance cached"] = median_of(cached)

        app = guestslots.Appliance()
        for _ in range(max(args.images, 2)):
            app.add_drive("/dev/null")
        app.launch()
        accel = app.accel.accel if app.accel else "?"
        # the first hotplug after boot is slower (FIELD-NOTES); warm up once
        app.hotplug(0, imgs[0])
        app.unplug(0)
        plug, unplug = [], []
        for _ in range(args.cycles):
            plug.append(timed(lambda: app.hotplug(1, imgs[0])))
            unplug.append(timed(lambda: app.unplug(1)))
        results["hotplug (call -> disk opens in appliance)"] = median_of(plug)
        results["unplug (call -> gone in QEMU and guest)"] = median_of(unplug)
        links = []
        for _ in range(max(args.cycles // 2, 1)):
            t = time.perf_counter()
            app.hotplug(1, imgs[0], label="bench")
            app.resolve_link("/dev/disk/guestslots/bench")
            links.append(time.perf_counter() - t)
            app.unplug(1)
        results["hotplug until udev link (serial) exists"] = median_of(links)

        per_image = []
        for i in range(args.images):
            def scan(i: int = i) -> None:
                app.hotplug(i, imgs[i])
                dev = app.slots()[i].device
                assert app.list_filesystems()[dev] == "ext4"
                app.mount_ro(dev, "/")
                assert app.cat("/whoami") == f"image{i}\n"
                app.umount_all()
                app.unplug(i)
            per_image.append(timed(scan))
        results["per image: plug, list fs, mount, read, unplug"] = median_of(per_image)

        missing = peer.available()
        volumes = None
        if args.volume_cycles and not missing:
            volumes = peer.build_layouts(work, force_tcg=accel == "tcg")
            results.update(bench_volumes(app, volumes, args.volume_cycles))
        app.shutdown()

        peer_results = None
        if args.peer_images and not missing:
            peer_scan = [[str(p), "raw", "/dev/sda", p.stem] for p in imgs[: args.peer_images]]
            if volumes is not None:
                peer_scan += [[volumes["lvm-root"][0], "raw", "/dev/vgroot/root", "lvm-root-root"]
                         ] * args.peer_images
            peer_results = peer.run({
                "force_tcg": accel == "tcg",
                "launches": args.peer_images,
                "launch_image": [str(imgs[0]), "raw"],
                "scan": peer_scan,
            })
            results["libguestfs launch"] = median_of(peer_results["launch"])
            results["libguestfs per image: launch, list fs, mount, read, close"] = median_of(
                peer_results["scan"][: args.peer_images])
            if volumes is not None:
                results["libguestfs per LVM image: launch, list fs, mount LV, read"] = \
                    median_of(peer_results["scan"][args.peer_images:])

    print(f"guestslots {guestslots.__version__}, accelerator {accel}")
    print(f"{'measure':58} {'median':>9} {'min':>9} {'max':>9} {'n':>3}")
    for name, r in results.items():
        print(f"{name:58} {r['median']:9.3f} {r['min']:9.3f} {r['max']:9.3f} {r['n']:3.0f}")
    if peer_results:
        ratios = {
            "launch: libguestfs / guestslots cached": results["libguestfs launch"]["median"]
            / results["launch, appliance cached"]["median"],
            "per image: libguestfs / guestslots slots": results[
                "libguestfs per image: launch, list fs, mount, read, close"]["median"]
            / results["per image: plug, list fs, mount, read, unplug"]["median"],
        }
        lvm_peer = results.get("libguestfs per LVM image: launch, list fs, mount LV, read")
        if lvm_peer is not None:
            ratios["per LVM image: libguestfs / guestslots slots"] = lvm_peer["median"] / results[
                "per LVM image: plug + activate, list fs, mount LV, read, unplug"]["median"]
        for name, ratio in ratios.items():
            print(f"{name:58} {ratio:8.1f}x")
        results["ratios"] = ratios
    else:
        print(f"libguestfs: not measured ({missing or 'skipped'})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
