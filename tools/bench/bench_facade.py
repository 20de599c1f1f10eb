#!/usr/bin/env python3
"""A libguestfs program, unchanged, over a corpus of images: on libguestfs and on
guestslots' facade (``python -m guestslots.guestfs``), side by side in one run.

The program is what inspection tools do with one handle per image: add the image
read-only (its format probed), launch, inspect, mount the OS, list its
applications, read a file, close.  Prints each run's wall time, the time per image
and the ratio, and checks that both printed the same.  libguestfs runs with
LIBGUESTFS_BACKEND=direct and TCG forced where KVM does not run, as guestslots
does.  Run ``.venv/bin/python tools/bench/bench_facade.py [--images N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from guestslots.host.accel import expected_accel
from guestslots.testing import peer
from guestslots.testing import testimages as images

PROGRAM = textwrap.dedent('''
    import sys
    import guestfs

    for image in sys.argv[1:]:
        g = guestfs.GuestFS(python_return_dict=True)
        g.add_drive_opts(image, readonly=1)
        g.launch()
        for root in g.inspect_os():
            for mp, dev in sorted(g.inspect_get_mountpoints(root).items(),
                                  key=lambda m: len(m[0])):
                g.mount_ro(dev, mp)
            apps = g.inspect_list_applications2(root)
            print(image.rsplit("/", 1)[-1], g.inspect_get_distro(root),
                  g.inspect_get_product_name(root), g.inspect_get_hostname(root),
                  len(apps), g.cat("/etc/hostname").strip())
            g.umount_all()
        g.close()
''')


def corpus(directory: Path, n: int) -> list[Path]:
    status = "".join(f"Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\n"
                     f"Version: 1.{i}-1\n\n" for i in range(100))
    return [images.ext4(directory / f"guest{i}.img", {
        "bin/ls": Path("/usr/bin/ls").read_bytes(), "usr/bin/.keep": "",
        "etc/debian_version": "12.4\n", "etc/hostname": f"guest{i}\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n", "var/lib/dpkg/status": status,
    }, size_mib=16) for i in range(n)]


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guestslots-facade-") as tmp:
        work = Path(tmp)
        program = work / "inspect.py"
        program.write_text(PROGRAM)
        paths = [str(p) for p in corpus(work, args.images)]
        ours, ours_out = run([sys.executable, "-m", "guestslots.guestfs", str(program),
                              *paths])
        print(f"guestslots facade: {ours:7.2f} s, {ours / len(paths):6.2f} s per image")
        if peer.available():
            print(f"libguestfs: not measured ({peer.available()})")
            return
        env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
        if expected_accel(shutil.which("qemu-system-x86_64") or "") != "kvm":
            env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
        theirs, theirs_out = run([peer.SYSTEM_PYTHON, str(program), *paths], env)
        print(f"libguestfs:        {theirs:7.2f} s, {theirs / len(paths):6.2f} s per image")
        print(f"ratio: {theirs / ours:.1f}x; same output: {ours_out == theirs_out}")


if __name__ == "__main__":
    main()
