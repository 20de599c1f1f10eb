"""``guestslots`` subcommands on appliances: build-appliance, test-tool, ps, stop,
restore, relaunch, gc."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..appliance import Appliance, relaunch, restore
from ..errors import GuestslotsError, UsageError
from ..host import build, runtime, workdir
from ..host.proc import signal_process
from ..model.runtime import RuntimeRecord
from . import PROG
from .images import progress_printer


def cmd_build_appliance(args: argparse.Namespace) -> int:
    image = build.ensure_appliance(lambda m: print(m, file=sys.stderr), rebuild=args.rebuild)
    print(image.directory)
    return 0


def cmd_test_tool(args: argparse.Namespace) -> int:
    """Check the host step by step; say what is wrong and how to fix it."""
    failures = 0

    def check(what: str, fn: Callable[[], str], fix: str) -> bool:
        nonlocal failures
        try:
            detail = fn()
        except Exception as e:  # every failure is reported, none is fatal here
            failures += 1
            print(f"FAIL {what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            print(f"     fix: {fix}")
            return False
        print(f"ok   {what}" + (f": {detail}" if detail else ""))
        return True

    def tool(name: str) -> str:
        path = shutil.which(name)
        if not path:
            raise FileNotFoundError(f"{name} not found")
        return path

    check("qemu-system-x86_64", lambda: tool("qemu-system-x86_64"), "./tools/setup")

    def qemus() -> str:
        from ..appliance.core import DEFAULT_QEMU, QEMU_ENV
        from ..host.qemuversion import known_qemus

        default = os.environ.get(QEMU_ENV) or DEFAULT_QEMU
        found = known_qemus(default)
        if not found or found[0][0] != default:
            raise FileNotFoundError(f"{default} not found")
        return "; ".join(f"{path} {version}" + (" (used)" if path == default else "")
                         for path, version in found)

    check("QEMUs found", qemus, "./tools/setup (and ./tools/second-qemu for a second one)")
    check("qemu-img", lambda: tool("qemu-img"), "./tools/setup")
    check("supermin", lambda: tool("supermin"), "./tools/setup")
    check("host kernel", lambda: str(build.host_kernel()[0]), "apt-get install linux-image-amd64")
    image = None

    def appliance() -> str:
        nonlocal image
        image = build.ensure_appliance(lambda m: None)
        return str(image.directory)

    check("appliance build", appliance, "./tools/setup, then look at the error above")
    from ..prepare import DiskSpec, PartSpec, make_image

    with tempfile.TemporaryDirectory(prefix="guestslots-test-tool-") as tmp:
        disk = Path(tmp) / "testtool.img"
        app = Appliance(accel=args.accel)
        app.add_drive("/dev/null")

        def boot() -> str:
            app.launch()
            assert app.accel is not None
            return f"{app.launched_from}, accelerator {app.accel.accel} ({app.accel.reason})"

        if check("appliance launch", boot, "see the QEMU log tail in the error; try --accel tcg"):
            def hotplug() -> str:
                # a disk made by the appliance's own tools, as libguestfs-test-tool does
                make_image(disk, DiskSpec(size="32M", table="gpt", partitions=[
                    PartSpec(fstype="ext4", files={"/whoami": "testtool\n"})]), app)
                app.hotplug(0, disk)
                found = app.list_filesystems()
                if found != {"/dev/sda1": "ext4"}:
                    raise GuestslotsError(f"unexpected filesystems {found}")
                with app.mounted("/dev/sda1"):
                    return f"read {app.cat('/whoami').strip()!r} from a hotplugged disk"

            check("hotplug", hotplug, "report a bug with the output of this command")
        app.shutdown()
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1


def cmd_ps(args: argparse.Namespace) -> int:
    """List this user's running appliances, from their runtime records."""
    from ..host.owner import Owner

    rows = []
    for path, record in runtime.records():
        if not isinstance(record, RuntimeRecord):
            print(f"{PROG}: ps: {record}", file=sys.stderr)
            continue
        try:
            owner_alive = Owner(**record.owner).alive() if record.owner else None
        except TypeError:
            owner_alive = None
        full = sum(1 for s in record.slots if s.state == "filled")
        rows.append({
            "id": record.id, "backend": record.backend, "pid": record.pid,
            "running": runtime.vm_alive(record), "slots": f"{full}/{len(record.slots)}",
            "vcpus": f"{len(record.vcpus_plugged)}/{record.vcpus_max}",
            "age_s": round(time.time() - record.started, 1),
            "owner_alive": owner_alive, "detached": record.detached,
            "held": bool(record.owner) and owner_alive is True, "record": str(path),
        })
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'ID':10} {'BACKEND':8} {'PID':>8} {'RUNNING':8} {'SLOTS':>7} {'VCPUS':>6} "
          f"{'AGE':>8} OWNER")
    for row in rows:
        owner = {True: "alive", False: "dead", None: "?"}[row["owner_alive"]]  # type: ignore[index]
        if row["detached"]:
            owner = f"detached, {'held by a process' if row['held'] else 'free to attach'}"
        print(f"{row['id']:10} {row['backend']:8} {row['pid'] or '-':>8} "
              f"{'yes' if row['running'] else 'no':8} {row['slots']:>7} {row['vcpus']:>6} "
              f"{row['age_s']:>7.0f}s {owner}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a running appliance by its id (``guestslots ps``): its QEMU is sent SIGTERM
    (QEMU exits at once, as on a power cut: use it for an appliance whose owner cannot
    shut it down), waited for, and its runtime record removed.  The owner's next call
    fails with ChannelClosed."""
    path = runtime.record_path(args.id)
    if not path.exists():
        raise GuestslotsError(f"no running appliance {args.id!r} (see guestslots ps)")
    record = runtime.read(path)
    if not runtime.vm_alive(record):
        runtime.remove(record.id)
        print(f"{record.id} was not running (QEMU {record.pid} is gone): record removed")
        return 0
    if record.pid is not None and not signal_process(record.pid, signal.SIGTERM, args.timeout):
        signal_process(record.pid, signal.SIGKILL, 10)
    runtime.remove(record.id)
    print(f"stopped {record.id} (QEMU {record.pid})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Bring back a saved appliance (``save PATH`` in the shell), detached: it runs on
    after this command, for ``guestslots call --attach ID`` and ``guestslots-fish
    --attach ID``; its id is printed."""
    return _detached_again(lambda: restore(args.path, detached=True, progress=progress_printer()),
                           "restored")


def cmd_relaunch(args: argparse.Namespace) -> int:
    """Boot again, detached, the appliance of a runtime record whose QEMU died: the same
    slots, vCPUs, NICs and disk set, the same ids; its id is printed."""
    return _detached_again(lambda: relaunch(args.id, detached=True, progress=progress_printer()),
                           "relaunched")


def _detached_again(bring_back: Callable[[], Appliance], what: str) -> int:
    try:
        app = bring_back()
    except ValueError as e:  # a libvirt URI whose domains cannot outlive this process
        raise UsageError(str(e)) from None
    print(app.id)
    print(f"{what} {app.id} (QEMU {app.pid}): guestslots call --attach {app.id} ..., "
          f"guestslots stop {app.id}", file=sys.stderr)
    app.disconnect()
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Clean what appliances of dead callers left: work directories (and the QEMU
    processes libvirt's embedded driver started from them), runtime records whose QEMU
    is gone, the point-in-time exports of libvirt domains (backup jobs) whose caller
    died, and with a libvirt URI, the domains there whose owner died."""
    uri = args.uri or os.environ.get("GUESTSLOTS_LIBVIRT_URI", "")
    if uri:
        from ..backends.libvirt import gc

        gc.collect(uri, print)
    for path in workdir.remove_stale():
        print(f"removed {path} (its owner died)")
    from ..domains import collect_jobs

    collect_jobs(print)
    for record_file, record in runtime.records():
        if isinstance(record, RuntimeRecord) and not runtime.vm_alive(record):
            runtime.remove(record.id)
            print(f"removed {record_file} (its QEMU is gone)")
    return 0
