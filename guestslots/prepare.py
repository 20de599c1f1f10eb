"""Prepared disks: an image made from a small spec (size, partition table,
partitions, filesystems, LVM, files), and guestfish's ``-N`` types that name one.

:func:`make_image` makes the image file and prepares it in an appliance (one of the
caller's, or its own, which it shuts down): the partitions, filesystems and files
are made by the appliance's own tools (parted, mke2fs, LVM...), so an image is
made the same way on any host, with nothing of the host's own tools needed::

    spec = DiskSpec("64M", table="gpt", partitions=[
        PartSpec("16M", fstype="vfat", label="ESP"),
        PartSpec(None, fstype="ext4", label="root", files={"/etc/hostname": "web\\n"}),
    ])
    make_image("disk.img", spec)

:func:`parse_prepared` reads guestfish's ``-N [FILENAME=]TYPE`` (``disk``, ``part``,
``fs``, ``lv``, ``lvfs``, with their ``:``-separated options and defaults).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import GuestslotsError

if TYPE_CHECKING:
    from .appliance import Appliance

SECTOR = 512
#: Where the first partition starts and how partitions are aligned: 1 MiB.
ALIGN = 2048
_SIZE_RE = re.compile(r"([0-9]+)([KMGT]?)(i?B)?\Z", re.I)


class SpecError(GuestslotsError):
    """A disk spec (or a ``-N`` type) that cannot be made."""


def parse_size(size: int | str) -> int:
    """Bytes of *size*: an integer, or ``512K``, ``64M``, ``1G``, ``2T`` (powers of
    1024, as guestfish's sizes)."""
    if isinstance(size, int):
        value = size
    else:
        m = _SIZE_RE.match(size.strip())
        if m is None:
            raise SpecError(f"{size!r}: not a size (such as 512K, 64M, 1G)")
        value = int(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " ")
    if value <= 0:
        raise SpecError(f"{size!r}: a size must be more than 0")
    return value


@dataclass(frozen=True)
class LvSpec:
    """The partition is an LVM PV of volume group *vg* holding one LV *lv* that fills it."""

    vg: str = "VG"
    lv: str = "LV"


@dataclass(frozen=True)
class PartSpec:
    """One partition: *size* (None: the rest of the disk; only the last), the
    filesystem made on it (or on its LV, with *lvm*), its label, and *files* (guest
    path -> contents) written into it."""

    size: int | str | None = None
    fstype: str | None = None
    label: str = ""
    files: Mapping[str, bytes | str] = field(default_factory=dict)
    lvm: LvSpec | None = None


@dataclass(frozen=True)
class DiskSpec:
    """A disk: its *size*, its partition *table* (``gpt`` or ``mbr``/``msdos``; None: no
    table) and *partitions*; without a table, *partitions* is at most one spec for
    the whole disk (a filesystem and files on the disk itself)."""

    size: int | str = "1G"
    table: str | None = None
    partitions: list[PartSpec] = field(default_factory=list)

    def size_bytes(self) -> int:
        """The disk's size in bytes."""
        return parse_size(self.size)

    def check(self) -> None:
        """Refuse what cannot be made, before anything is."""
        size = self.size_bytes()
        if self.table is None and len(self.partitions) > 1:
            raise SpecError("a disk without a partition table holds one filesystem at most")
        if self.table not in (None, "gpt", "mbr", "msdos", "efi"):
            raise SpecError(f"{self.table!r}: the table is gpt or mbr")
        if any(p.size is None for p in self.partitions[:-1]):
            raise SpecError("only the last partition may take the rest of the disk")
        if self.table and len(self.partitions) > (4 if self.table in ("mbr", "msdos") else 128):
            raise SpecError(f"too many partitions for {self.table}")
        used = sum(parse_size(p.size) for p in self.partitions if p.size is not None)
        if self.table and used + 2 * ALIGN * SECTOR > size:
            raise SpecError(f"the partitions ({used} bytes) do not fit a {size}-byte disk")

    def layout(self) -> list[tuple[int, int]]:
        """(start, end) sectors of each partition: 1 MiB aligned, the last one ending
        1 MiB before the end of the disk when it takes the rest."""
        out, start = [], ALIGN
        for p in self.partitions:
            if p.size is None:
                out.append((start, -ALIGN))
                break
            sectors = -(-parse_size(p.size) // SECTOR)
            out.append((start, start + sectors - 1))
            start += -(-sectors // ALIGN) * ALIGN
        return out


def prepare(app: Appliance, device: str, spec: DiskSpec) -> list[str]:
    """Make *spec*'s table, partitions, volumes, filesystems and files on *device* (a
    writable slot's disk of *app*, running); return the filesystems' device names."""
    spec.check()
    table = spec.table
    if table in ("mbr", "efi"):
        table = {"mbr": "msdos", "efi": "gpt"}[table]
    targets: list[tuple[str, PartSpec]] = []
    if table is None:
        targets = [(device, p) for p in spec.partitions]
    else:
        layout = spec.layout()
        if len(spec.partitions) == 1 and spec.partitions[0].size is None:
            app.part_disk(device, table)  # guestfish's -N: sector 128 to 128 from the end
        else:
            app.part_init(device, table)
            for start, end in layout:
                app.part_add(device, "p", start, end)
        targets = [(f"{device}{n}", p) for n, p in enumerate(spec.partitions, 1)]
    made = []
    for dev, part in targets:
        if part.lvm is not None:
            app.pvcreate(dev)
            app.vgcreate(part.lvm.vg, [dev])
            app.lvcreate_free(part.lvm.lv, part.lvm.vg, 100)
            dev = f"/dev/{part.lvm.vg}/{part.lvm.lv}"
        if part.fstype:
            app.mkfs(part.fstype, dev, label=part.label)
            made.append(dev)
        if part.files:
            if not part.fstype:
                raise SpecError(f"{dev}: files need a filesystem")
            app.mount(dev, "/")
            try:
                for path, content in part.files.items():
                    guest = "/" + path.lstrip("/")
                    parent = os.path.dirname(guest)
                    if parent != "/":
                        app.mkdir_p(parent)
                    app.write(guest, content)
            finally:
                app.umount_all()
    return made


def make_image(path: str | os.PathLike[str], spec: DiskSpec,
               app: Appliance | None = None) -> str:
    """Make raw image *path* (sparse; replaced if it exists) as *spec* says, in *app*
    (an empty slot of it, plugged and unplugged) or in an appliance of its own."""
    from .appliance import Appliance, ApplianceState

    spec.check()
    with open(path, "wb") as f:
        f.truncate(spec.size_bytes())
    if app is None:
        own = Appliance()
        own.add_drive(path, format="raw", readonly=False)
        try:
            own.launch()
            prepare(own, own.slots()[0].device, spec)
        finally:
            own.shutdown()
        return os.fspath(path)
    if app.state is not ApplianceState.RUNNING:
        raise SpecError("make_image: the appliance given must be running")
    index = app.hotplug(-1, path, readonly=False)
    try:
        prepare(app, app.slots()[index].device, spec)
    finally:
        app.unplug(index, force=True)  # its volume groups deactivated, all written
    return os.fspath(path)


#: guestfish's -N types: name -> (option names, defaults).
PREPARED_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "disk": (("size",), ("1G",)),
    "part": (("parttype", "size"), ("mbr", "1G")),
    "fs": (("fstype", "size", "parttype"), ("ext2", "1G", "mbr")),
    "lv": (("name", "size", "parttype"), ("/dev/VG/LV", "1G", "mbr")),
    "lvfs": (("name", "fstype", "size", "parttype"), ("/dev/VG/LV", "ext2", "1G", "mbr")),
}


def parse_prepared(text: str, number: int) -> tuple[str, DiskSpec]:
    """guestfish's ``-N [FILENAME=]TYPE[:OPTION...]``: the image file name (by default
    ``testNUMBER.img``) and its spec."""
    name, sep, kind = text.partition("=")
    if not sep:
        name, kind = f"test{number}.img", text
    words = kind.split(":")
    if words[0] not in PREPARED_TYPES:
        raise SpecError(f"-N {text}: the types are {', '.join(PREPARED_TYPES)}")
    names, defaults = PREPARED_TYPES[words[0]]
    if len(words) - 1 > len(names):
        raise SpecError(f"-N {text}: {words[0]} takes {':'.join(names)} at most")
    given = dict(zip(names, defaults, strict=True))
    given.update({k: v for k, v in zip(names, words[1:], strict=False) if v})
    size = given["size"]
    lvm = None
    if "name" in given:
        m = re.fullmatch(r"/dev/([^/]+)/([^/]+)", given["name"])
        if m is None:
            raise SpecError(f"-N {text}: the LV is named /dev/VG/LV")
        lvm = LvSpec(m.group(1), m.group(2))
    if words[0] == "disk":
        return name, DiskSpec(size)
    part = PartSpec(None, fstype=given.get("fstype") or None, lvm=lvm)
    if words[0] == "lv":
        part = PartSpec(None, lvm=lvm)
    if words[0] == "part":
        part = PartSpec(None)
    return name, DiskSpec(size, table=given["parttype"], partitions=[part])
