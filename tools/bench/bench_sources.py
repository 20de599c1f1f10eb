#!/usr/bin/env python3
"""Remote sources against a local file, in one appliance, in one run: the first read of
a file (hotplug, mount, read a small file, unmount, unplug) through a local file, an
NBD export on a Unix socket and an HTTP server on 127.0.0.1; and the read throughput
of a 64 MiB file through each slot against the floor, ``qemu-img convert`` of the
same source (the whole disk) to a file on the host.  Medians of several rounds.

Run ``.venv/bin/python tools/bench/bench_sources.py [--backend qemu] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.host.sources import qemu_img_spec
from guestslots.model.sources import is_url, parse
from guestslots.testing import nbdserver, webserver
from guestslots.testing import testimages as images

MIB = 1 << 20
SIZE = 64 * MIB


def median(rounds: int, run: Callable[[], None]) -> float:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def convert(source: str, out: Path) -> None:
    """``qemu-img convert`` of *source* (a file or a URL) to a raw file *out*."""
    if is_url(source):
        objects, spec = qemu_img_spec(parse(source))
        argv = ["qemu-img", "convert", *objects, "-O", "raw", spec, str(out)]
    else:
        argv = ["qemu-img", "convert", "-f", "raw", "-O", "raw", source, str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    out.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="qemu", choices=("qemu", "libvirt"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        d = Path(tmp)
        fs = images.ext4(d / "b.fs", {"small": "hello\n", "big": os.urandom(SIZE)},
                         size_mib=160)
        image = images.partitioned(d / "b.img", "dos", fs)
        disk_mib = image.stat().st_size / MIB
        with guestslots.Appliance(args.backend) as app, \
                nbdserver.serving(image, d, export="b") as nbd, \
                webserver.serving(d, ranges=True) as port:
            app.add_drive("/dev/null")
            app.launch()
            sources = {"file": str(image), "nbd+unix": nbd,
                       "http": f"http://127.0.0.1:{port}/{image.name}"}
            rows = []
            for name, source in sources.items():
                def first_read(source: str = source) -> None:
                    app.hotplug(0, source)
                    with app.mounted("/dev/sda1", "/", readonly=True):
                        assert app.cat("/small") == "hello\n"
                    app.unplug(0)

                def throughput(source: str = source) -> None:
                    app.hotplug(0, source)
                    with app.mounted("/dev/sda1", "/", readonly=True):
                        assert len(app.read_file("/big")) == SIZE
                    app.unplug(0)

                first = median(args.rounds, first_read)
                whole = median(args.rounds, throughput) - first  # less plug/mount/unplug
                floor = median(args.rounds, functools.partial(convert, source, d / "out.raw"))
                rows.append((name, first, SIZE / MIB / whole, disk_mib / floor))
    print(json.dumps({"backend": args.backend, "rounds": args.rounds}))
    print(f"{'source':10} {'first read':>11} {'vs file':>8} {'64 MiB file':>12} "
          f"{'qemu-img convert':>17} {'ratio':>6}")
    base = rows[0][1]
    for name, first, rate, floor_rate in rows:
        print(f"{name:10} {first * 1000:9.0f} ms {first / base:7.2f}x {rate:8.0f} MiB/s "
              f"{floor_rate:11.0f} MiB/s {rate / floor_rate:5.2f}x")


if __name__ == "__main__":
    main()
