"""``guestslots``: the command line for CI jobs and scripts.

Exit status: 0 success, 1 the operation failed (the reason is one line on
standard error), 2 the command line was wrong.  Results go to standard
output, plain or JSON; progress (on a terminal only) to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .appliance import Appliance, ApplianceState, attach, relaunch, restore
from .commands import UsageError, format_result, lookup
from .copyout import copy_out
from .errors import GuestslotsError
from .host import build, runtime, workdir
from .host.proc import signal_process
from .inspection.xml import inspector_xml
from .model.runtime import RuntimeRecord
from .opening import open_appliance

PROG = "guestslots"


def _progress() -> Callable[[str], None] | None:
    return (lambda m: print(m, file=sys.stderr)) if sys.stderr.isatty() else None


def _open(args: argparse.Namespace, image: str, readonly: bool = True) -> Appliance:
    """The appliance for a one-image subcommand, its filesystem or OS mounted (-i)."""
    return open_appliance([(image, args.format)], readonly=readonly, inspector=True,
                          plain_filesystem=True, accel=args.accel, progress=_progress())


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.jobs is not None:
        if args.xml:
            raise UsageError("--xml describes one guest (all its disks in one appliance): "
                             "not with --jobs")
        report = [r for _, r in sorted(_reports([(image, args.format) for image in args.images],
                                                args), key=lambda pr: pr[0])]
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0 if all("error" not in r for r in report) else 1
    app = open_appliance(slots=len(args.images), launch=True, accel=args.accel,
                         progress=_progress())
    try:
        for index, image in enumerate(args.images):
            app.hotplug(index, image, format=args.format)
        if args.xml:
            systems = app.inspect_os()
            sys.stdout.write(_inspector_xml(app, systems, app.list_filesystems()))
            return 0
        json.dump(_inspect_slots(app, args.images), sys.stdout, indent=2)
        print()
        return 0
    finally:
        app.shutdown()


def _inspect_slots(app: Appliance, images: Sequence[str]) -> list[dict[str, object]]:
    """The report of each image, plugged in slots 0... of *app* (the disks of one guest:
    an LV, md array or btrfs built on several is in each of their reports)."""
    report: list[dict[str, object]] = []
    filesystems = app.list_filesystems()
    partitions = app.list_partitions()
    systems = app.inspect_os()
    # an LV, md array or btrfs subvolume belongs to every image it is built on
    disks = {dev: set(app.disks_of(dev)) for dev in filesystems}
    for system in systems:
        disks.setdefault(str(system["root"]), set(app.disks_of(str(system["root"]))))
    for index, image in enumerate(images):
        device = app.slots()[index].device
        report.append({
            "image": image,
            "device": device,
            "partitions": [p for p in partitions if _disk(p) == device],
            "filesystems": {
                dev: _fs_record(app, dev, fstype) for dev, fstype in filesystems.items()
                if device in disks[dev]
            },
            "operating_systems": [s for s in systems if device in disks[str(s["root"])]],
        })
    return report


def _inspect_one(app: Appliance) -> dict[str, object]:
    slot = app.slots()[0]
    return _inspect_slots(app, [str(slot.path)])[0]


def _reports(images: Sequence[tuple[str, str | None]], args: argparse.Namespace,
             ) -> Iterator[tuple[int, dict[str, object]]]:
    """(position, report) of each image, each in an appliance of its own, *args.jobs*
    at a time, as they finish; a failed image's report is its error."""
    from .pool import Pool

    with Pool(args.jobs or None, accel=args.accel) as pool:
        for result in pool.imap_unordered(_inspect_one, images):
            if result.ok:
                assert result.value is not None
                yield result.position, {**result.value, "image": result.image}
            else:
                yield result.position, {"image": result.image,
                                        "error": _first_line(result.error)}


def _first_line(error: BaseException | None) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return text or type(error).__name__


#: Image formats by file name extension (``guestslots scan`` without ``--format``).
EXTENSIONS = {".img": "raw", ".raw": "raw", ".qcow2": "qcow2"}


