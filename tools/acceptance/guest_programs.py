#!/usr/bin/env python3
"""Acceptance check, kept outside the suite: an attacker's guest programs against the
containment of ``command`` / ``sh`` (issue 35), the attacks as a person would try
them, with a victim's secret in slot 1.  Prints one line per attack (what happened,
how long it took) and exits non-zero when one was not contained.

Run ``.venv/bin/python tools/acceptance/guest_programs.py [--backend qemu]``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import guestslots
from guestslots.testing import attacker
from guestslots.testing import testimages as images

SECRET = "victim-secret\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="qemu")
    args = parser.parse_args()
    results: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        evil = attacker.image(tmp / "attacker.img", tmp)
        victim = images.ext4(tmp / "victim.img", {"secret": SECRET})
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        threading.Thread(target=_serve, args=(server,), daemon=True).start()
        with guestslots.Appliance(args.backend) as app:
            app.add_drive(evil, readonly=False)
            app.add_drive(victim)
            app.launch()
            app.mount("/dev/sda", "/")
            for program in attacker.EXECUTABLES:
                app.chmod(0o755, program)

            def victim_read() -> float:
                app.umount_all()
                started = time.perf_counter()
                with app.mounted("/dev/sdb", "/", readonly=True):
                    assert app.cat("/secret") == SECRET
                took = time.perf_counter() - started
                app.mount("/dev/sda", "/")
                return took

            def attack(name: str, run: Callable[[], str]) -> None:
                started = time.perf_counter()
                try:
                    said = run()
                    ok = True
                except guestslots.GuestslotsError as e:
                    said, ok = f"error: {e}", True
                except Exception as e:  # an attack that broke us: reported
                    said, ok = f"BROKE: {type(e).__name__}: {e}", False
                took = time.perf_counter() - started
                try:
                    victim = victim_read()
                    said += f"; victim read after it in {victim * 1000:.0f} ms"
                except Exception as e:  # an attack that broke us: reported
                    said, ok = said + f"; VICTIM LOST: {e}", False
                results.append((name, ok, f"{took:.1f} s: {said}"))

            baseline = victim_read()
            results.append(("baseline", True, f"victim read in {baseline * 1000:.0f} ms"))
            attack("outlive the call (su nobody, loop)", lambda: _outlive(app))
            attack("OOM-protected memory hog (dd bs=440M)", lambda: app.sh(
                "echo -1000 > /proc/self/oom_score_adj; exec busybox su -s /bin/sh nobody "
                "-c 'exec busybox dd if=/dev/zero of=/dev/shm/x bs=440M count=1'", timeout=120))
            attack("SCHED_FIFO 99 spinner left behind", lambda: app.sh(
                "busybox chrt -f 99 busybox sh -c 'while :; do :; done' & "
                "echo started", timeout=30))
            attack("fork bomb, timeout=30", lambda: app.sh("f() { f | f & }; f; busybox sleep 999",
                                                           timeout=30))
            attack("probe", lambda: " ".join(
                line for line in app.command(["/bin/probe"]).splitlines()
                if line.endswith("allowed")) + " allowed, the rest refused")
            attack("host loopback without network", lambda: _host(app, port, False))
            attack("host loopback with network=True", lambda: _host(app, port, True))
            attack("a hundred calls in a row", lambda: str(sum(
                app.sh("echo $$") == "1\n" for _ in range(100))) + " answered as PID 1")
    width = max(len(name) for name, _, _ in results)
    for name, ok, said in results:
        print(f"{'ok ' if ok else 'BAD'} {name:<{width}}  {said}")
    return 0 if all(ok for _, ok, _ in results) else 1


def _outlive(app: guestslots.Appliance) -> str:
    try:
        app.sh("touch /l2; chmod 666 /l2; exec busybox su -s /bin/sh nobody -c "
               "'while :; do echo alive >> /l2; busybox sleep 1; done'", timeout=3)
    except guestslots.GuestslotsError as e:
        said = str(e)
    before = app.stat("/l2")["size"]
    time.sleep(3)  # an acceptance check watches: the file must not grow
    after = app.stat("/l2")["size"]
    if after != before:
        raise RuntimeError(f"/l2 grew from {before} to {after} bytes after the call")
    return f"{said}; /l2 stayed at {after} bytes"


def _host(app: guestslots.Appliance, port: int, network: bool) -> str:
    nic = app.add_nic()
    try:
        return app.command(["/bin/tcpget", "10.0.2.2", str(port)], network=network).strip()
    finally:
        app.remove_nic(nic)


def _serve(server: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"host-only service\n")


if __name__ == "__main__":
    sys.exit(main())
