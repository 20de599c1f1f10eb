#!/usr/bin/env python3
"""vCPU hotplug by id: from ``add_vcpu`` to the vCPU online in the guest, and
``remove_vcpu`` (the guest offlines it, QEMU confirms it gone).  Under TCG a vCPU
cannot be plugged again after an unplug in the same appliance (QEMU 7.2), so each
round is a fresh (restored) appliance.  libguestfs has no vCPU hotplug to compare
with.
Run ``.venv/bin/python tools/bench/bench_vcpus.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import guestslots


def measure(backend: str, rounds: int) -> dict[str, float]:
    add: list[float] = []
    remove: list[float] = []
    for _ in range(rounds):
        with guestslots.Appliance(backend, max_vcpus=4) as app:
            app.launch()
            started = time.perf_counter()
            app.add_vcpu(1)
            add.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.remove_vcpu(1)
            remove.append(time.perf_counter() - started)
    return {"plug to online": statistics.median(add),
            "offline and unplug": statistics.median(remove)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default="qemu",
                        help="comma-separated (libvirt has no vCPU hotplug yet)")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        figures = measure(backend, args.rounds)
        print(f"{backend:8s} " + ", ".join(f"{name} {seconds * 1000:.0f} ms"
                                           for name, seconds in figures.items())
              + f" (median of {args.rounds})")


if __name__ == "__main__":
    main()