def _images_under(directory: str, fmt: str | None) -> list[tuple[str, str | None]]:
    """The images under *directory* (recursively, sorted): with *fmt*, every regular
    file; without, those whose extension names a format."""
    if not os.path.isdir(directory):
        raise GuestslotsError(f"scan: {directory}: not a directory")
    found: list[tuple[str, str | None]] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            kind = fmt or EXTENSIONS.get(os.path.splitext(name)[1].lower())
            if kind:
                found.append((path, kind))
    return found


def cmd_scan(args: argparse.Namespace) -> int:
    """Inspect every image under a directory, one JSON line per image as each finishes."""
    failed = 0
    for _position, report in _reports(_images_under(args.directory, args.format), args):
        failed += "error" in report
        print(json.dumps(report), flush=True)
    return 1 if failed else 0


def _inspector_xml(app: Appliance, systems: list[dict[str, object]],
                   filesystems: dict[str, str]) -> str:
    """virt-inspector's document for *systems*: each OS mounted in turn to list its
    applications, as virt-inspector does."""
    records = {dev: _fs_record(app, dev, fstype) for dev, fstype in filesystems.items()}
    applications = {}
    for system in systems:
        root = str(system["root"])
        app.mount_os(root)
        try:
            applications[root] = app.inspect_list_applications(root)
        finally:
            app.umount_all()
    return inspector_xml(systems, records, applications)


def _disk(partition: str) -> str:
    """The disk of a slot partition: ``/dev/sda1`` -> ``/dev/sda``."""
    return partition.rstrip("0123456789")


def _fs_record(app: Appliance, device: str, fstype: str) -> dict[str, str]:
    info = app.blkid(device)  # one probe for label and uuid
    return {"type": fstype, "label": info.get("LABEL", ""), "uuid": info.get("UUID", "")}


def cmd_cat(args: argparse.Namespace) -> int:
    with _open(args, args.image) as app:
        sys.stdout.buffer.write(app.read_file(args.path))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with _open(args, args.image) as app:
        for name in app.ls(args.path):
            print(os.fsencode(name).decode("utf-8", "backslashreplace"))
    return 0


def cmd_copy_out(args: argparse.Namespace) -> int:
    *paths, destdir = args.paths
    if not paths:
        raise GuestslotsError("copy-out: give at least one PATH and a DESTDIR")
    if not os.path.isdir(destdir):
        raise GuestslotsError(f"copy-out: {destdir}: not a directory")
    with _open(args, args.image) as app:
        for path in paths:
            copy_out(app, path, destdir,
                     lambda p, why: print(f"{PROG}: skipped {p}: {why}", file=sys.stderr))
    return 0


def cmd_copy_in(args: argparse.Namespace) -> int:
    *locals_, remotedir = args.paths
    if not locals_:
        raise GuestslotsError("copy-in: give at least one LOCAL path and a REMOTEDIR")
    with _open(args, args.image, readonly=False) as app:
        for local in locals_:
            _copy_in(app, Path(local), remotedir)
        app.umount_all()
    return 0


def _copy_in(app: Appliance, local: Path, remotedir: str) -> None:
    target = remotedir.rstrip("/") + "/" + local.name
    st = local.lstat()
    if stat.S_ISDIR(st.st_mode):
        app.mkdir_p(target)
        for child in sorted(local.iterdir()):
            _copy_in(app, child, target)
    elif stat.S_ISREG(st.st_mode):
        app.upload(local, target)


def cmd_call(args: argparse.Namespace) -> int:
    command = lookup(args.command)
    if args.attach:
        if args.add or args.mount or args.inspector:
            raise UsageError("--attach works on the appliance as it is: no -a, -m or -i "
                             "with it")
        app = attach(args.attach, progress=_progress())
        try:
            _print_result(command.call(app, args.arguments))
        finally:
            if app.state is ApplianceState.RUNNING:
                app.disconnect()  # it runs on, for the next call
        return 0
    with open_appliance([(image, args.format) for image in args.add], readonly=not args.rw,
                        mounts=args.mount, inspector=args.inspector, plain_filesystem=True,
                        launch=True, accel=args.accel, progress=_progress()) as app:
        _print_result(command.call(app, args.arguments))
    return 0


