"""The peer: libguestfs, through Debian's python3-guestfs, for benchmarks and conformance.

Run as ``/usr/bin/python3 peer.py SPEC.json`` (the system Python has the
``guestfs`` module; the project's virtual environment need not).  libguestfs
1.48 cannot hotplug, so a benchmark scan launches once per image.  The direct
backend is used, with TCG forced when guestslots found that KVM does not
really run (libguestfs left to choose picks KVM here and QEMU aborts).
This file must run on the system Python alone: it imports nothing from
guestslots.
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


def _handle(force_tcg: bool) -> Any:
    import guestfs  # type: ignore[import-not-found]  # only in the system Python

    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")
    if force_tcg:
        g.set_backend_setting("force_tcg", "1")
    return g


def describe(spec: dict[str, Any]) -> dict[str, Any]:
    """What libguestfs says of the images in *spec* ({"force_tcg", "drives": [[path, fmt]]}):
    list_devices, list_partitions, list_filesystems, and /whoami of each mountable filesystem."""
    proc = subprocess.run([SYSTEM_PYTHON, __file__, json.dumps({"describe": spec})],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"libguestfs failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _describe(spec: dict[str, Any]) -> dict[str, Any]:
    g = _handle(spec["force_tcg"])
    for path, fmt in spec["drives"]:
        g.add_drive_opts(path, format=fmt, readonly=1)
    g.launch()
    filesystems = g.list_filesystems()
    whoami = {}
    for dev, fstype in filesystems.items():
        if fstype in ("unknown", "swap"):
            continue
        g.mount_ro(dev, "/")
        whoami[dev] = g.cat("/whoami") if g.is_file("/whoami") else None
        g.umount_all()
    out = {"list_devices": g.list_devices(), "list_partitions": g.list_partitions(),
           "list_filesystems": filesystems, "whoami": whoami}
    g.shutdown()
    g.close()
    return out


def _measure(spec: dict[str, Any]) -> dict[str, list[float]]:
    """spec: {"force_tcg": bool, "launches": N, "launch_image": [path, fmt],
    "scan": [[path, fmt, fs_device], ...]}; every figure in seconds."""
    def handle() -> Any:
        return _handle(spec["force_tcg"])

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
    request = json.loads(sys.argv[1])
    print(json.dumps(_describe(request["describe"]) if "describe" in request
                     else _measure(request)))
