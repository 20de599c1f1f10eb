"""The peer, measured in the same run: libguestfs through Debian's python3-guestfs.

Run by the benchmarks as ``/usr/bin/python3 peer_libguestfs.py SPEC.json``
(the system Python has the ``guestfs`` module; the project's virtual
environment need not).  libguestfs 1.48 cannot hotplug, so a scan launches
once per image.  The direct backend is used, with TCG forced when guestslots
found that KVM does not really run (libguestfs left to choose picks KVM here
and QEMU aborts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"
NEEDS = "Debian's python3-guestfs (apt-get install python3-guestfs)"


def available() -> str:
    """Return "" if libguestfs can be measured here, else what is missing."""
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", "import guestfs"], capture_output=True,
                              check=False)
    except FileNotFoundError:
        return f"no {SYSTEM_PYTHON}"
    return "" if proc.returncode == 0 else f"libguestfs is not installed: needs {NEEDS}"


def run(spec: dict[str, Any]) -> dict[str, list[float]]:
    """Measure libguestfs as *spec* says (see :func:`_measure`); return the timings."""
    proc = subprocess.run([SYSTEM_PYTHON, __file__, json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"libguestfs measurement failed:\n{proc.stderr[-3000:]}")
    result: dict[str, list[float]] = json.loads(proc.stdout)
    return result


def _measure(spec: dict[str, Any]) -> dict[str, list[float]]:
    """spec: {"force_tcg": bool, "launches": N, "launch_image": [path, fmt],
    "scan": [[path, fmt, fs_device], ...]}; every figure in seconds."""
    import guestfs  # type: ignore[import-not-found]  # only in the system Python

    def handle() -> Any:
        g = guestfs.GuestFS(python_return_dict=True)
        g.set_backend("direct")
        if spec["force_tcg"]:
            g.set_backend_setting("force_tcg", "1")
        return g

    out: dict[str, list[float]] = {"launch": [], "scan": []}
    path, fmt = spec["launch_image"]
    for _ in range(spec["launches"]):
        g = handle()
        g.add_drive_opts(path, format=fmt, readonly=1)
        t = time.perf_counter()
        g.launch()
        g.list_devices()  # the first answered call
        out["launch"].append(time.perf_counter() - t)
        g.shutdown()
        g.close()
    for path, fmt, fs_device in spec["scan"]:
        t = time.perf_counter()
        g = handle()
        g.add_drive_opts(path, format=fmt, readonly=1)
        g.launch()
        assert fs_device in g.list_filesystems()
        g.mount_ro(fs_device, "/")
        assert g.cat("/whoami").strip() == Path(path).stem
        g.umount_all()
        g.shutdown()
        g.close()
        out["scan"].append(time.perf_counter() - t)
    return out


if __name__ == "__main__":
    os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
    print(json.dumps(_measure(json.loads(sys.argv[1]))))