def _print_result(result: object) -> None:
    text = format_result(result)
    if isinstance(text, bytes):
        sys.stdout.buffer.write(text)
    elif text:
        print(text, end="" if text.endswith("\n") else "\n")


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
    check("qemu-img", lambda: tool("qemu-img"), "./tools/setup")
    check("supermin", lambda: tool("supermin"), "./tools/setup")
    check("host kernel", lambda: str(build.host_kernel()[0]), "apt-get install linux-image-amd64")
    image = None

    def appliance() -> str:
        nonlocal image
        image = build.ensure_appliance(lambda m: None)
        return str(image.directory)

    check("appliance build", appliance, "./tools/setup, then look at the error above")
    from .prepare import DiskSpec, PartSpec, make_image

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


def cmd_mount(args: argparse.Namespace) -> int:
    """Mount images' filesystems at a host directory (FUSE), as guestmount does."""
    from . import fuse

    if not args.inspector and not args.mount:
        raise UsageError("say what to mount: -i (the operating system), or -m DEV[:MP]")
    fuse.mount([(path, args.format) for path in args.images], args.mountpoint, rw=args.rw,
               mounts=args.mount, inspector=args.inspector, foreground=args.foreground,
               owner_pid=args.owner_pid)
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    """Unmount a guestslots mount, once its appliance has shut down."""
    from . import fuse

    fuse.umount(args.mountpoint)
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    """List this user's running appliances, from their runtime records."""
    from .host.owner import Owner

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
    return _detached_again(lambda: restore(args.path, detached=True, progress=_progress()),
                           "restored")


