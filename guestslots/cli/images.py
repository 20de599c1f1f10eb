"""``guestslots`` subcommands on images: inspect, scan, cat, ls, copy-out, copy-in, call."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..appliance import Appliance, ApplianceState, attach
from ..errors import GuestslotsError, UsageError
from ..model.names import split_btrfsvol
from ..opening import open_appliance
from . import PROG


def progress_printer() -> Callable[[str], None] | None:
    return (lambda m: print(m, file=sys.stderr)) if sys.stderr.isatty() else None


def _open(args: argparse.Namespace, image: str | None, readonly: bool = True) -> Appliance:
    """The appliance for a one-image subcommand (or ``-d DOMAIN``'s disks), its
    filesystem or OS mounted (-i)."""
    return open_appliance([(image, args.format)] if image is not None else [],
                          readonly=readonly, inspector=True, plain_filesystem=True,
                          domain=getattr(args, "domain", None),
                          connect=getattr(args, "connect", None),
                          accel=args.accel, progress=progress_printer())


def _image(args: argparse.Namespace, operands: list[str]) -> tuple[str | None, list[str]]:
    """The image and the other operands of a subcommand whose IMAGE is left out with
    ``-d DOMAIN`` (argparse gives the first operand to IMAGE when there is room)."""
    if args.domain is not None:  # (cli._check_operands refused what cannot be meant)
        return None, [args.image, *operands] if args.image is not None else operands
    return args.image, operands


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.domain is not None:
        raise UsageError("-d DOMAIN describes one guest: not with --jobs")
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
                         domain=args.domain, connect=args.connect,
                         progress=progress_printer())
    names = list(args.images)
    try:
        if args.domain is not None:  # its disks fill the first slots, in target order
            from ..domains import DEFAULT_URI, domain_disks, in_target_order

            disks = in_target_order(domain_disks(args.domain, args.connect or DEFAULT_URI))
            names = [f"{args.domain}:{d.target}" for d in disks] + names
        for index, image in enumerate(args.images, len(names) - len(args.images)):
            app.hotplug(index, image, format=args.format)
        if args.xml:
            systems = app.inspect_os()
            sys.stdout.write(_inspector_xml(app, systems, app.list_filesystems()))
            return 0
        json.dump(_inspect_slots(app, names), sys.stdout, indent=2)
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
    systems = [{**system, "applications": _applications(app, str(system["root"]))}
               for system in app.inspect_os()]
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


def _applications(app: Appliance, root: str) -> list[dict[str, object]]:
    """The applications installed in the OS on *root* (mounted read-only, as its fstab
    says, for as long as it takes), as virt-inspector lists them."""
    app.mount_os(root)
    try:
        return [dict(a) for a in app.inspect_list_applications(root)]
    finally:
        app.umount_all()


def _inspect_one(app: Appliance) -> dict[str, object]:
    slot = app.slots()[0]
    return _inspect_slots(app, [str(slot.path)])[0]


def _reports(images: Sequence[tuple[str, str | None]], args: argparse.Namespace,
             ) -> Iterator[tuple[int, dict[str, object]]]:
    """(position, report) of each image, each in an appliance of its own, *args.jobs*
    at a time, as they finish; a failed image's report is its error."""
    from ..pool import Pool

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
    from ..inspection.xml import inspector_xml

    records = {dev: _fs_record(app, dev, fstype) for dev, fstype in filesystems.items()}
    applications = {str(s["root"]): _applications(app, str(s["root"])) for s in systems}
    return inspector_xml(systems, records, applications)


def _disk(partition: str) -> str:
    """The disk of a slot partition: ``/dev/sda1`` -> ``/dev/sda``."""
    return partition.rstrip("0123456789")


def _fs_record(app: Appliance, device: str, fstype: str) -> dict[str, str]:
    volume = split_btrfsvol(device)  # a btrfs subvolume: its filesystem's, on the device
    info = app.blkid(volume[0] if volume else device)  # one probe for label and uuid
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
    image, operands = _image(args, args.paths)
    *paths, destdir = operands
    if not paths:
        raise GuestslotsError("copy-out: give at least one PATH and a DESTDIR")
    if not os.path.isdir(destdir):
        raise GuestslotsError(f"copy-out: {destdir}: not a directory")
    from ..copyout import copy_out

    with _open(args, image) as app:
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
    from ..commands import lookup  # the command table: call only

    command = lookup(args.command)
    if args.attach:
        if args.add or args.mount or args.inspector:
            raise UsageError("--attach works on the appliance as it is: no -a, -m or -i "
                             "with it")
        app = attach(args.attach, progress=progress_printer())
        try:
            _print_result(command.call(app, args.arguments))
        finally:
            if app.state is ApplianceState.RUNNING:
                app.disconnect()  # it runs on, for the next call
        return 0
    with open_appliance([(image, args.format) for image in args.add], readonly=not args.rw,
                        mounts=args.mount, inspector=args.inspector, plain_filesystem=True,
                        launch=True, accel=args.accel, progress=progress_printer()) as app:
        _print_result(command.call(app, args.arguments))
    return 0


def _print_result(result: object) -> None:
    from ..commands import format_result

    text = format_result(result)
    if isinstance(text, bytes):
        sys.stdout.buffer.write(text)
    elif text:
        print(text, end="" if text.endswith("\n") else "\n")
