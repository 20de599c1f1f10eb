#!/usr/bin/env python3
"""Inspecting images: one image from the command line, ``guestslots inspect --xml``
against ``virt-inspector`` (libguestfs, direct backend, TCG) and, if given,
dissect.target's ``target-info`` (a pure-Python reader, no VM), same image, same run;
and with ``--corpus``, images per minute through one appliance over a corpus of every
kind the tests check (Debian-like with dpkg, libguestfs's phony Windows, Fedora-like
with an rpm database, CoreOS with its /usr partitions).

The default image is a small Debian-like root (release files, an ELF /bin/ls, a
dpkg database of 300 packages), or with ``--windows`` the phony Windows; guestslots
and virt-inspector write the same XML for each (the integration tests check that).
Prints the median of ``--rounds`` runs of each, and the ratios.  Needs ./tools/setup
(guestfs-tools).  dissect: ``python3 -m venv V && V/bin/pip install dissect``, then
``--target-info V/bin/target-info``.  Run
``.venv/bin/python tools/bench/bench_inspect.py [--windows] [--corpus] [IMAGE]``.
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

from guestslots import Appliance
from guestslots.testing import testimages as images
from guestslots.testing.rpmdb import Package, rpm_database
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


def make_corpus(directory: Path) -> list[Path]:
    """One image of each kind."""
    fedora = images.ext4(directory / "fedora.img", {
        "bin/bash": Path("/usr/bin/bash").read_bytes(), "usr/bin/dnf": "",
        "etc/redhat-release": "Fedora release 39 (Thirty Nine)\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n", "etc/hostname": "fedora\n",
        **rpm_database([Package(f"pkg{i}", "1.0", "1.fc39", f"Package {i}", "A package.")
                        for i in range(30)])}, size_mib=24)
    usr = images.ext4(directory / "usr.img", {
        "bin/.keep": "", "local/.keep": "", "share/coreos/lsb-release":
        'DISTRIB_ID=CoreOS\nDISTRIB_RELEASE=647.0.0\nDISTRIB_DESCRIPTION="CoreOS 647.0.0"\n'})
    root = images.ext4(directory / "root.img", {
        "etc/coreos/update.conf": "GROUP=stable\n", "etc/hostname": "coreos\n",
        "usr/.keep": "", "root/.keep": "", "home/.keep": ""})
    coreos = images.partitioned(directory / "coreos.img", "gpt", usr, root)
    return [make_image(directory), windows_image(directory / "windows.img"), fedora, coreos]


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def corpus_rate(corpus: list[Path], rounds: int) -> float:
    """Images per minute: each image hotplugged into one running appliance, inspected,
    its OS mounted and its applications listed, unplugged."""
    with Appliance() as app:
        app.add_drive("/dev/null")
        app.launch()
        started = time.perf_counter()
        for _ in range(rounds):
            for image in corpus:
                app.hotplug(0, image)
                for found in app.inspect_os():
                    app.mount_os(str(found["root"]))
                    app.inspect_list_applications(str(found["root"]))
                    app.umount_all()
                app.unplug(0)
        return 60 * rounds * len(corpus) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", help="default: a small Debian-like image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", action="store_true",
                        help="inspect libguestfs's phony Windows instead")
    parser.add_argument("--target-info", help="dissect.target's target-info, to compare")
    parser.add_argument("--corpus", action="store_true",
                        help="also images per minute over the corpus through one appliance")
    args = parser.parse_args()
    if shutil.which("virt-inspector") is None:
        sys.exit("virt-inspector is not installed (./tools/setup installs guestfs-tools)")
    with tempfile.TemporaryDirectory() as d:
        made = windows_image(Path(d) / "windows.img") if args.windows else make_image(Path(d))
        image = args.image or str(made)
        timed([*OURS, image])  # the saved state, if missing
        ours = statistics.median(timed([*OURS, image]) for _ in range(args.rounds))
        theirs = statistics.median(timed([*THEIRS, image], PEER_ENV)
                                   for _ in range(args.rounds))
        dissect = statistics.median(timed([args.target_info, image])
                                    for _ in range(args.rounds)) if args.target_info else None
        what = "inspect Windows" if args.windows else "inspect one image"
        print(f"{'median (s)':24}{'guestslots':>12}{'virt-inspector':>16}{'ratio':>8}"
              + (f"{'target-info':>13}{'ratio':>8}" if dissect else ""))
        print(f"{what:24}{ours:12.2f}{theirs:16.2f}{theirs / ours:8.1f}"
              + (f"{dissect:13.2f}{dissect / ours:8.1f}" if dissect else ""))
        if args.corpus:
            corpus = make_corpus(Path(d))
            rate = corpus_rate(corpus, args.rounds)
            print(f"corpus of {len(corpus)} kinds through one appliance: {rate:.0f} images "
                  f"per minute (virt-inspector: {60 / theirs:.1f}, one process per image)")


if __name__ == "__main__":
    main()
