"""guestslots-fish: a guestfish-like shell over one appliance.

Commands are the command table's (:mod:`guestslots.commands`), spelled with
hyphens; ``help`` and ``help CMD`` come from the API's docstrings.  As in
guestfish: ``-a IMAGE`` (with ``--format`` before it), ``--ro``/``--rw``,
``-N [FILE=]TYPE`` (a prepared disk), ``-m DEV[:MOUNTPOINT]``, ``-i``,
``-f SCRIPT``, ``-x``; ``!cmd`` runs a host command, a leading ``-`` ignores a
command's error.  Commands may also follow
the options, separated by ``:``.  A script (``-f``, or commands on standard
input that is not a terminal) stops at the first error with exit status 1;
an interactive session reports the error and goes on.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .appliance import Appliance, ApplianceState, attach
from .commands import (
    COMMANDS,
    DEVICE_PARAMS,
    GUEST_PATH_PARAMS,
    PRE_LAUNCH,
    UsageError,
    format_result,
    lookup,
)
from .errors import GuestslotsError
from .model.names import is_volume
from .opening import open_appliance
from .prepare import parse_prepared

PROG = "guestslots-fish"
HISTORY = os.path.expanduser("~/.guestslots_history")
_SHELL_WORDS = ("help", "quit", "exit", "q", "edit", "vi", "emacs")
#: guestfish's edit commands and their editors (None: $EDITOR, else vi).
EDITORS = {"edit": None, "vi": "vi", "emacs": "emacs"}


class ScriptError(Exception):
    """A command failed in a script: stop with exit status 1."""


class Fish(cmd.Cmd):
    """The shell: one appliance, commands from the table."""

    intro = (
        "Welcome to guestslots-fish, the guestslots shell.\n"
        "Type 'help' for a list of commands, 'help CMD' for one, 'quit' to leave.\n"
    )
    prompt = "><gs> "

    def __init__(self, app: Appliance, *, script: bool, trace: bool = False,
                 stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.app = app
        self.script = script
        self.trace = trace
        self.failed = False
        if stdin is not None:
            self.use_rawinput = False

    # ---- running commands

    def run_line(self, line: str) -> None:
        """Run one command line; in a script, an error raises :class:`ScriptError`."""
        line = line.strip()
        if not line or line.startswith("#"):
            return
        if self.trace:
            print(line, file=sys.stderr)
        ignore_errors = line.startswith("-")
        if ignore_errors:
            line = line[1:].lstrip()
        try:
            if line.startswith("!"):
                subprocess.run(line[1:], shell=True, check=True)
                return
            words = shlex.split(line)
            self.dispatch(words[0], words[1:])
        except (GuestslotsError, UsageError, ValueError, OSError,
                subprocess.CalledProcessError) as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            if not ignore_errors:
                self.failed = True
                if self.script:
                    raise ScriptError(str(e)) from None

    def dispatch(self, name: str, args: list[str]) -> None:
        if name in ("help", "?"):
            self.stdout.write(help_text(args[0] if args else None) + "\n")
            return
        if name in EDITORS:
            if len(args) != 1:
                raise UsageError(f"usage: {name} FILE")
            self.edit(args[0], EDITORS[name] or os.environ.get("EDITOR") or "vi")
            return
        command = lookup(name)
        if command.name not in PRE_LAUNCH and self.app.state is ApplianceState.CONFIG:
            self.app.launch()  # as if 'run' had been typed: launching is cheap
        with self._progress_bar(command.name, args) as extra:
            result = command.call(self.app, args, **extra)
        text = format_result(result)
        if isinstance(text, bytes):
            self.stdout.flush()
            sys.stdout.buffer.write(text)
            sys.stdout.buffer.flush()
        elif text:
            self.stdout.write(text if text.endswith("\n") else text + "\n")

    def edit(self, path: str, editor: str) -> None:
        """guestfish's edit: *path* downloaded to a private host file, *editor* run on
        it, and uploaded back only if it changed (rewritten in place: its mode and owner
        stay)."""
        if self.app.state is ApplianceState.CONFIG:
            self.app.launch()
        with tempfile.TemporaryDirectory(prefix="guestslots-edit-") as tmp:
            local = os.path.join(tmp, os.path.basename(path.rstrip("/")) or "file")
            self.app.download(path, local)
            before = Path(local).read_bytes()
            subprocess.run(f"{editor} {shlex.quote(local)}", shell=True, check=True)
            after = Path(local).read_bytes()
            if after != before:
                self.app.write(path, after)

    @contextlib.contextmanager
    def _progress_bar(self, name: str, args: list[str]) -> Iterator[dict[str, Any]]:
        """A progress bar for transfers, on a terminal only (scripts' output stays plain)."""
        if name not in ("download", "upload") or len(args) < 2 or not sys.stderr.isatty():
            yield {}
            return
        from tqdm import tqdm

        try:
            total = (self.app.stat(args[0])["size"] if name == "download"
                     else os.path.getsize(args[0]))
        except (GuestslotsError, OSError):
            total = None
        with tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, leave=False,
                  desc=name) as bar:
            yield {"progress": bar.update}

    # ---- cmd.Cmd plumbing

    def onecmd(self, line: str) -> bool:
        if line.strip() in ("quit", "exit", "q", "EOF"):
            return True
        self.run_line(line)
        return False

    def emptyline(self) -> bool:
        return False

    def preloop(self) -> None:
        with contextlib.suppress(ImportError, OSError):
            import readline

            readline.set_completer_delims(" \t\n")
            with contextlib.suppress(FileNotFoundError):
                readline.read_history_file(HISTORY)

    def postloop(self) -> None:
        with contextlib.suppress(ImportError, OSError):
            import readline

            readline.set_history_length(1000)
            readline.write_history_file(HISTORY)

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        names = [*COMMANDS, "help", "quit", "exit"]
        return sorted(n for n in names if n.startswith(text))

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = shlex.split(line[:begidx]) if line[:begidx].strip() else []
        if not words:
            return self.completenames(text)
        try:
            command = lookup(words[0])
        except UsageError:
            return []
        required = [p for p in command.params if p.required]
        position = len(words) - 1
        if position >= len(required):
            return []
        param = required[position].name
        if param in DEVICE_PARAMS:
            return sorted(d for d in self._devices() if d.startswith(text))
        if param in GUEST_PATH_PARAMS:
            return self._guest_paths(text)
        return []

    def _devices(self) -> list[str]:
        if self.app.state is not ApplianceState.RUNNING:
            return self.app.list_devices()
        with contextlib.suppress(GuestslotsError):
            volumes = [d for d in self.app.list_filesystems() if is_volume(d)]  # LVs, arrays
            return [*self.app.list_devices(), *self.app.list_partitions(), *volumes]
        return []

    def _guest_paths(self, text: str) -> list[str]:
        if self.app.state is not ApplianceState.RUNNING or not text.startswith("/"):
            return []
        directory, _, prefix = text.rpartition("/")
        directory = directory or "/"
        try:
            names = self.app.ls(directory)
        except GuestslotsError:
            return []
        base = directory.rstrip("/") + "/"
        out = []
        for name in names:
            if name.startswith(prefix):
                path = base + name
                with contextlib.suppress(GuestslotsError):
                    if self.app.is_dir(path, followsymlinks=True):
                        path += "/"
                out.append(path)
        return out


