#!/usr/bin/env python3
"""``guestslots mount`` against libguestfs's ``guestmount``, on the same image, in one run.

For each tool, ``--rounds`` times: the time from the command to a readable mount
point (both return once the mount is ready; then a directory listing), ``find``
over a tree of ``--files`` files, ``cat`` of a ``--big-mib`` MiB file of random
bytes (throughput), ``tar c`` of the tree, and the unmount (``guestslots umount``
and ``guestunmount``, both of which wait for the appliance to end).  Prints
medians and the ratios guestmount/guestslots (above 1: guestslots is faster).
guestmount runs with ``LIBGUESTFS_BACKEND=direct`` and ``force_tcg`` (nested KVM
hangs on this kind of machine).  Needs ./tools/setup (fuse3, guestmount).  Run
``.venv/bin/python tools/bench/bench_mount.py``.
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
from collections.abc import Callable
from pathlib import Path

MEASURES = ("mount to readable", "find (s)", "cat (MiB/s)", "tar c (s)", "unmount (s)")
GUESTSLOTS = [sys.executable, "-m", "guestslots.cli"]
PEER_ENV = {**os.environ, "LIBGUESTFS_BACKEND": "direct",
            "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def make_image(directory: Path, files: int, big_mib: int) -> Path:
    tree = directory / "tree"
    for i in range(files):
        d = tree / "tree" / f"d{i // 100:03}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05}").write_text(f"file {i}\n")
    with open(tree / "big", "wb") as f:
        for _ in range(big_mib):
            f.write(os.urandom(1 << 20))
    image = directory / "bench.img"
    size = big_mib + files // 100 + 200
    subprocess.run(["truncate", "-s", f"{size}M", image], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(files + 1000), "-d", tree, image],
                   check=True)
    shutil.rmtree(tree)
    return image


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(command: list[str | os.PathLike[str]], env: dict[str, str] | None = None) -> None:
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def one_round(tool: str, image: Path, mp: Path, big_mib: int) -> list[float]:
    mount: list[str | os.PathLike[str]]
    unmount: list[str | os.PathLike[str]]
    if tool == "guestslots":
        mount = [*GUESTSLOTS, "mount", "-m", "/dev/sda", image, mp]
        unmount = [*GUESTSLOTS, "umount", mp]
        env = None
    else:
        mount = ["guestmount", "--ro", "--format=raw", "-a", image, "-m", "/dev/sda", mp]
        unmount = ["guestunmount", mp]
        env = PEER_ENV
    def mount_and_list() -> None:
        run(mount, env)
        os.listdir(mp)

    ready = timed(mount_and_list)
    find = timed(lambda: run(["find", mp]))
    cat = big_mib / timed(lambda: run(["cat", mp / "big"]))
    tar = timed(lambda: run(["tar", "cf", "-", "-C", mp, "tree"]))
    umount = timed(lambda: run(unmount, env))
    return [ready, find, cat, tar, umount]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--big-mib", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gsbench-") as d:
        image = make_image(Path(d), args.files, args.big_mib)
        mp = Path(d) / "mnt"
        mp.mkdir()
        run([*GUESTSLOTS, "mount", "-m", "/dev/sda", image, mp])  # saved state, caches
        run([*GUESTSLOTS, "umount", mp])
        results: dict[str, list[list[float]]] = {"guestslots": [], "guestmount": []}
        for _ in range(args.rounds):
            for tool in results:
                results[tool].append(one_round(tool, image, mp, args.big_mib))
    print(f"{'median':22}{'guestslots':>12}{'guestmount':>12}{'ratio':>8}")
    for i, m in enumerate(MEASURES):
        ours = statistics.median(r[i] for r in results["guestslots"])
        peer = statistics.median(r[i] for r in results["guestmount"])
        ratio = ours / peer if "MiB/s" in m else peer / ours
        print(f"{m:22}{ours:12.2f}{peer:12.2f}{ratio:8.1f}")


if __name__ == "__main__":
    main()
