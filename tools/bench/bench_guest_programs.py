#!/usr/bin/env python3
"""Guest programs (``command`` / ``sh``): what one call costs with its containment
(namespaces, a cgroup killed whole, a seccomp filter; see the README's "Guest
programs"), against libguestfs's ``sh`` and ``command`` on the same image, in the
same run.  The guest is a static busybox (``guestslots.testing.attacker``).
Run ``.venv/bin/python tools/bench/bench_guest_programs.py [--calls 30]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.testing import attacker, peer

PEER = """
import guestfs, json, sys, time
image, tcg, calls = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
g = guestfs.GuestFS(python_return_dict=True)
g.set_backend("direct")
if tcg:
    g.set_backend_setting("force_tcg", "1")
g.add_drive_opts(image, format="raw", readonly=0)
g.launch()
g.mount("/dev/sda", "/")
for program in ("/bin/busybox", "/bin/sh"):
    g.chmod(0o755, program)
def med(f, n):
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
out = {"command": med(lambda: g.command(["/bin/busybox", "true"]), calls),
       "sh": med(lambda: g.sh("echo hi"), calls)}
g.shutdown(); g.close()
print(json.dumps(out))
"""


def _median(call: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ours(image: Path, calls: int) -> tuple[dict[str, float], bool]:
    """Our medians, and whether the appliance ran under TCG (libguestfs is told to)."""
    with guestslots.Appliance() as app:
        app.add_drive(image, readonly=False)
        app.launch()
        app.mount("/dev/sda", "/")
        for program in attacker.EXECUTABLES:
            app.chmod(0o755, program)
        tcg = app.accel is not None and app.accel.accel == "tcg"
        app.sh("true")  # the first call builds the seccomp filter
        return {"command": _median(lambda: app.command(["/bin/busybox", "true"]), calls),
                "sh": _median(lambda: app.sh("echo hi"), calls)}, tcg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        mine = attacker.image(work / "mine.img", work)
        theirs = work / "theirs.img"
        shutil.copy(mine, theirs)
        t_ours, tcg = ours(mine, args.calls)
        print(f"guestslots: command /bin/busybox true {t_ours['command'] * 1e3:.0f} ms, "
              f"sh 'echo hi' {t_ours['sh'] * 1e3:.0f} ms (medians of {args.calls})")
        if peer.available():
            print(f"libguestfs: not measured ({peer.available()})")
            return
        done = subprocess.run([peer.SYSTEM_PYTHON, "-c", PEER, str(theirs),
                               "1" if tcg else "0", str(args.calls)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"libguestfs failed: {done.stderr.strip()[-2000:]}")
        t_peer = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"libguestfs: command {t_peer['command'] * 1e3:.0f} ms, "
              f"sh {t_peer['sh'] * 1e3:.0f} ms")
        print("guestslots faster: " + ", ".join(
            f"{name} {t_peer[name] / t_ours[name]:.2f}x" for name in t_ours))


if __name__ == "__main__":
    main()