def help_text(name: str | None = None) -> str:
    """The help for command *name*, or the list of commands."""
    if name is None:
        width = max(len(n) for n in COMMANDS)
        lines = [f"{n:{width}}  {c.summary}" for n, c in sorted(COMMANDS.items())]
        lines += ["", "Also: help [CMD], quit, !HOST-COMMAND, -CMD (ignore its error),",
                  "edit FILE (with $EDITOR on the host; vi FILE, emacs FILE: with those).",
                  "Optional arguments are given as name:value."]
        return "\n".join(lines)
    if name in EDITORS:
        return (f"{name} FILE\n\nEdit guest file FILE on the host: it is downloaded to a "
                "private temporary file, the editor\n($EDITOR for edit, else vi; vi and emacs "
                "name theirs) runs on it, and it is uploaded\nback if it changed.")
    command = lookup(name)
    return f"{command.usage}\n\n{command.doc}"


def _split_commands(words: Sequence[str]) -> list[str]:
    """Commands given after the options, separated by ':' words."""
    lines: list[list[str]] = [[]]
    for word in words:
        if word == ":":
            lines.append([])
        else:
            lines[-1].append(word)
    return [shlex.join(line) for line in lines if line]


class _AddImage(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        namespace.images.append((values, namespace.format))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    # rw=False is set here, not by the --ro/--rw actions: the first action declared
    # (store_false) would otherwise make the shared default True (read-write).
    p.set_defaults(images=[], rw=False)
    p.add_argument("-a", "--add", action=_AddImage, metavar="IMAGE",
                   help="add an image as the next slot (repeatable)")
    p.add_argument("--format", default=None, choices=("raw", "qcow2"),
                   help="format of the images added after this option (default raw)")
    ro = p.add_mutually_exclusive_group()
    ro.add_argument("--ro", dest="rw", action="store_false", help="add images read-only "
                    "(the default)")
    ro.add_argument("--rw", dest="rw", action="store_true", help="add images read-write")
    p.add_argument("-N", "--new", action="append", default=[], metavar="[FILE=]TYPE",
                   help="make a prepared disk FILE (default testN.img) and add it "
                   "read-write: disk[:SIZE], part[:TABLE[:SIZE]], "
                   "fs[:FSTYPE[:SIZE[:TABLE]]], lv[:/dev/VG/LV[:SIZE[:TABLE]]], "
                   "lvfs[:/dev/VG/LV[:FSTYPE[:SIZE[:TABLE]]]] (defaults: 1G, mbr, ext2, "
                   "/dev/VG/LV), as guestfish's -N")
    p.add_argument("-c", "--connect", metavar="URI", default=None,
                   help="the libvirt URI of -d's domain (default qemu:///system)")
    p.add_argument("-d", "--domain", metavar="DOMAIN", default=None,
                   help="add every disk of this libvirt domain after the images, "
                   "read-only (a running domain's at one point in time)")
    p.add_argument("-m", "--mount", action="append", default=[], metavar="DEV[:MOUNTPOINT]",
                   help="mount DEV on MOUNTPOINT (default /) after launch")
    p.add_argument("-i", "--inspector", action="store_true",
                   help="find the operating system and mount it as its fstab says")
    p.add_argument("-f", "--file", metavar="SCRIPT", help="read commands from SCRIPT")
    p.add_argument("-x", dest="trace", action="store_true", help="echo each command")
    p.add_argument("--slots", type=int, default=0, metavar="N",
                   help="reserve N empty slots after the images, for hotplug")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    p.add_argument("--attach", metavar="ID",
                   help="work on a running detached appliance (guestslots ps) instead of a "
                        "new one; it runs on after the shell ends unless `shutdown` is run")
    p.add_argument("commands", nargs=argparse.REMAINDER,
                   help="commands to run, separated by ':'")
    return p


def _lines(stream: Iterable[str]) -> Iterable[str]:
    for line in stream:
        yield line.rstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``guestslots-fish``."""
    # guestslots logs each of its warnings (one line on standard error) as it issues it
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"guestslots(\.|$)")
    args = parser().parse_args(argv)
    progress = (lambda m: print(m, file=sys.stderr)) if sys.stderr.isatty() else None
    try:
        prepared = [parse_prepared(text, n) for n, text in enumerate(args.new, 1)]
        if args.attach and (args.images or prepared or args.slots or args.mount
                            or args.inspector or args.domain):
            print(f"{PROG}: --attach works on the appliance as it is: no -a, -d, -N, "
                  "--slots, -m or -i with it (hotplug and mount in the shell)", file=sys.stderr)
            return 2
        if args.attach:
            app = attach(args.attach, progress=progress)
        else:
            app = open_appliance(args.images, readonly=not args.rw, slots=args.slots,
                                 mounts=args.mount, inspector=args.inspector,
                                 accel=args.accel, progress=progress, prepared=prepared,
                                 domain=args.domain, connect=args.connect)
    except GuestslotsError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    try:
        commands = _split_commands(args.commands)
        if commands or args.file or not sys.stdin.isatty():
            fish = Fish(app, script=True, trace=args.trace)
            if args.file:
                with open(args.file) as f:
                    source: Iterable[str] = list(_lines(f))
            elif commands:
                source = commands
            else:
                source = _lines(sys.stdin)
            try:
                for line in source:
                    if line.strip() in ("quit", "exit", "q"):
                        break
                    fish.run_line(line)
            except ScriptError:
                return 1
            return 0
        fish = Fish(app, script=False, trace=args.trace)
        while True:
            try:
                fish.cmdloop()
                break
            except KeyboardInterrupt:
                print("^C", file=sys.stderr)
                fish.intro = ""
        return 0
    finally:
        if args.attach and app.state is ApplianceState.RUNNING:
            app.disconnect()  # it was running before: it runs on
        else:
            app.shutdown()


if __name__ == "__main__":
    sys.exit(main())
