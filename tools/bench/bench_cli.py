#!/usr/bin/env python3
"""One-shot commands as a person types them: ``guestslots --help`` (Python's start and
the imports a front end needs), ``guestslots cat IMAGE /file`` and ``guestslots ls``,
each a new process, with the modules it imported, against the peer's same command
in the same run (``guestfish --help``; ``guestfish --ro -a IMAGE -m ROOT cat /file``
and ``ls``: ``virt-cat`` and ``virt-ls`` refuse the test image, an OS their
inspection does not know).  Medians of several rounds, with and without
bytecode files (``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` is what a
checkout run this way pays; an installed wheel has them).

Run ``.venv/bin/python tools/bench/bench_cli.py [--rounds 5] [--peer-rounds 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guestslots.host.accel import expected_accel
from guestslots.testing import testimages as images

CLI = [sys.executable, "-m", "guestslots.cli"]


def timed(argv: list[str], rounds: int, env: dict[str, str] | None = None) -> float:
    """The median wall time of *argv*, a new process each round (its output checked)."""
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       check=True)
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def modules(argv: list[str]) -> int:
    """How many modules ``guestslots`` *argv* imported (``-X importtime`` counts)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "guestslots.cli",
                           *argv], capture_output=True, text=True, check=False)
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:")
               and "| imported package" not in line) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peer-rounds", type=int, default=2,
                        help="rounds of guestfish cat / ls (a new appliance each: ~20 s)")
    args = parser.parse_args()
    source = Path(__file__).resolve().parents[2] / "guestslots"
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    no_pyc = {**plain, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        # a small Linux (both sides find its root by inspection, as virt-cat does)
        image = images.linux_image(Path(tmp), "one", hostname="one")
        for cache in source.rglob("__pycache__"):
            shutil.rmtree(cache)
        rows = [
            ("--help (no bytecode)", timed([*CLI, "--help"], args.rounds, no_pyc),
             modules(["--help"])),
        ]
        timed([*CLI, "--help"], 1, plain)  # writes the bytecode
        subprocess.run([*CLI, "cat", str(image), "/etc/hostname"], env=plain, check=True,
                       stdout=subprocess.DEVNULL)
        rows += [
            ("--help", timed([*CLI, "--help"], args.rounds, plain), modules(["--help"])),
            ("cat IMAGE /etc/hostname",
             timed([*CLI, "cat", str(image), "/etc/hostname"], args.rounds, plain),
             modules(["cat", str(image), "/etc/hostname"])),
            ("ls IMAGE /etc", timed([*CLI, "ls", str(image), "/etc"], args.rounds, plain),
             modules(["ls", str(image), "/etc"])),
        ]
        peer_env = {**plain, "LIBGUESTFS_BACKEND": "direct"}
        if expected_accel(shutil.which("qemu-system-x86_64") or "") != "kvm":
            peer_env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"  # as guestslots runs
        fish_help = timed(["guestfish", "--help"], args.rounds, peer_env)
        peers: list[tuple[str, float | None]] = [("guestfish --help", fish_help),
                                                 ("guestfish --help", fish_help)]
        # virt-cat and virt-ls refuse this image (their inspection knows no Testix):
        # guestfish with its root named, as a person would type it then
        fish = ["guestfish", "--ro", "-a", str(image), "-m", "/dev/sda1"]
        for label, argv in (("guestfish -m cat /etc/hostname",
                             [*fish, "cat", "/etc/hostname"]),
                            ("guestfish -m ls /etc", [*fish, "ls", "/etc"])):
            ran = args.peer_rounds > 0 and shutil.which(argv[0]) is not None
            peers.append((label, timed(argv, args.peer_rounds, peer_env) if ran else None))
        for cache in source.rglob("__pycache__"):  # as the checkout was
            shutil.rmtree(cache)
    print(f"medians: guestslots {args.rounds} rounds, the peer {args.peer_rounds} "
          "(its --help: as many as guestslots)")
    print(f"{'guestslots':<26} {'s':>7} {'modules':>8}   {'peer':<32} {'s':>7} {'ratio':>7}")
    for (label, took, count), (peer, peer_took) in zip(rows, peers, strict=True):
        tail = f"{peer:<32} {peer_took:>7.2f} {peer_took / took:>6.1f}x" if peer_took else ""
        print(f"{label:<26} {took:>7.3f} {count:>8}   {tail}")

if __name__ == "__main__":
    main()
