#!/usr/bin/env python3
"""Working on a running detached appliance from another call: a disk plugged and its
filesystem mounted once, then each round reads one file through a new attach.

guestslots: ``guestslots.attach(id)`` + ``cat`` + ``disconnect()`` in this process, and
``guestslots call --attach ID cat /n`` as a new process each time; the same in-process
round on the libvirt backend, its detached domain at a private libvirtd (as root).
The peer, same run: guestfish's own way to a running appliance (``guestfish --listen``
once, then ``guestfish --remote cat /n`` per round), and a one-shot ``guestfish -a IMG
-m /dev/sda cat /n`` (a new appliance each time: what a call pays without either).
Medians of several rounds.  Run ``.venv/bin/python tools/bench/bench_attach.py
[--rounds 7]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.testing import testimages as images


def median_of(rounds: int, fn: Callable[[], object]) -> float:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def run(*argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env,
                          timeout=600)
    return done.stdout


def attach_rounds(rounds: int, disk: str, backend: str = "qemu", uri: str | None = None
                  ) -> tuple[str, str, float]:
    """Launch a detached appliance with *disk* mounted, leave it, and time *rounds* of
    attach + cat + disconnect; it is shut down after.  (its id, accelerator, median)"""
    app = guestslots.Appliance(backend, uri=uri, detached=True)
    app.add_drive("/dev/null")
    app.launch()
    accel = app.accel.accel if app.accel else "tcg"
    app.hotplug(0, disk)
    app.mount_ro("/dev/sda", "/")
    ident = app.id
    app.disconnect()

    def attach_read() -> None:
        held = guestslots.attach(ident)
        assert held.cat("/n") == "n\n"
        held.disconnect()

    try:
        return ident, accel, median_of(rounds, attach_read)
    except BaseException:
        guestslots.attach(ident).shutdown()
        raise


def libvirt_round(rounds: int, disk: str, tmp: Path) -> float | None:
    """:func:`attach_rounds` on the libvirt backend at a private libvirtd (None if none
    can run here: not root)."""
    from guestslots.backends.libvirt.connection import capabilities_cache
    from guestslots.testing.libvirtd import private_libvirtd, unavailable

    if unavailable():
        return None
    with private_libvirtd(tmp / "libvirtd", capabilities_cache()) as uri:
        ident, _, took = attach_rounds(rounds, disk, "libvirt", uri)
        guestslots.attach(ident).shutdown()
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peer-rounds", type=int, default=3,
                        help="rounds of the one-shot guestfish (a new appliance each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        disk = str(images.ext4(Path(tmp) / "d.img", {"n": "n\n"}, size_mib=64))
        ident, accel, ours = attach_rounds(args.rounds, disk)

        # as an installed guestslots runs: from compiled bytecode (pip compiles it at
        # install; PYTHONDONTWRITEBYTECODE, set on the development machines, would
        # make every round compile every module again: about 100 ms more)
        compiled = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

        def cli_read() -> None:
            out = run(sys.executable, "-m", "guestslots.cli", "call", "--attach", ident,
                      "cat", "/n", env=compiled)
            assert out == "n\n", out

        try:
            ours_cli = median_of(args.rounds, cli_read)
        finally:
            guestslots.attach(ident).shutdown()
        on_libvirt = libvirt_round(args.rounds, disk, Path(tmp))

        env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
        if accel == "tcg":  # the same accelerator for both
            env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
        # the server it forks keeps standard output open: read its one line, no more
        with subprocess.Popen(["guestfish", "--listen", "--ro", "-a", disk, "-m", "/dev/sda"],
                              stdout=subprocess.PIPE, text=True, env=env) as listener:
            assert listener.stdout is not None
            pid = listener.stdout.readline().split("GUESTFISH_PID=")[1].split(";")[0]
            listener.stdout.close()
        try:
            remote = median_of(args.rounds, lambda: run(
                "guestfish", f"--remote={pid}", "cat", "/n", env=env))
        finally:
            subprocess.run(["guestfish", f"--remote={pid}", "exit"], env=env, check=False)
        oneshot = median_of(args.peer_rounds, lambda: run(
            "guestfish", "--ro", "-a", disk, "-m", "/dev/sda", "cat", "/n", env=env))

    print(f"accelerator: {accel}; medians of {args.rounds} rounds "
          f"({args.peer_rounds} for the one-shot guestfish)")
    print(f"guestslots attach + cat + disconnect (in process)  {ours * 1000:8.1f} ms")
    print(f"guestslots call --attach ID cat /n (new process)   {ours_cli * 1000:8.1f} ms")
    if on_libvirt is not None:
        print(f"libvirt backend: attach + cat + disconnect         {on_libvirt * 1000:8.1f} ms"
              "  (the domain at a private libvirtd)")
    print(f"guestfish --remote cat /n (to guestfish --listen)  {remote * 1000:8.1f} ms")
    print(f"guestfish -a IMG -m /dev/sda cat /n (one-shot)     {oneshot * 1000:8.1f} ms")
    print(f"ratios: guestfish --remote / call --attach = {remote / ours_cli:.2f}x; "
          f"one-shot guestfish / call --attach = {oneshot / ours_cli:.1f}x")


if __name__ == "__main__":
    main()