def cmd_relaunch(args: argparse.Namespace) -> int:
    """Boot again, detached, the appliance of a runtime record whose QEMU died: the same
    slots, vCPUs, NICs and disk set, the same ids; its id is printed."""
    return _detached_again(lambda: relaunch(args.id, detached=True, progress=_progress()),
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
    is gone, and with a libvirt URI, the domains there whose owner died."""
    uri = args.uri or os.environ.get("GUESTSLOTS_LIBVIRT_URI", "")
    if uri:
        from .backends.libvirt import gc

        gc.collect(uri, print)
    for path in workdir.remove_stale():
        print(f"removed {path} (its owner died)")
    for record_file, record in runtime.records():
        if isinstance(record, RuntimeRecord) and not runtime.vm_alive(record):
            runtime.remove(record.id)
            print(f"removed {record_file} (its QEMU is gone)")
    return 0


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    p.add_argument("--format", choices=("raw", "qcow2"), default=None,
                   help="format of the images (never guessed; default raw)")
    sub = p.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    s = sub.add_parser("inspect", help="devices, partitions, filesystems and OS of images, "
                       "as JSON")
    s.add_argument("--xml", action="store_true",
                   help="virt-inspector's XML (the disks of one guest), not JSON")
    s.add_argument("-j", "--jobs", type=_jobs, default=None, metavar="N",
                   help="the images are separate guests: inspect each in an appliance of "
                   "its own, N at a time (0: as many as this machine allows)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.set_defaults(func=cmd_inspect)
    s = sub.add_parser("scan", help="inspect every image under a directory (each in an "
                       "appliance of its own), one JSON line per image")
    s.add_argument("-j", "--jobs", type=_jobs, default=0, metavar="N",
                   help="appliances at a time (default 0: as many as this machine allows)")
    s.add_argument("--format", choices=("raw", "qcow2"), default=argparse.SUPPRESS,
                   help="format of every file under DIRECTORY (default: by extension: "
                   ".img .raw raw, .qcow2 qcow2; other files are skipped)")
    s.add_argument("directory", metavar="DIRECTORY")
    s.set_defaults(func=cmd_scan)
    s = sub.add_parser("cat", help="print a file from an image")
    s.add_argument("image")
    s.add_argument("path")
    s.set_defaults(func=cmd_cat)
    s = sub.add_parser("ls", help="list a directory of an image")
    s.add_argument("image")
    s.add_argument("path")
    s.set_defaults(func=cmd_ls)
    s = sub.add_parser("copy-out", help="copy files or trees out of an image into DESTDIR")
    s.add_argument("image")
    s.add_argument("paths", nargs="+", metavar="PATH... DESTDIR")
    s.set_defaults(func=cmd_copy_out)
    s = sub.add_parser("copy-in", help="copy host files or trees into a directory of an image")
    s.add_argument("--rw", action="store_true", required=True,
                   help="required: the image is changed")
    s.add_argument("image")
    s.add_argument("paths", nargs="+", metavar="LOCAL... REMOTEDIR")
    s.set_defaults(func=cmd_copy_in)
    s = sub.add_parser("call", help="run one shell command (see guestslots-fish help)")
    s.add_argument("--attach", metavar="ID", help="on the running detached appliance ID "
                   "(guestslots ps), left running after: `guestslots call --attach ID "
                   "diskset-add 2`")
    s.add_argument("-a", "--add", action="append", default=[], metavar="IMAGE")
    s.add_argument("-m", "--mount", action="append", default=[], metavar="DEV[:MOUNTPOINT]")
    s.add_argument("-i", "--inspector", action="store_true")
    s.add_argument("--rw", action="store_true")
    s.add_argument("command")
    s.add_argument("arguments", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_call)
    s = sub.add_parser("build-appliance", help="build (or rebuild) the cached appliance")
    s.add_argument("--rebuild", action="store_true")
    s.set_defaults(func=cmd_build_appliance)
    s = sub.add_parser("mount", help="mount images' filesystems at a host directory (FUSE)")
    s.add_argument("-i", "--inspector", action="store_true",
                   help="the operating system's filesystems, as its fstab says")
    s.add_argument("-m", "--mount", action="append", default=[], metavar="DEV[:MOUNTPOINT]")
    s.add_argument("--rw", action="store_true", help="writes reach the image (default: "
                   "read-only)")
    s.add_argument("-f", "--foreground", action="store_true",
                   help="serve the mount in this process until it is unmounted")
    s.add_argument("--format", choices=("raw", "qcow2"), default=argparse.SUPPRESS,
                   help="format of the images (as the global --format)")
    s.add_argument("--owner-pid", type=int, default=None, help=argparse.SUPPRESS)
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("mountpoint", metavar="MOUNTPOINT")
    s.set_defaults(func=cmd_mount)
    s = sub.add_parser("umount", help="unmount a guestslots mount and wait for its "
                       "appliance to shut down")
    s.add_argument("mountpoint", metavar="MOUNTPOINT")
    s.set_defaults(func=cmd_umount)
    s = sub.add_parser("gc", help="clean up after appliances whose caller died (work "
                       "directories, QEMU processes, runtime records, libvirt domains)")
    s.add_argument("--uri", default="", help="also a libvirt URI's domains "
                   "(default $GUESTSLOTS_LIBVIRT_URI; the embedded driver needs none)")
    s.set_defaults(func=cmd_gc)
    s = sub.add_parser("ps", help="list this user's running appliances (their runtime "
                       "records)")
    s.add_argument("--json", action="store_true", help="one JSON object per appliance")
    s.set_defaults(func=cmd_ps)
    s = sub.add_parser("stop", help="stop a running appliance by its id (guestslots ps)")
    s.add_argument("--timeout", type=float, default=10.0,
                   help="seconds QEMU has to exit before it is killed (default 10)")
    s.add_argument("id")
    s.set_defaults(func=cmd_stop)
    s = sub.add_parser("restore", help="bring back, detached, an appliance saved with "
                       "`save PATH` (prints its id)")
    s.add_argument("path", metavar="PATH")
    s.set_defaults(func=cmd_restore)
    s = sub.add_parser("relaunch", help="boot again, detached, an appliance whose QEMU died, "
                       "as its runtime record describes it (prints its id)")
    s.add_argument("id", metavar="ID")
    s.set_defaults(func=cmd_relaunch)
    s = sub.add_parser("test-tool", help="check that this host can run appliances")
    s.set_defaults(func=cmd_test_tool)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``guestslots``."""
    # guestslots logs each of its warnings (one line on standard error) as it issues it
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"guestslots(\.|$)")
    args = parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except (GuestslotsError, UsageError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{PROG}: {args.subcommand}: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
