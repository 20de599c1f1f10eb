"""``guestslots``: the command line for CI jobs and scripts.

Exit status: 0 success, 1 the operation failed (the reason is one line on
standard error), 2 the command line was wrong.  Results go to standard
output, plain or JSON; progress (on a terminal only) to standard error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence

from ..errors import GuestslotsError, UsageError

#: The command's name, in its messages.
PROG = "guestslots"


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Subcommand *name* of ``guestslots.cli.<module>``, imported when it runs: the
    parser (and ``--help``) needs none of the library."""

    def run(args: argparse.Namespace) -> int:
        function: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"{__name__}.{module}"), name)
        return function(args)

    return run


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _domain_options(s: argparse.ArgumentParser) -> None:
    """virt-inspector's and virt-cat's ``-c URI -d DOMAIN``."""
    s.add_argument("-c", "--connect", metavar="URI", default=None,
                   help="the libvirt URI of -d's domain (default qemu:///system)")
    s.add_argument("-d", "--domain", metavar="DOMAIN", default=None,
                   help="every disk of this libvirt domain, read-only (a running one's "
                   "at one point in time), instead of an IMAGE")


def _check_operands(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (status 2) for an IMAGE missing without ``-d``, or given with it to
    a subcommand that takes one PATH (argparse gives the first operand to IMAGE only
    when there is room)."""
    if not hasattr(args, "domain"):  # a subcommand without -d
        return
    images = args.images if hasattr(args, "images") else [args.image]
    if args.domain is None and not any(images):
        p.error(f"{args.subcommand}: give an IMAGE (or -d DOMAIN)")
    if args.domain is not None and args.subcommand in ("cat", "ls") and any(images):
        p.error(f"{args.subcommand}: with -d DOMAIN, give only the PATH")


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
    _domain_options(s)
    s.add_argument("images", nargs="*", metavar="IMAGE")
    s.set_defaults(func=_command("images", "cmd_inspect"))
    s = sub.add_parser("scan", help="inspect every image under a directory (each in an "
                       "appliance of its own), one JSON line per image")
    s.add_argument("-j", "--jobs", type=_jobs, default=0, metavar="N",
                   help="appliances at a time (default 0: as many as this machine allows)")
    s.add_argument("--format", choices=("raw", "qcow2"), default=argparse.SUPPRESS,
                   help="format of every file under DIRECTORY (default: by extension: "
                   ".img .raw raw, .qcow2 qcow2; other files are skipped)")
    s.add_argument("directory", metavar="DIRECTORY")
    s.set_defaults(func=_command("images", "cmd_scan"))
    s = sub.add_parser("cat", help="print a file from an image (or -d DOMAIN PATH)")
    _domain_options(s)
    s.add_argument("image", nargs="?", metavar="IMAGE")
    s.add_argument("path")
    s.set_defaults(func=_command("images", "cmd_cat"))
    s = sub.add_parser("ls", help="list a directory of an image (or -d DOMAIN PATH)")
    _domain_options(s)
    s.add_argument("image", nargs="?", metavar="IMAGE")
    s.add_argument("path")
    s.set_defaults(func=_command("images", "cmd_ls"))
    s = sub.add_parser("copy-out", help="copy files or trees out of an image into DESTDIR "
                       "(or -d DOMAIN PATH... DESTDIR)")
    _domain_options(s)
    s.add_argument("image", nargs="?", metavar="IMAGE")
    s.add_argument("paths", nargs="+", metavar="PATH... DESTDIR")
    s.set_defaults(func=_command("images", "cmd_copy_out"))
    s = sub.add_parser("copy-in", help="copy host files or trees into a directory of an image")
    s.add_argument("--rw", action="store_true", required=True,
                   help="required: the image is changed")
    s.add_argument("image")
    s.add_argument("paths", nargs="+", metavar="LOCAL... REMOTEDIR")
    s.set_defaults(func=_command("images", "cmd_copy_in"))
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
    s.set_defaults(func=_command("images", "cmd_call"))
    s = sub.add_parser("build-appliance", help="build (or rebuild) the cached appliance")
    s.add_argument("--rebuild", action="store_true")
    s.set_defaults(func=_command("appliances", "cmd_build_appliance"))
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
    _domain_options(s)
    s.add_argument("images", nargs="*", metavar="IMAGE")
    s.add_argument("mountpoint", metavar="MOUNTPOINT")
    s.set_defaults(func=_command("mounting", "cmd_mount"))
    s = sub.add_parser("umount", help="unmount a guestslots mount and wait for its "
                       "appliance to shut down")
    s.add_argument("mountpoint", metavar="MOUNTPOINT")
    s.set_defaults(func=_command("mounting", "cmd_umount"))
    s = sub.add_parser("gc", help="clean up after appliances whose caller died (work "
                       "directories, QEMU processes, runtime records, libvirt domains)")
    s.add_argument("--uri", default="", help="also a libvirt URI's domains "
                   "(default $GUESTSLOTS_LIBVIRT_URI; the embedded driver needs none)")
    s.set_defaults(func=_command("appliances", "cmd_gc"))
    s = sub.add_parser("ps", help="list this user's running appliances (their runtime "
                       "records)")
    s.add_argument("--json", action="store_true", help="one JSON object per appliance")
    s.set_defaults(func=_command("appliances", "cmd_ps"))
    s = sub.add_parser("stop", help="stop a running appliance by its id (guestslots ps)")
    s.add_argument("--timeout", type=float, default=10.0,
                   help="seconds QEMU has to exit before it is killed (default 10)")
    s.add_argument("id")
    s.set_defaults(func=_command("appliances", "cmd_stop"))
    s = sub.add_parser("restore", help="bring back, detached, an appliance saved with "
                       "`save PATH` (prints its id)")
    s.add_argument("path", metavar="PATH")
    s.set_defaults(func=_command("appliances", "cmd_restore"))
    s = sub.add_parser("relaunch", help="boot again, detached, an appliance whose QEMU died, "
                       "as its runtime record describes it (prints its id)")
    s.add_argument("id", metavar="ID")
    s.set_defaults(func=_command("appliances", "cmd_relaunch"))
    s = sub.add_parser("test-tool", help="check that this host can run appliances")
    s.set_defaults(func=_command("appliances", "cmd_test_tool"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``guestslots``."""
    # guestslots logs each of its warnings (one line on standard error) as it issues it
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"guestslots(\.|$)")
    p = parser()
    args = p.parse_args(argv)
    _check_operands(p, args)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # the reader went away (| head): end as cat does, without a word; what is still
        # buffered goes nowhere, not into a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (GuestslotsError, UsageError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{PROG}: {args.subcommand}: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

