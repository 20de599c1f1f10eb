#!/usr/bin/env python3
"""The two backends side by side, in one run: launch, hotplug, unplug, scan per image.

For each backend: the median launch (QEMU restores its saved state; libvirt boots
cold, as it does not restore saved states yet), and the medians of hotplug
(call -> disk usable in the appliance), unplug (call -> gone in the hypervisor and
the guest) and a per-image scan (hotplug, list filesystems, mount, read a file,
unplug) over ``--cycles`` cycles, then the ratios libvirt/QEMU.  Run it with
``.venv/bin/python tools/bench/bench_backends.py``; it installs nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import guestslots
from guestslots.testing.testimages import named_image

MEASURES = ("launch", "hotplug", "unplug", "scan per image")


def measure(backend: str, image: Path, cycles: int, launches: int) -> dict[str, float]:
    times: dict[str, list[float]] = {m: [] for m in MEASURES}
    for _ in range(launches):
        started = time.perf_counter()
        app = guestslots.Appliance(backend)
        app.add_drive("/dev/null")
        app.launch()
        times["launch"].append(time.perf_counter() - started)
        try:
            for _ in range(cycles):
                started = time.perf_counter()
                app.hotplug(0, image)
                times["hotplug"].append(time.perf_counter() - started)
                started = time.perf_counter()
                app.unplug(0)
                times["unplug"].append(time.perf_counter() - started)
                started = time.perf_counter()
                app.hotplug(0, image)
                app.list_filesystems()
                with app.mounted("/dev/sda"):
                    app.cat("/whoami")
                app.unplug(0)
                times["scan per image"].append(time.perf_counter() - started)
        finally:
            app.shutdown()
    return {m: statistics.median(v) for m, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--launches", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        image = named_image(Path(d), "bench", None)
        results = {b: measure(b, image, args.cycles, args.launches)
                   for b in ("qemu", "libvirt")}
    print(f"{'median (ms)':24}{'qemu':>10}{'libvirt':>10}{'ratio':>8}")
    for m in MEASURES:
        q, lv = results["qemu"][m] * 1000, results["libvirt"][m] * 1000
        print(f"{m:24}{q:10.0f}{lv:10.0f}{lv / q:8.2f}")


if __name__ == "__main__":
    main()
