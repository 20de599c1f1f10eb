#!/usr/bin/env python3
"""Preparing a blank disk (a GPT, three partitions, vfat, xfs and ext4 on them, as a CI
job would): guestslots against libguestfs (the same calls guestfish makes), same run;
then guestslots's export of a two-disk set while a filesystem on it is mounted.
Launch times are left out on both sides (medians of the calls alone).
Run ``.venv/bin/python tools/bench/bench_prepare.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import guestslots
from guestslots.testing import peer

DISK = 512 << 20
SCRIPT: list[list[Any]] = [
    ["part_init", "/dev/sda", "gpt"],
    ["part_add", "/dev/sda", "p", 2048, 206847],
    ["part_add", "/dev/sda", "p", 206848, 821247],
    ["part_add", "/dev/sda", "p", 821248, -2048],
    ["mkfs", "vfat", "/dev/sda1"],
    ["mkfs", "xfs", "/dev/sda2"],
    ["mkfs", "ext4", "/dev/sda3"],
]

PEER = """
import json, sys, time
images, tcg, script = json.loads(sys.argv[1]), sys.argv[2] == "1", json.loads(sys.argv[3])
sys.path.insert(0, sys.argv[4])
import peer  # guestslots/testing/peer.py, which runs on the system Python alone
took = []
for image in images:
    g = peer._handle(tcg)
    g.add_drive_opts(image, format="raw", readonly=0)
    g.launch()
    t = time.perf_counter()
    for name, *args in script:
        getattr(g, name)(*args)
    took.append(time.perf_counter() - t)
    g.shutdown(); g.close()
print(json.dumps(sorted(took)[len(took) // 2]))
"""


def blank(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(DISK)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        took: list[float] = []
        exports: list[float] = []
        with guestslots.Appliance() as app:
            for _ in range(3):
                app.add_drive("/dev/null")
            app.launch()
            tcg = app.accel is not None and app.accel.accel == "tcg"
            for i in range(args.rounds):
                app.hotplug(0, blank(work / f"ours{i}.img"), readonly=False)
                started = time.perf_counter()
                for name, *call in SCRIPT:
                    getattr(app, name)(*call)
                took.append(time.perf_counter() - started)
                app.unplug(0)
            # export: two 256 MiB disks full of data, one mounted and being used
            for n in (0, 1):
                path = work / f"set{n}.img"
                with open(path, "wb") as f:
                    for _ in range(256):
                        f.write(bytes(range(256)) * 4096)
                app.hotplug(n, path, readonly=False)
                app.diskset_add(n)
            app.mkfs("ext4", "/dev/sda")
            app.mount("/dev/sda", "/")
            for i in range(args.rounds):
                out = work / f"out{i}"
                out.mkdir()
                started = time.perf_counter()
                app.export(out)
                exports.append(time.perf_counter() - started)
        ours = statistics.median(took)
        export = statistics.median(exports)
        print(f"guestslots: prepare {ours:.2f} s (GPT, 3 partitions, vfat+xfs+ext4 on "
              f"{DISK >> 20} MiB; median of {args.rounds})")
        print(f"guestslots: export of a 2 x 256 MiB disk set {export:.2f} s "
              f"({512 / export:.0f} MiB/s; median of {args.rounds})")
        missing = peer.available()
        if missing:
            print(f"libguestfs: not measured ({missing})")
            return
        images = [str(blank(work / f"theirs{i}.img")) for i in range(args.rounds)]
        done = subprocess.run([peer.SYSTEM_PYTHON, "-c", PEER, json.dumps(images),
                               "1" if tcg else "0", json.dumps(SCRIPT),
                               str(Path(peer.__file__).parent)],
                              capture_output=True, text=True, check=True)
        theirs = float(done.stdout.strip().splitlines()[-1])
        print(f"libguestfs: prepare {theirs:.2f} s (guestslots {theirs / ours:.2f}x faster)")


if __name__ == "__main__":
    main()
