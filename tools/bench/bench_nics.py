#!/usr/bin/env python3
"""NIC hotplug: from ``add_nic`` to the link up with its address in the guest,
``remove_nic`` (the guest takes it down, the hypervisor confirms it gone), and a
``fetch`` of 4 MiB from an HTTP server on the host's 127.0.0.1 over the user-mode
network; on each backend.  libguestfs cannot plug a NIC into a running appliance
(its network is chosen before launch, ``set_network``): its figure is what asking
for a network adds to a launch, launches with and without measured in the same run.
Run ``.venv/bin/python tools/bench/bench_nics.py [--rounds 9] [--peer-launches 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import guestslots
from guestslots.testing import peer
from guestslots.testing import testimages as images
from guestslots.testing.webserver import serving

PAYLOAD = 4 << 20


def measure(backend: str, rounds: int, image: Path, port: int) -> dict[str, float]:
    add: list[float] = []
    remove: list[float] = []
    fetch: list[float] = []
    with guestslots.Appliance(backend) as app:
        app.add_drive(image, overlay=True)
        app.launch()
        app.mount("/dev/sda1", "/")
        app.remove_nic(app.add_nic())  # the first plug after a restore is the slowest
        for _ in range(rounds):
            started = time.perf_counter()
            slot = app.add_nic()
            add.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.fetch(f"http://{app.nics()[0].host}:{port}/payload", "/payload")
            fetch.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.remove_nic(slot)
            remove.append(time.perf_counter() - started)
    return {"plug to link up": statistics.median(add),
            "down and unplug": statistics.median(remove),
            "fetch 4 MiB": statistics.median(fetch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--backends", default="qemu,libvirt")
    parser.add_argument("--peer-launches", type=int, default=3,
                        help="libguestfs launches with and without a network (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / "www").mkdir()
        (work / "www" / "payload").write_bytes(bytes(PAYLOAD))
        stack = contextlib.ExitStack()
        port = stack.enter_context(serving(work / "www"))
        image = images.named_image(work, "nic", "gpt")
        ours: dict[str, float] = {}
        for backend in args.backends.split(","):
            figures = measure(backend, args.rounds, image, port)
            ours[backend] = figures["plug to link up"]
            print(f"{backend:8s} " + ", ".join(f"{name} {seconds * 1000:.0f} ms"
                                               for name, seconds in figures.items())
                  + f" (median of {args.rounds})")
        missing = peer.available()
        if args.peer_launches <= 0 or missing:
            print(f"libguestfs: not measured ({missing or 'skipped'})")
            return
        with guestslots.Appliance() as app:
            app.launch()
            tcg = app.accel is not None and app.accel.accel == "tcg"
        spec = {"force_tcg": tcg, "launches": args.peer_launches,
                "launch_image": [str(image), "raw"], "scan": []}
        without = statistics.median(peer.run(spec)["launch"])
        with_net = statistics.median(peer.run({**spec, "network": True})["launch"])
        extra = with_net - without
        print(f"libguestfs launch {without:.2f} s, with set_network(True) {with_net:.2f} s "
              f"({extra * 1000:+.0f} ms; median of {args.peer_launches} each): a running "
              "libguestfs appliance gets a network only by a new launch")
        for backend, seconds in ours.items():
            print(f"  {backend}: a NIC hotplug is {with_net / seconds:.0f}x faster than "
                  "libguestfs's only way to add one (a new launch with a network)")


if __name__ == "__main__":
    main()
