"""The files of an appliance's work directory, named alike by both backends.

A migration starts a new QEMU process beside the old one in the same directory, so
each process (a *generation*) has its own sockets and logs, numbered: generation 0's
are ``agent.sock``, ``console.log``; the first migration's ``agent-1.sock``,
``console-1.log``.  The root overlay and the throwaway overlays of read-only slots
are shared by every generation and go with a saved appliance.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HostFileError
from ..host.proc import CommandError, run

if TYPE_CHECKING:
    from . import Layout

#: The appliance root disk's overlay (the image's root filesystem is its backing file).
ROOT_OVERLAY = "root.qcow2"


def overlay_name(index: int) -> str:
    """The name of slot *index*'s throwaway overlay (a read-only slot's writes)."""
    return f"overlay-slot{index}.qcow2"


@dataclass(frozen=True)
class Generation:
    """The files of QEMU process number *number* in work directory *workdir*."""

    workdir: str
    number: int = 0

    @classmethod
    def of(cls, socket_path: str) -> Generation:
        """The generation whose socket (``agent.sock``, ``qmp-2.sock``) is at
        *socket_path*, as a runtime record names it."""
        stem = Path(socket_path).stem
        tag = stem.partition("-")[2]
        return cls(os.path.dirname(socket_path), int(tag) if tag.isdigit() else 0)

    def next(self) -> Generation:
        """The generation a migration starts beside this one."""
        return Generation(self.workdir, self.number + 1)

    def name(self, stem: str, suffix: str = "") -> str:
        """*stem*, numbered when this is not generation 0, then *suffix*."""
        return f"{stem}-{self.number}{suffix}" if self.number else f"{stem}{suffix}"

    def path(self, stem: str, suffix: str = "") -> str:
        """The path of :meth:`name` in the work directory."""
        return os.path.join(self.workdir, self.name(stem, suffix))

    @property
    def agent_socket(self) -> str:
        return self.path("agent", ".sock")

    @property
    def qmp_socket(self) -> str:
        return self.path("qmp", ".sock")

    @property
    def console_log(self) -> str:
        return self.path("console", ".log")

    @property
    def migrate_socket(self) -> str:
        """Where the migration stream into this generation arrives."""
        return self.path("migrate", ".sock")

    @property
    def nbd_socket(self) -> str:
        """Where this generation serves the disks a migration copies into it."""
        return self.path("nbd", ".sock")


def root_overlay(workdir: str) -> str:
    """The root overlay's path in *workdir*."""
    return os.path.join(workdir, ROOT_OVERLAY)


def overlay_path(workdir: str, index: int) -> str:
    """Slot *index*'s throwaway overlay's path in *workdir*."""
    return os.path.join(workdir, overlay_name(index))


def keep_overlays(workdir: str, layout: Layout, directory: Path, root_name: str,
                  base: str) -> None:
    """Keep the root overlay (as *root_name*) and the throwaway overlay of each
    read-only slot of *layout* from *workdir* in the saved appliance's *directory*
    (the VM stands still or is gone).

    The root is kept as one overlay of the appliance image *base* (raw) holding
    everything the layers above it hold (only what differs from *base*: about 1 MB):
    a restored appliance's root overlay lies on the save it came from, or on a file
    of a work directory that goes, and a save must need neither."""
    try:
        run(["qemu-img", "convert", "-q", "-U", "-f", "qcow2", "-O", "qcow2", "-B", base,
             "-F", "raw", root_overlay(workdir), str(directory / root_name)])
    except CommandError as e:
        raise HostFileError(str(directory / root_name), f"cannot keep the root disk: "
                            f"{e}") from None
    for index, drive in layout.disks:
        if drive.throwaway:
            shutil.copyfile(overlay_path(workdir, index), directory / overlay_name(index))


def bring_overlays(directory: Path, layout: Layout, workdir: str) -> None:
    """Copy back into *workdir* the throwaway overlays :func:`keep_overlays` kept in
    *directory* (what the guest wrote to each read-only slot, as it was)."""
    for index, drive in layout.disks:
        if drive.throwaway:
            shutil.copyfile(directory / overlay_name(index), overlay_path(workdir, index))
