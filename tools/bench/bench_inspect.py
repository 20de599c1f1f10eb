#!/usr/bin/env python3
"""Inspecting one image from the command line: ``guestslots inspect --xml`` against
``virt-inspector`` (libguestfs, direct backend, TCG), same image, same run.

The image is a small Debian-like root (release files, an ELF /bin/ls, a dpkg
database), or with ``--windows`` libguestfs's phony Windows (NTFS, SOFTWARE and
SYSTEM hives, four applications); both tools write the same XML for each
(tests/integration/test_inspect_distros.py and test_inspect_windows.py check
that).  Prints the median of ``--rounds`` runs of each, and the ratio.  Needs
./tools/setup (guestfs-tools).  Run
``.venv/bin/python tools/bench/bench_inspect.py [--windows] [IMAGE]``.
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

from guestslots.testing import testimages as images
from guestslots.testing.windowsimage import windows_image

OURS = [sys.executable, "-m", "guestslots.cli", "inspect", "--xml"]
THEIRS = ["virt-inspector", "--format=raw", "-a"]
PEER_ENV = {**os.environ, "LIBGUESTFS_BACKEND": "direct",
            "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def make_image(directory: Path) -> Path:
    status = "".join(f"Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\n"
                     f"Version: 1.{i}-1\n\n" for i in range(300))
    return images.ext4(directory / "inspect.img", {
        "bin/ls": Path("/usr/bin/ls").read_bytes(), "usr/bin/.keep": "",
        "etc/debian_version": "12.4\n", "etc/hostname": "bench\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n", "var/lib/dpkg/status": status,
    }, size_mib=32)


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", help="default: a small Debian-like image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", action="store_true",
                        help="inspect libguestfs's phony Windows instead")
    args = parser.parse_args()
    if shutil.which("virt-inspector") is None:
        sys.exit("virt-inspector is not installed (./tools/setup installs guestfs-tools)")
    with tempfile.TemporaryDirectory() as d:
        made = windows_image(Path(d) / "windows.img") if args.windows else make_image(Path(d))
        image = args.image or str(made)
        timed([*OURS, image])  # the saved state, if missing
        ours = [timed([*OURS, image]) for _ in range(args.rounds)]
        theirs = [timed([*THEIRS, image], PEER_ENV) for _ in range(args.rounds)]
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"{'median (s)':24}{'guestslots':>12}{'virt-inspector':>16}{'ratio':>8}")
    what = "inspect Windows" if args.windows else "inspect one image"
    print(f"{what:24}{o:12.2f}{t:16.2f}{t / o:8.1f}")


if __name__ == "__main__":
    main()
