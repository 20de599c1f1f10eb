#!/usr/bin/env python3
"""Latency a person feels, in one table: each figure beside its peer's, measured in
the same run (``tools/bench/all`` runs this).

Rows: a steady-state hotplug and unplug, each with the trace of where its time
goes (host: QMP and the overlay QEMU writes, the runtime record; guest: the
kernel until the disk's uevent, the agent's links and volume scan, the channel;
unplug: the agent's sync, QEMU's DEVICE_DELETED and blockdev-del, the guest's
removal), a plug/unplug soak (first and last tenth, to show it is flat), the
restored launch and the first hotplug after it, ``isolated()`` per image in a loop,
and the one-shot commands as new processes (``--help``, ``cat``, ``inspect``,
``mount``).  Peers: libguestfs's launch and per-image scan (its Python binding),
``guestfish --help``, ``guestfish --ro -a IMG -m DEV cat``, ``virt-inspector``,
``guestmount``, each with LIBGUESTFS_BACKEND=direct and TCG forced where KVM does
not run, as guestslots runs.

Run ``.venv/bin/python tools/bench/bench_latency.py [--rounds N] [--soak N]
[--peer-rounds N] [--json FILE]``; ``--peer-rounds 0`` skips the peers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import guestslots
from guestslots.agent_client import AgentClient
from guestslots.appliance.core import ApplianceCore
from guestslots.backends.qemu import QemuBackend
from guestslots.host.accel import expected_accel
from guestslots.isolation import drop_standby
from guestslots.testing import peer
from guestslots.testing import testimages as images
from guestslots.testing.soak import plug_times

sys.path.insert(0, str(Path(__file__).parent))
import bench_inspect

CLI = [sys.executable, "-m", "guestslots.cli"]
#: The one-shot commands run with bytecode files, as an installed wheel has them
#: (a checkout under PYTHONDONTWRITEBYTECODE=1 compiles every module each time).
WITH_BYTECODE = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
SOURCE = Path(__file__).resolve().parents[2] / "guestslots"


def peer_env() -> dict[str, str]:
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
    if expected_accel(shutil.which("qemu-system-x86_64") or "") != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"  # as guestslots runs
    return env


def median(samples: list[float]) -> float:
    return statistics.median(samples)


class Trace:
    """Times of the hotplug and unplug steps, taken by wrapping them (a bench may)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def add(self, key: str, seconds: float) -> None:
        self.times.setdefault(key, []).append(seconds)

    @contextmanager
    def installed(self) -> Iterator[None]:
        originals: list[tuple[Any, str, Any]] = []

        def wrap(owner: Any, name: str, key: str) -> None:
            original = getattr(owner, name)
            originals.append((owner, name, original))

            @functools.wraps(original)
            def timed_call(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.add(key, time.perf_counter() - started)
            setattr(owner, name, timed_call)

        wrap(QemuBackend, "attach_disk", "host: QMP, the overlay QEMU writes, device_add")
        wrap(QemuBackend, "detach_disk", "host: device_del to DEVICE_DELETED, blockdev-del")
        wrap(ApplianceCore, "_update_runtime", "host: runtime record")
        call = AgentClient.call
        originals.append((AgentClient, "call", call))

        def agent_call(client: AgentClient, name: str, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = call(client, name, **kwargs)
            took = time.perf_counter() - started
            if name == "disk_plugged":
                guest = result.get("took", {})
                for part, seconds in guest.items():
                    self.add(f"guest: {part}", seconds)
                self.add("channel and agent overhead", took - sum(guest.values()))
            elif name in ("prepare_unplug", "wait_disk"):
                self.add(f"agent: {name}", took)
            return result
        AgentClient.call = agent_call  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


def steady(work: Path, rounds: int, soak: int) -> dict[str, Any]:
    image = images.named_image(work, "steady", None)
    trace = Trace()
    cycles: list[float] = []
    with guestslots.Appliance() as app:
        app.add_drive("/dev/null")
        app.launch()
        app.hotplug(0, image)  # the first after a restore is slower: measured below
        app.unplug(0)
        with trace.installed():
            plug, unplug = plug_times(app, 0, image, rounds)
        for _ in range(soak):
            started = time.perf_counter()
            app.hotplug(0, image)
            app.unplug(0)
            cycles.append(time.perf_counter() - started)
    out: dict[str, Any] = {"hotplug": median(plug), "unplug": median(unplug),
                           "trace": {k: median(v) for k, v in trace.times.items()}}
    if soak >= 20:
        tenth = soak // 10
        out["soak"] = {"cycles": soak, "median": median(cycles),
                       "first tenth": median(cycles[:tenth]),
                       "last tenth": median(cycles[-tenth:])}
    return out


def restored(work: Path, rounds: int) -> dict[str, float]:
    image = images.named_image(work, "restored", None)
    launch, first = [], []
    for _ in range(rounds):
        with guestslots.Appliance() as app:
            app.add_drive("/dev/null")
            started = time.perf_counter()
            app.launch()
            launch.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.hotplug(0, image)
            first.append(time.perf_counter() - started)
    return {"launch": median(launch), "first hotplug": median(first)}


def isolated_loop(work: Path, rounds: int) -> float:
    """Per image in a loop of isolated() (launch, plug, list, mount, read, close), from
    the third image on (the loop's steady state: a standby is ready)."""
    took = []
    for i in range(rounds + 2):
        image = images.named_image(work, f"isolated{i}", None)
        started = time.perf_counter()
        with guestslots.isolated(image) as app:
            device = app.list_devices()[0]
            assert device in app.list_filesystems()
            app.mount_ro(device, "/")
            assert app.cat("/whoami") == f"isolated{i}\n"
        took.append(time.perf_counter() - started)
    drop_standby()
    return median(took[2:])


def timed_process(argv: list[str], rounds: int,
                  env: dict[str, str] | None = WITH_BYTECODE) -> float:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        took.append(time.perf_counter() - started)
    return median(took)


def mount_ready(image: Path, mountpoint: Path, rounds: int, ours: bool) -> float:
    took = []
    for _ in range(rounds):
        if ours:
            mount = [*CLI, "mount", "-m", "/dev/sda", str(image), str(mountpoint)]
            unmount, env = [*CLI, "umount", str(mountpoint)], WITH_BYTECODE
        else:
            mount = ["guestmount", "--ro", "--format=raw", "-a", str(image), "-m", "/dev/sda",
                     str(mountpoint)]
            unmount, env = ["guestunmount", str(mountpoint)], peer_env()
        started = time.perf_counter()
        subprocess.run(mount, check=True, env=env, stdout=subprocess.DEVNULL)
        os.listdir(mountpoint)
        took.append(time.perf_counter() - started)
        subprocess.run(unmount, check=True, env=env, stdout=subprocess.DEVNULL)
    return median(took)


Row = tuple[str, float | None, str, float | None]


def table(rows: list[Row]) -> str:
    lines = [f"{'guestslots':<58} {'s':>8}   {'peer':<34} {'s':>8} {'ratio':>7}"]
    for label, ours, peer_label, theirs in rows:
        mine = f"{ours:8.3f}" if ours is not None else f"{'-':>8}"
        if theirs is not None and ours:
            tail = f"{peer_label:<34} {theirs:8.3f} {theirs / ours:6.1f}x"
        else:
            tail = peer_label
        lines.append(f"{label:<58} {mine}   {tail}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each measure")
    parser.add_argument("--soak", type=int, default=200, help="plug/unplug cycles (0: none)")
    parser.add_argument("--peer-rounds", type=int, default=1,
                        help="rounds of each peer (each a new libguestfs appliance)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rounds = max(args.rounds, 3)
    env = peer_env()
    have_peer = args.peer_rounds > 0 and not peer.available()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="guestslots-latency-") as tmp:
        work = Path(tmp)
        figures["steady"] = steady(work, rounds, args.soak)
        figures["restored"] = restored(work, rounds)
        figures["isolated"] = isolated_loop(work, rounds)
        linux = images.linux_image(work, "oneshot", hostname="oneshot")
        debian = bench_inspect.make_image(work)
        fish = ["guestfish", "--ro", "-a", str(linux), "-m", "/dev/sda1"]
        had_bytecode = any(SOURCE.rglob("__pycache__"))
        timed_process([*CLI, "cat", str(linux), "/etc/hostname"], 1)  # writes the bytecode
        figures["help"] = timed_process([*CLI, "--help"], rounds)
        figures["cat"] = timed_process([*CLI, "cat", str(linux), "/etc/hostname"], rounds)
        figures["inspect"] = timed_process([*CLI, "inspect", "--xml", str(debian)], rounds)
        mountpoint = work / "mnt"
        mountpoint.mkdir()
        figures["mount"] = mount_ready(debian, mountpoint, rounds, ours=True)
        theirs: dict[str, float | None] = dict.fromkeys(
            ("launch", "scan", "help", "cat", "inspect", "mount"))
        if have_peer:
            scanned = peer.run({
                "force_tcg": "LIBGUESTFS_BACKEND_SETTINGS" in env,
                "launches": args.peer_rounds, "launch_image": [str(linux), "raw"],
                "scan": [[str(images.named_image(work, "peer", None)), "raw", "/dev/sda",
                          "peer"]] * args.peer_rounds})
            theirs["launch"] = median(scanned["launch"])
            theirs["scan"] = median(scanned["scan"])
            theirs["help"] = timed_process(["guestfish", "--help"], rounds, env)
            theirs["cat"] = timed_process([*fish, "cat", "/etc/hostname"], args.peer_rounds, env)
            theirs["inspect"] = timed_process(["virt-inspector", "--format=raw", "-a",
                                               str(debian)], args.peer_rounds, env)
            theirs["mount"] = mount_ready(debian, mountpoint, args.peer_rounds, ours=False)
        figures["peer"] = theirs
        if not had_bytecode:  # as the checkout was
            for cache in SOURCE.rglob("__pycache__"):
                shutil.rmtree(cache)
    s = figures["steady"]
    rows: list[Row] = [("hotplug of a read-only image, steady state", s["hotplug"],
                        "(libguestfs: no hotplug)", None)]
    rows += [(f"  {step}", seconds, "", None) for step, seconds in s["trace"].items()
             if not step.startswith(("agent:", "host: device_del"))]
    rows.append(("unplug, steady state", s["unplug"], "", None))
    rows += [(f"  {step}", seconds, "", None) for step, seconds in s["trace"].items()
             if step.startswith(("agent:", "host: device_del"))]
    if "soak" in s:
        soak = s["soak"]
        rows.append((f"soak, plug + unplug ({soak['cycles']} cycles)", soak["median"], "", None))
        rows.append(("  first tenth / last tenth", soak["first tenth"],
                     f"last tenth {soak['last tenth']:.3f}", None))
    r = figures["restored"]
    rows += [
        ("restored launch", r["launch"], "libguestfs launch", theirs["launch"]),
        ("first hotplug after a restore", r["first hotplug"], "", None),
        ("isolated() per image (launch, plug, list, mount, read)", figures["isolated"],
         "libguestfs per image, same work", theirs["scan"]),
        ("guestslots --help", figures["help"], "guestfish --help", theirs["help"]),
        ("guestslots cat IMAGE /etc/hostname", figures["cat"], "guestfish -m cat", theirs["cat"]),
        ("guestslots inspect --xml (Debian-like, 300 packages)", figures["inspect"],
         "virt-inspector", theirs["inspect"]),
        ("guestslots mount, ready", figures["mount"], "guestmount, ready", theirs["mount"]),
    ]
    print(f"guestslots {guestslots.__version__}; medians of {rounds} rounds "
          f"(peers: {args.peer_rounds if have_peer else 0}); seconds")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
