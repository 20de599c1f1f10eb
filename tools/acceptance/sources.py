#!/usr/bin/env python3
"""Acceptance check, kept outside the suite: remote and live sources in slots (issue
31).  Hotplugs NBD (a Unix socket and TCP), HTTP qcow2, reads a running libvirt
domain's disk from the CLI and the library while its guest writes, tries the bad
sources, checks content by checksum, and checks that nothing is left behind (backup
jobs, job directories, sockets, throwaway overlays, qemu processes).  Each step
prints ok / FAILED; the exit status is the number of failures.

Run ``.venv/bin/python tools/acceptance/sources.py [--backend qemu|libvirt]`` as root
(the libvirt domain runs at a private libvirtd; see ``guestslots.testing.libvirtd``).
"""

from __future__ import annotations

import argparse
import functools
import glob
import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import guestslots
from guestslots.model.sources import shown
from guestslots.testing import nbdserver, webserver
from guestslots.testing import testimages as images
from guestslots.testing.libvirtd import private_libvirtd

failures: list[str] = []
CLI = str(Path(sys.executable).parent / "guestslots")
DOMAIN = "guestslots-acceptance-sources"


def step(says: str, check: Callable[[], Any]) -> None:
    try:
        result = check()
        ok = result is not False
        detail = "" if result in (None, True) else f" -> {result!r}"
    except Exception as e:  # reported, not raised: every step runs
        ok, detail = False, f" -> {type(e).__name__}: {e}"
    print(f"{'ok    ' if ok else 'FAILED'} {says}{detail}")
    if not ok:
        failures.append(says)


def expect(condition: bool, detail: object = "") -> bool:
    """*condition*, or an AssertionError saying *detail*."""
    if not condition:
        raise AssertionError(detail)
    return True


def refused(call: Callable[[], Any], words: str) -> bool:
    try:
        call()
    except guestslots.GuestslotsError as e:
        if words not in str(e):
            raise AssertionError(f"refused, but said: {e}") from None
        return True
    raise AssertionError("accepted")


def sha(app: guestslots.Appliance, device: str, path: str) -> str:
    with app.mounted(device, "/", readonly=True):
        return hashlib.sha256(app.read_file(path)).hexdigest()


def qemu_processes() -> set[int]:
    """QEMU and qemu-nbd processes that run (an exited one whose parent has not reaped
    it yet is not counted)."""
    out = subprocess.run(["pgrep", "-f", "qemu-system|qemu-nbd"], capture_output=True,
                         text=True, check=False).stdout
    running = set()
    for pid in map(int, out.split()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            running.add(pid)
    return running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="qemu", choices=("qemu", "libvirt"))
    args = parser.parse_args()
    before = qemu_processes()
    with tempfile.TemporaryDirectory(prefix="acceptance-sources-") as tmp:
        d = Path(tmp)
        payload = hashlib.sha256(b"acceptance").digest() * (8 << 15)  # 8 MiB
        expected = hashlib.sha256(payload).hexdigest()
        fs = images.ext4(d / "a.fs", {"payload": payload, "whoami": "acceptance\n"})
        raw = images.partitioned(d / "a.img", "dos", fs)
        qcow2 = images.qcow2(raw, d / "a.qcow2")
        osimg = images.linux_image(d, "accos", hostname="acceptance-domain")
        with guestslots.Appliance(args.backend) as app, \
                nbdserver.serving(raw, d, export="sock") as unix, \
                nbdserver.serving(raw, d, export="tcp", tcp=True) as tcp, \
                webserver.serving(d, ranges=True) as port:
            for _ in range(4):
                app.add_drive("/dev/null")
            app.launch()
            step(f"NBD on a socket ({unix})", lambda: app.hotplug(0, unix) == 0)
            step("  its payload by checksum", lambda: sha(app, "/dev/sda1", "/payload")
                 == expected)
            step(f"NBD over TCP ({tcp})", lambda: app.hotplug(1, tcp) == 1)
            step("  its payload by checksum", lambda: sha(app, "/dev/sdb1", "/payload")
                 == expected)
            http = f"http://127.0.0.1:{port}/{qcow2.name}"
            step(f"HTTP qcow2 ({http})", lambda: app.hotplug(2, http, format="qcow2") == 2)
            step("  its payload by checksum", lambda: sha(app, "/dev/sdc1", "/payload")
                 == expected)
            for index in (2, 1, 0):
                step(f"unplug slot {index}", functools.partial(app.unplug, index))
            bad = [(f"http://127.0.0.1:{port}/missing.img", "404"),
                   (f"nbd://127.0.0.1:{nbdserver.free_port()}/x", "Connection refused"),
                   (unix.replace("/sock?", "/nope?"), "not present"),
                   ("ftp://127.0.0.1/x", "unknown scheme"),
                   ("https://u:secret@127.0.0.1/x", "password in the URL")]
            for url, words in bad:
                step(f"refused: {shown(url)} ({words})",
                     functools.partial(refused, functools.partial(app.hotplug, 0, url), words))
            step("the slots are empty after the refusals",
                 lambda: all(s.state is guestslots.SlotState.EMPTY for s in app.slots()))
            with private_libvirtd(d / "libvirtd") as uri:
                import libvirt
                import libvirt_qemu

                conn = libvirt.open(uri)
                domain = conn.createXML(f"""<domain type='qemu'><name>{DOMAIN}</name>
                  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
                  <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
                  <emulator>/usr/bin/qemu-system-x86_64</emulator>
                  <disk type='file' device='disk'><driver name='qemu' type='raw'/>
                  <source file='{osimg}'/><target dev='vda' bus='virtio'/></disk>
                  </devices></domain>""")
                step("library: a running domain's disk", lambda: app.hotplug_domain(
                    0, DOMAIN, uri=uri) == 0)
                original = app.pread_device("/dev/sda", 512, 0)
                libvirt_qemu.qemuMonitorCommand(
                    domain, 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend '
                    '"write -P 0x5a 0 64k"', libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
                step("  the guest wrote its disk; the slot still reads the plug's point "
                     "in time", lambda: osimg.read_bytes()[:2] == b"ZZ"
                     and app.pread_device("/dev/sda", 512, 0) == original)
                step("  unplug ends the backup job", lambda: app.unplug(0) == 0 and
                     domain.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE)
                cli = subprocess.run([CLI, "inspect", "-c", uri, "-d", DOMAIN],
                                     capture_output=True, text=True, timeout=300,
                                     check=False)
                step("CLI: guestslots inspect -c URI -d DOMAIN", lambda: expect(
                    cli.returncode == 0 and f"{DOMAIN}:vda" in cli.stdout, cli.stderr))
                step("  no job left after the CLI",
                     lambda: domain.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE)
                domain.destroy()
                conn.close()
        step("no job directory left", lambda: glob.glob(f"{tempfile.gettempdir()}/"
                                                         "guestslots-backup-*") == [])
    left = qemu_processes() - before
    step("no QEMU or qemu-nbd process left", lambda: expect(not left, {
        pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:300] for pid in left}))
    print(f"\n{len(failures)} failed" if failures else "\nall ok")
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())
