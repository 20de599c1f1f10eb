#!/usr/bin/env python3
"""The two backends side by side, in one run: launch, hotplug, unplug, scan per image.

For each backend: the median cold launch (``launch(fresh=True)``: boot, no saved
state) and restored launch (the saved state, made first if missing), and the
medians of hotplug (call -> disk usable in the appliance), unplug (call -> gone in
the hypervisor and the guest) and a per-image scan (hotplug, list filesystems,
mount, read a file, unplug) over ``--cycles`` cycles, then the ratios
libvirt/QEMU.  Where the time goes: the part of hotplug and unplug spent in the
backend (QEMU: QMP commands and the DEVICE_DELETED event; libvirt: XML parsing,
its QMP commands and the device-removed event), the rest being the appliance
seeing the disk come or go (the same guest either way).  Run it with
``.venv/bin/python tools/bench/bench_backends.py``; it installs nothing.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import guestslots
from guestslots.testing.testimages import named_image

MEASURES = ("cold launch", "restored launch", "hotplug", "  of which backend", "unplug",
            "  of which backend", "scan per image")


def _timed(fn: Callable[..., Any], into: list[float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)
    return wrapper


def launch(backend: str, fresh: bool, times: list[float] | None) -> guestslots.Appliance:
    started = time.perf_counter()
    app = guestslots.Appliance(backend)
    app.add_drive("/dev/null")
    app.launch(fresh=fresh)
    if times is not None:
        times.append(time.perf_counter() - started)
        assert app.launched_from == ("cold boot" if fresh else "restored"), app.launched_from
    return app


def measure(backend: str, image: Path, cycles: int, launches: int,
            colds: int) -> list[float]:
    t: dict[str, list[float]] = {m: [] for m in ("cold", "restored", "hotplug", "attach",
                                                 "unplug", "detach", "scan")}
    for _ in range(colds):
        launch(backend, True, t["cold"]).shutdown()
    launch(backend, False, None).shutdown()  # makes the saved state if missing
    for _ in range(launches):
        app = launch(backend, False, t["restored"])
        try:
            be: Any = app._backend
            be.attach_disk = _timed(be.attach_disk, t["attach"])
            be.detach_disk = _timed(be.detach_disk, t["detach"])
            for _ in range(cycles):
                started = time.perf_counter()
                app.hotplug(0, image)
                t["hotplug"].append(time.perf_counter() - started)
                started = time.perf_counter()
                app.unplug(0)
                t["unplug"].append(time.perf_counter() - started)
            t["attach"].clear()  # only the plain hotplugs above, not the scans'
            t["detach"].clear()
            for _ in range(cycles):
                started = time.perf_counter()
                app.hotplug(0, image)
                app.list_filesystems()
                with app.mounted("/dev/sda"):
                    app.cat("/whoami")
                app.unplug(0)
                t["scan"].append(time.perf_counter() - started)
        finally:
            app.shutdown()
    return [statistics.median(t[k]) if t[k] else float("nan")
            for k in ("cold", "restored", "hotplug", "attach", "unplug", "detach", "scan")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--launches", type=int, default=3, help="restored launches")
    parser.add_argument("--colds", type=int, default=2, help="cold launches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        image = named_image(Path(d), "bench", None)
        results = {b: measure(b, image, args.cycles, args.launches, args.colds)
                   for b in ("qemu", "libvirt")}
    print(f"{'median (ms)':24}{'qemu':>10}{'libvirt':>10}{'ratio':>8}")
    for i, m in enumerate(MEASURES):
        q, lv = results["qemu"][i] * 1000, results["libvirt"][i] * 1000
        print(f"{m:24}{q:10.0f}{lv:10.0f}{lv / q:8.2f}")


if __name__ == "__main__":
    main()
