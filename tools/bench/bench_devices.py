#!/usr/bin/env python3
"""Block devices as bytes: guestslots against libguestfs (the same calls guestfish
makes), same image, same run.  ``blockdev-getsize64`` and a 4 KiB ``pread-device``
(per-call latency, medians of 50), and ``download`` / ``upload`` of a whole partition
(MB/s, medians of the rounds).  Launch times are left out on both sides.
Run ``.venv/bin/python tools/bench/bench_devices.py [--mib 256] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.testing import peer

CALLS = 50

PEER = """
import guestfs, json, sys, time
image, tcg, rounds, calls, work = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), \\
    int(sys.argv[4]), sys.argv[5]
g = guestfs.GuestFS(python_return_dict=True)
g.set_backend("direct")
if tcg:
    g.set_backend_setting("force_tcg", "1")
g.add_drive_opts(image, format="raw", readonly=0)
g.launch()
def med(f, n):
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
out = {"getsize64": med(lambda: g.blockdev_getsize64("/dev/sda1"), calls),
       "pread": med(lambda: g.pread_device("/dev/sda1", 4096, 1 << 20), calls),
       "download": med(lambda: g.download("/dev/sda1", work + "/theirs.part"), rounds),
       "upload": med(lambda: g.upload(work + "/theirs.part", "/dev/sda1"), rounds)}
g.shutdown(); g.close()
print(json.dumps(out))
"""


def make_image(path: Path, mib: int) -> None:
    """A GPT disk whose partition 1 (*mib* MiB) is half random bytes, half zeroes."""
    with open(path, "wb") as f:
        f.truncate((mib + 2) << 20)
    subprocess.run(["sfdisk", "-q", str(path)], input=f"label: gpt\nstart=2048, size={mib}MiB\n",
                   text=True, check=True)
    with open(path, "r+b") as f:
        f.seek(1 << 20)
        for _ in range(mib // 2):
            f.write(os.urandom(1 << 20))


def _median(call: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ours(image: Path, rounds: int, work: Path) -> tuple[dict[str, float], bool]:
    """Our timings, and whether the appliance ran under TCG (libguestfs is told to)."""
    with guestslots.Appliance() as app:
        app.add_drive(image, readonly=False)
        app.launch()
        part = work / "ours.part"
        tcg = app.accel is not None and app.accel.accel == "tcg"
        return {"getsize64": _median(lambda: app.blockdev_getsize64("/dev/sda1"), CALLS),
                "pread": _median(lambda: app.pread_device("/dev/sda1", 4096, 1 << 20), CALLS),
                "download": _median(lambda: app.download("/dev/sda1", part), rounds),
                "upload": _median(lambda: app.upload(part, "/dev/sda1"), rounds)}, tcg


def show(who: str, t: dict[str, float], mib: int) -> str:
    return (f"{who}: blockdev-getsize64 {t['getsize64'] * 1e3:.1f} ms, pread-device 4 KiB "
            f"{t['pread'] * 1e3:.1f} ms, download {mib / t['download']:.0f} MiB/s, "
            f"upload {mib / t['upload']:.0f} MiB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        mine, theirs = work / "mine.img", work / "theirs.img"
        make_image(mine, args.mib)
        subprocess.run(["cp", "--sparse=always", str(mine), str(theirs)], check=True)
        t_ours, tcg = ours(mine, args.rounds, work)
        print(show("guestslots", t_ours, args.mib)
              + f" (a {args.mib} MiB partition; medians of {CALLS} calls, {args.rounds} "
              "transfers)")
        if peer.available():
            print(f"libguestfs: not measured ({peer.available()})")
            return
        done = subprocess.run([peer.SYSTEM_PYTHON, "-c", PEER, str(theirs), "1" if tcg else "0",
                               str(args.rounds), str(CALLS), str(work)],
                              capture_output=True, text=True, check=True)
        t_peer = json.loads(done.stdout.strip().splitlines()[-1])
        print(show("libguestfs", t_peer, args.mib))
        print("guestslots faster: " + ", ".join(
            f"{name} {t_peer[name] / t_ours[name]:.2f}x" for name in t_ours))


if __name__ == "__main__":
    main()
