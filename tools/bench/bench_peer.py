#!/usr/bin/env python3
"""guestslots against libguestfs, measured in one run on this machine.

Makes N small images (default 20: MBR and GPT, raw and qcow2, ext4, each with
``/whoami`` naming itself) and measures:

- launch to the first answered call: libguestfs, guestslots cold (a fresh
  boot), guestslots restored (from the saved appliance);
- a scan of the N images (list filesystems, mount, read ``/whoami``):
  libguestfs launching once per image; guestslots with one appliance
  hotplugging each image into a slot; guestslots with a fresh restored
  appliance per image (one trust domain each).

Prints a table of medians and the ratios, and writes it as JSON
(``--json``, default ``bench-results.json``).  It installs nothing: without
Debian's python3-guestfs it says so and stops.  Run it as
``.venv/bin/python tools/bench/bench_peer.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import guestslots
from guestslots.testing import peer
from guestslots.testing.testimages import named_image

LAYOUTS = (("dos", "raw"), ("gpt", "raw"), ("dos", "qcow2"), ("gpt", "qcow2"))


def stats(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "total": sum(samples), "n": len(samples)}


def make_images(directory: Path, n: int) -> list[tuple[Path, str]]:
    out = []
    for i in range(n):
        table, fmt = LAYOUTS[i % len(LAYOUTS)]
        out.append((named_image(directory, f"img{i:02d}", table, fmt), fmt))
    return out


def read_whoami(app: guestslots.Appliance, slot: int, name: str) -> None:
    dev = app.slots()[slot].device + "1"
    assert app.list_filesystems()[dev] == "ext4"
    app.mount_ro(dev, "/")
    assert app.cat("/whoami") == f"{name}\n"
    app.umount_all()


def measure_guestslots(images: list[tuple[Path, str]], launches: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cold": [], "restored": [], "scan_slots": [],
                                   "scan_fresh": []}
    # make sure a saved state exists before timing restores
    with guestslots.Appliance() as app:
        app.launch()
    for fresh, key in ((True, "cold"), (False, "restored")):
        for _ in range(launches if fresh else max(launches, 10)):
            app = guestslots.Appliance()
            t = time.perf_counter()
            app.launch(fresh=fresh)
            app.sync()  # the first answered call
            out[key].append(time.perf_counter() - t)
            app.shutdown()
    # one appliance, each image hotplugged into a slot
    t = time.perf_counter()
    with guestslots.Appliance() as app:
        app.add_drive("/dev/null")
        app.launch()
        for path, fmt in images:
            t_image = time.perf_counter()
            app.hotplug(0, path, format=fmt)
            read_whoami(app, 0, path.stem)
            app.unplug(0)
            out["scan_slots"].append(time.perf_counter() - t_image)
    out["scan_slots_total_with_launch"] = [time.perf_counter() - t]
    # a fresh appliance per image
    for path, fmt in images:
        t_image = time.perf_counter()
        with guestslots.isolated(path, format=fmt) as app:
            read_whoami(app, 0, path.stem)
        out["scan_fresh"].append(time.perf_counter() - t_image)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images to scan (default 20)")
    parser.add_argument("--launches", type=int, default=3, help="launches of each slow kind")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    missing = peer.available()
    if missing:
        print(f"bench_peer: {missing}; nothing was measured", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="guestslots-peer-") as tmp:
        images = make_images(Path(tmp), args.images)
        probe = guestslots.Appliance()
        probe.launch()
        accel = probe.accel.accel if probe.accel else "?"
        probe.shutdown()
        ours = measure_guestslots(images, args.launches)
        theirs = peer.run({
            "force_tcg": accel == "tcg",
            "launches": args.launches,
            "launch_image": [str(images[0][0]), images[0][1]],
            "scan": [[str(p), fmt, "/dev/sda1", p.stem] for p, fmt in images],
        })

    rows: dict[str, dict[str, float]] = {
        "launch to first call: libguestfs": stats(theirs["launch"]),
        "launch to first call: guestslots cold": stats(ours["cold"]),
        "launch to first call: guestslots restored": stats(ours["restored"]),
        "scan, per image: libguestfs (launch per image)": stats(theirs["scan"]),
        "scan, per image: guestslots slots (one appliance)": stats(ours["scan_slots"]),
        "scan, per image: guestslots fresh appliance each": stats(ours["scan_fresh"]),
    }
    slots_total = ours["scan_slots_total_with_launch"][0]
    ratios = {
        "launch: libguestfs / guestslots restored (target >= 30)":
            rows["launch to first call: libguestfs"]["median"]
            / rows["launch to first call: guestslots restored"]["median"],
        "launch: libguestfs / guestslots cold":
            rows["launch to first call: libguestfs"]["median"]
            / rows["launch to first call: guestslots cold"]["median"],
        f"scan of {len(theirs['scan'])}: libguestfs / slots, launch included (target >= 30)":
            sum(theirs["scan"]) / slots_total,
        f"scan of {len(theirs['scan'])}: libguestfs / fresh appliance each (target >= 10)":
            sum(theirs["scan"]) / sum(ours["scan_fresh"]),
    }
    print(f"accelerator: {accel}; {len(images)} images")
    print(f"{'measure (seconds)':52} {'median':>8} {'min':>8} {'max':>8} {'total':>9} {'n':>3}")
    for name, r in rows.items():
        print(f"{name:52} {r['median']:8.3f} {r['min']:8.3f} {r['max']:8.3f} "
              f"{r['total']:9.2f} {r['n']:3.0f}")
    print(f"{'scan through slots, total with its launch':52} {slots_total:8.3f}")
    for name, ratio in ratios.items():
        print(f"{name:76} {ratio:7.1f}x")
    result: dict[str, Any] = {"accel": accel, "images": len(images), "rows": rows,
                              "slots_scan_total_with_launch": slots_total, "ratios": ratios}
    args.json.write_text(json.dumps(result, indent=2))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
