#!/usr/bin/env python3
"""Soak: 1000 hotplug/unplug cycles of one slot, and what grows meanwhile.

Reports, first sample against last: the caller's file descriptors and RSS, QEMU's
RSS, QEMU's block nodes, and the median cycle time of the first and last 50 cycles;
QEMU's RSS every 100 cycles.  ``--tcg-cache-mib`` sets TCG's translation cache
(guestslots' default 64; QEMU's own default is 1024) to compare the two in one run:
``--compare`` runs both.  Run it with ``.venv/bin/python tools/bench/soak.py``.
It installs nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import guestslots
from guestslots.testing.soak import Soak, soak
from guestslots.testing.testimages import named_image


def run(image: Path, cycles: int, tcg_cache_mib: int) -> Soak:
    with guestslots.Appliance(tcg_cache_mib=tcg_cache_mib) as app:
        app.add_drive("/dev/null")
        app.launch()
        return soak(app, image, cycles, every=100)


def report(name: str, result: Soak) -> dict[str, object]:
    first, last = result.samples[0], result.samples[-1]
    print(f"== {name}: {last.cycle} cycles")
    print(f"  {'':24}{'first':>12}{'last':>12}")
    for label, a, b in (
        ("caller fds", first.fds, last.fds),
        ("caller RSS (MiB)", first.caller_rss_kib / 1024, last.caller_rss_kib / 1024),
        ("QEMU RSS (MiB)", first.qemu_rss_kib / 1024, last.qemu_rss_kib / 1024),
        ("QEMU block nodes", first.block_nodes, last.block_nodes),
        ("cycle median (ms)", result.median(True) * 1000, result.median(False) * 1000),
    ):
        print(f"  {label:24}{a:12.1f}{b:12.1f}")
    print("  QEMU RSS (MiB) by cycle: " + ", ".join(
        f"{s.cycle}: {s.qemu_rss_kib / 1024:.0f}" for s in result.samples))
    return {"cycles": last.cycle, "first": first.__dict__, "last": last.__dict__,
            "first_median_s": result.median(True), "last_median_s": result.median(False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--tcg-cache-mib", type=int, default=64)
    parser.add_argument("--compare", action="store_true",
                        help="also run with QEMU's default translation cache (1024 MiB)")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        image = named_image(Path(d), "soak", None)
        sizes = [args.tcg_cache_mib] + ([1024] if args.compare else [])
        out = {f"tb-size={mib}": report(f"tb-size={mib} MiB", run(image, args.cycles, mib))
               for mib in sizes}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
