"""``guestslots mount`` and ``guestslots umount``."""

from __future__ import annotations

import argparse

from ..errors import UsageError


def cmd_mount(args: argparse.Namespace) -> int:
    """Mount images' filesystems at a host directory (FUSE), as guestmount does."""
    from .. import fuse

    if not args.inspector and not args.mount:
        raise UsageError("say what to mount: -i (the operating system), or -m DEV[:MP]")
    if args.rw and args.domain is not None:
        raise UsageError("a domain's disks are plugged read-only: no --rw with -d")
    fuse.mount([(path, args.format) for path in args.images], args.mountpoint, rw=args.rw,
               mounts=args.mount, inspector=args.inspector, foreground=args.foreground,
               owner_pid=args.owner_pid, domain=args.domain, connect=args.connect)
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    """Unmount a guestslots mount, once its appliance has shut down."""
    from .. import fuse

    fuse.umount(args.mountpoint)
    return 0
