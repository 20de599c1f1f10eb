#!/usr/bin/env python3
"""vCPU hotplug by id: from ``add_vcpu`` to the vCPU online in the guest, and
``remove_vcpu`` (the guest offlines it, QEMU confirms it gone).  Under TCG a vCPU
cannot be plugged again after an unplug in the same appliance (QEMU 7.2), so each
round is a fresh (restored) appliance.  Then what a second vCPU buys: ``checksums_out``
(one hashing thread per online vCPU) over 8 files of 16 MiB with 1 and 2 vCPUs plugged,
against libguestfs's ``checksums_out`` (one vCPU, ``find | xargs md5sum``) on the same
image in the same run.  libguestfs has no vCPU hotplug to compare with.
Run ``.venv/bin/python tools/bench/bench_vcpus.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import guestslots
from guestslots.testing import peer
from guestslots.testing import testimages as images


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


def parallel(image: Path, rounds: int) -> dict[int, float]:
    """Median seconds of checksums_out over the image's files with 1 and 2 vCPUs."""
    out: dict[int, float] = {}
    with guestslots.Appliance(max_vcpus=2) as app, tempfile.TemporaryDirectory() as d:
        app.add_drive("/dev/null")
        app.launch()
        app.hotplug(0, image)
        app.mount_ro("/dev/sda", "/")
        for vcpus in (1, 2):
            if vcpus == 2:
                app.add_vcpu(1)
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                app.checksums_out("sha256", "/", os.path.join(d, "sums"))
                times.append(time.perf_counter() - started)
            out[vcpus] = statistics.median(times)
    return out


def peer_checksums(image: Path, tcg: bool, rounds: int) -> float | None:
    """libguestfs's checksums_out on the same image (median of *rounds*, one launch)."""
    if peer.available():
        return None
    script = """
import guestfs, sys, time
image, tcg, rounds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
g = guestfs.GuestFS(python_return_dict=True)
g.set_backend("direct")
if tcg:
    g.set_backend_setting("force_tcg", "1")
g.add_drive_opts(image, format="raw", readonly=1)
g.launch()
g.mount_ro("/dev/sda", "/")
times = []
for _ in range(rounds):
    t = time.perf_counter()
    g.checksums_out("sha256", "/", "/dev/null")
    times.append(time.perf_counter() - t)
g.shutdown()
g.close()
print(sorted(times)[len(times) // 2])
"""
    done = subprocess.run([peer.SYSTEM_PYTHON, "-c", script, str(image), "1" if tcg else "0",
                           str(rounds)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


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
    with tempfile.TemporaryDirectory() as d:
        files = {f"f{i}.bin": os.urandom(16 << 20) for i in range(8)}
        image = images.ext4(Path(d) / "sums.img", files, size_mib=200)
        times = parallel(image, args.rounds)
        print(f"checksums_out sha256, 8 x 16 MiB: 1 vCPU {times[1]:.2f} s, 2 vCPUs "
              f"{times[2]:.2f} s ({times[1] / times[2]:.2f}x; median of {args.rounds})")
        with guestslots.Appliance() as app:
            app.launch()
            tcg = app.accel is not None and app.accel.accel == "tcg"
        theirs = peer_checksums(image, tcg, args.rounds)
        if theirs is not None:
            print(f"libguestfs checksums_out (1 vCPU): {theirs:.2f} s "
                  f"({theirs / times[2]:.2f}x our 2-vCPU time)")


if __name__ == "__main__":
    main()
