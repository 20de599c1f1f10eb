#!/usr/bin/env python3
"""Many images at once: images per second with 1, 2 and N pool workers, against
libguestfs run as its users parallelise it (one handle per thread, as virt-df
does), on the same images in the same run; memory per appliance (idle and
busy) against libguestfs's QEMU; and one image through ``isolated()``, part by
part; and hotplug into slots 0, 125 and 250 (the cost must not depend on the slot).

Each image is a small ext4 disk (GPT, MBR or bare); the work per image is what
a scan does: list the filesystems, mount the first one read-only, read a file.
libguestfs runs with the direct backend under TCG (as everything here).  Run
``.venv/bin/python tools/bench/bench_pool.py [--images 12] [--peer-images 4]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import guestslots
from guestslots.pool import default_workers
from guestslots.testing import testimages as images

PEER_ENV = {**os.environ, "LIBGUESTFS_BACKEND": "direct",
            "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}

# libguestfs, one handle per thread over a shared list of images (as virt-df -P does);
# run by the system Python, which has libguestfs's binding.
PEER = textwrap.dedent("""
    import json, queue, sys, threading, time, guestfs
    spec = json.loads(sys.argv[1])
    todo = queue.SimpleQueue()
    for image in spec["images"]:
        todo.put(image)
    rss = []
    def rss_of(pid):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return {k: int(v.split()[0]) // 1024 for k, v in
                    (line.split(":", 1) for line in f if line.startswith(("Rss", "Pss")))}
    def worker():
        while True:
            try:
                image = todo.get_nowait()
            except queue.Empty:
                return
            g = guestfs.GuestFS(python_return_dict=True)
            g.set_backend("direct")
            g.add_drive_opts(image, readonly=1, format="raw")
            g.launch()
            fs = g.list_filesystems()
            g.mount_ro(next(iter(fs)), "/")
            g.cat("/whoami")
            rss.append(rss_of(g.get_pid()))
            g.close()
    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(spec["workers"])]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"seconds": time.monotonic() - started, "rss": rss}))
""")


def scan(app: guestslots.Appliance) -> str:
    device = next(iter(app.list_filesystems()))
    app.mount_ro(device, "/")
    return app.cat("/whoami")


def make_images(directory: Path, n: int) -> list[str]:
    tables = ["gpt", "dos", None]
    return [str(images.named_image(directory, f"img{i}", tables[i % 3])) for i in range(n)]


def memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return {k: int(v.split()[0]) // 1024 for k, v in
                (line.split(":", 1) for line in f if line.startswith(("Rss", "Pss")))}


def per_image_parts(image: str, rounds: int) -> dict[str, float]:
    parts: dict[str, list[float]] = {}
    for _ in range(rounds):
        marks = [("", time.perf_counter())]
        app = guestslots.Appliance()
        app.add_drive("/dev/null")
        app.launch()
        marks.append(("restore", time.perf_counter()))
        app.hotplug(0, image)
        marks.append(("first hotplug", time.perf_counter()))
        device = next(iter(app.list_filesystems()))
        marks.append(("list filesystems", time.perf_counter()))
        app.mount_ro(device, "/")
        app.cat("/whoami")
        marks.append(("mount and read", time.perf_counter()))
        app.shutdown()
        marks.append(("shutdown", time.perf_counter()))
        for (_, before), (name, after) in itertools.pairwise(marks):
            parts.setdefault(name, []).append(after - before)
        parts.setdefault("whole image", []).append(marks[-1][1] - marks[0][1])
    return {name: statistics.median(v) for name, v in parts.items()}


def memory_per_appliance(image: str, count: int) -> tuple[dict[str, int], dict[str, int]]:
    apps = []
    try:
        for _ in range(count):
            app = guestslots.Appliance()
            app.add_drive("/dev/null")
            app.launch()
            apps.append(app)
        idle = [memory(a.pid) for a in apps if a.pid]
        for app in apps:
            app.hotplug(0, image)
            scan(app)
            app.umount_all()
            app.unplug(0)
        busy = [memory(a.pid) for a in apps if a.pid]
    finally:
        for app in apps:
            app.shutdown()

    def med(rows: list[dict[str, int]]) -> dict[str, int]:
        return {k: int(statistics.median(r[k] for r in rows)) for k in rows[0]}

    return med(idle), med(busy)


def hotplug_by_slot(image: str, rounds: int) -> dict[int, float]:
    """Median hotplug time into slots 0, 125 and 250 of one appliance (255 reserved)."""
    times: dict[int, list[float]] = {0: [], 125: [], 250: []}
    with guestslots.Appliance() as app:
        for _ in range(251):
            app.add_drive("/dev/null")
        app.launch()
        app.hotplug(0, image)  # the first hotplug after a restore is the slowest
        app.unplug(0)
        for _ in range(rounds):
            for slot, samples in times.items():
                started = time.perf_counter()
                app.hotplug(slot, image)
                samples.append(time.perf_counter() - started)
                app.unplug(slot)
    return {slot: statistics.median(samples) for slot, samples in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--peer-images", type=int, default=4,
                        help="images for libguestfs (each launch takes 10-30 s here)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the breakdown")
    args = parser.parse_args()
    n = default_workers()
    with tempfile.TemporaryDirectory() as d:
        fleet = make_images(Path(d), args.images)
        with guestslots.Pool(1) as pool:  # the saved state, if missing
            pool.map(scan, fleet[:1])
        rates = {}
        for workers in sorted({1, 2, n}):
            started = time.perf_counter()
            with guestslots.Pool(workers, progress=False) as pool:
                results = pool.map(scan, fleet)
            took = time.perf_counter() - started
            assert all(r.ok for r in results), [r.error for r in results if not r.ok]
            rates[workers] = len(fleet) / took
            print(f"guestslots pool, {workers} worker(s): {rates[workers]:.2f} images/s "
                  f"({len(fleet)} images in {took:.1f} s)")
        print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
        peer: dict[int, dict[str, object]] = {}
        for workers in sorted({1, 2}):
            proc = subprocess.run(
                ["/usr/bin/python3", "-c", PEER,
                 json.dumps({"images": fleet[:args.peer_images], "workers": workers})],
                env=PEER_ENV, capture_output=True, text=True, check=True)
            peer[workers] = json.loads(proc.stdout)
            rate = args.peer_images / float(peer[workers]["seconds"])  # type: ignore[arg-type]
            print(f"libguestfs, {workers} thread(s): {rate:.3f} images/s "
                  f"({args.peer_images} images); guestslots {rates[workers] / rate:.0f}x")
        idle, busy = memory_per_appliance(fleet[0], 2)
        theirs = peer[1]["rss"][0]  # type: ignore[index]
        print(f"memory per appliance, MiB: guestslots idle Rss {idle['Rss']} Pss "
              f"{idle['Pss']}, after a scan Rss {busy['Rss']} Pss {busy['Pss']}; "
              f"libguestfs after a scan Rss {theirs['Rss']} Pss {theirs['Pss']}")
        print(f"one image through a fresh appliance (median of {args.rounds}), ms:")
        for name, seconds in per_image_parts(fleet[0], args.rounds).items():
            print(f"  {name:18s} {seconds * 1000:6.0f}")
        by_slot = hotplug_by_slot(fleet[0], args.rounds)
        print("hotplug by slot (median), ms: " + ", ".join(
            f"slot {slot} {seconds * 1000:.1f}" for slot, seconds in by_slot.items())
            + f"; slot 250 / slot 0: {by_slot[250] / by_slot[0]:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
