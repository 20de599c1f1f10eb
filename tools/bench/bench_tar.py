#!/usr/bin/env python3
"""tar-out and tar-in of a 10,000-file tree: guestslots against libguestfs (the same
calls guestfish makes), same image, same run.  tar-out streams the guest directory
to a host file; tar-in extracts that archive into an empty directory of a writable
copy.  Launch times are left out on both sides (medians of the calls alone).
Run ``.venv/bin/python tools/bench/bench_tar.py [--files 10000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import guestslots
from guestslots.testing import peer

PEER = """
import guestfs, json, sys, time
image, tcg, rounds, archive = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
g = guestfs.GuestFS(python_return_dict=True)
g.set_backend("direct")
if tcg:
    g.set_backend_setting("force_tcg", "1")
g.add_drive_opts(image, format="raw", readonly=0)
g.launch()
g.mount("/dev/sda", "/")
out, into = [], []
for i in range(rounds):
    t = time.perf_counter(); g.tar_out("/tree", archive); out.append(time.perf_counter() - t)
    g.mkdir(f"/in{i}")
    t = time.perf_counter(); g.tar_in(archive, f"/in{i}"); into.append(time.perf_counter() - t)
g.shutdown(); g.close()
print(json.dumps([sorted(out)[len(out) // 2], sorted(into)[len(into) // 2]]))
"""


def make_image(work: Path, files: int, rounds: int) -> Path:
    tree = work / "root" / "tree"
    for i in range(files):
        d = tree / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_text(f"file {i}\n" * (1 + i % 20))
    image = work / "tree.img"
    subprocess.run(["truncate", "-s", f"{200 + 60 * rounds * files // 10_000}M", str(image)],
                   check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(files * (rounds + 2) + 1000), "-d",
                    str(work / "root"), str(image)], check=True)
    shutil.rmtree(work / "root")
    return image


def ours(image: Path, rounds: int, archive: Path) -> tuple[float, float]:
    out: list[float] = []
    into: list[float] = []
    with guestslots.Appliance() as app:
        app.add_drive(image, readonly=False)
        app.launch()
        app.mount("/dev/sda", "/")
        for i in range(rounds):
            started = time.perf_counter()
            app.tar_out("/tree", archive)
            out.append(time.perf_counter() - started)
            app.mkdir(f"/in{i}")
            started = time.perf_counter()
            app.tar_in(archive, f"/in{i}")
            into.append(time.perf_counter() - started)
    return statistics.median(out), statistics.median(into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        image = make_image(work, args.files, args.rounds)
        mine = work / "mine.img"
        shutil.copyfile(image, mine)
        out, into = ours(mine, args.rounds, work / "ours.tar")
        size = (work / "ours.tar").stat().st_size
        print(f"guestslots: tar-out {out:.2f} s, tar-in {into:.2f} s ({args.files} files, "
              f"{size / 1e6:.1f} MB archive; median of {args.rounds})")
        if peer.available():
            print(f"libguestfs: not measured ({peer.available()})")
            return
        with guestslots.Appliance() as app:
            app.launch()
            tcg = app.accel is not None and app.accel.accel == "tcg"
        theirs_image = work / "theirs.img"
        shutil.copyfile(image, theirs_image)
        done = subprocess.run([peer.SYSTEM_PYTHON, "-c", PEER, str(theirs_image),
                               "1" if tcg else "0", str(args.rounds), str(work / "t.tar")],
                              capture_output=True, text=True, check=True)
        t_out, t_in = (float(x) for x in done.stdout.split("[")[-1].strip("]\n").split(","))
        print(f"libguestfs: tar-out {t_out:.2f} s, tar-in {t_in:.2f} s "
              f"(guestslots {t_out / out:.2f}x and {t_in / into:.2f}x faster)")


if __name__ == "__main__":
    main()
