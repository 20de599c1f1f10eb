"""Device names: slot index <-> ``/dev/sdX`` name, and parsing of device arguments.

Pure functions only.  The API names a slot ``/dev/sd`` + letters exactly as
the kernel would name the disk at that position of its discovery order
(0 -> ``sda``, 25 -> ``sdz``, 26 -> ``sdaa``, 27 -> ``sdab``), but the
mapping to the kernel's real name goes through the SCSI target, never through
discovery order (see :mod:`guestslots.model.slots`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DeviceNameError
from ..wire import LINK_DIR, split_dm_name
from ..wire import split_btrfsvol as wire_split_btrfsvol

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DISK_RE = re.compile(r"^/dev/(?:sd|vd|hd)([a-z]+)([0-9]*)\Z")
_LINK_RE = re.compile(r"^" + re.escape(LINK_DIR) + r"/([A-Za-z][A-Za-z0-9_]*)(?:-part([0-9]+))?\Z")
_KERNEL_RE = re.compile(r"/dev/(sd[a-z]+)([0-9]*)\b")
_LVM_NAME = r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*"
_VOLUME_RE = re.compile(
    r"^/dev/(?:md[0-9]+|md/[^/\s]+|mapper/[^/\s]+|(?!disk/|md/|mapper/)"
    + _LVM_NAME + "/" + _LVM_NAME + ")$"
)


def index_to_letters(index: int) -> str:
    """Return the disk letters of slot *index*: 0 -> ``a``, 26 -> ``aa``, 701 -> ``zz``."""
    if index < 0:
        raise ValueError(f"negative slot index {index}")
    letters = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = _LETTERS[rem] + letters
    return letters


def letters_to_index(letters: str) -> int:
    """Inverse of :func:`index_to_letters`: ``a`` -> 0, ``aa`` -> 26."""
    if not letters or any(c not in _LETTERS for c in letters):
        raise ValueError(f"not disk letters: {letters!r}")
    n = 0
    for c in letters:
        n = n * 26 + _LETTERS.index(c) + 1
    return n - 1


def device_name(index: int, partition: int = 0) -> str:
    """The API name of slot *index* (and *partition*, if not 0): ``/dev/sdc1``."""
    return f"/dev/sd{index_to_letters(index)}" + (str(partition) if partition else "")


@dataclass(frozen=True)
class DeviceRef:
    """A device argument, parsed: which slot, which partition (0 = whole disk).

    ``label`` is set when the argument named the slot by its label link.
    """

    index: int | None
    partition: int = 0
    label: str | None = None


def parse_device(name: str) -> DeviceRef:
    """Parse a device argument into a :class:`DeviceRef`.

    Accepts ``/dev/sdX[N]`` and its ``/dev/vdX[N]`` / ``/dev/hdX[N]`` aliases
    (any number of letters), ``/dev/disk/guestslots/slotK[-partN]`` and
    ``/dev/disk/guestslots/LABEL[-partN]``.  Raises :class:`DeviceNameError`
    for anything else.
    """
    m = _DISK_RE.match(name)
    if m:
        part = m.group(2)
        if part.startswith("0"):
            raise DeviceNameError(name, "partition numbers start at 1")
        return DeviceRef(letters_to_index(m.group(1)), int(part) if part else 0)
    m = _LINK_RE.match(name)
    if m:
        ident, part = m.group(1), m.group(2)
        if part is not None and (part.startswith("0") or part == ""):
            raise DeviceNameError(name, "partition numbers start at 1")
        partition = int(part) if part else 0
        slot = re.fullmatch(r"slot([0-9]+)", ident)
        if slot:
            return DeviceRef(int(slot.group(1)), partition)
        return DeviceRef(None, partition, label=ident)
    raise DeviceNameError(
        name,
        "not a device name (expected /dev/sdX[N], /dev/vdX[N], /dev/hdX[N] "
        f"or {LINK_DIR}/<slotK|label>[-partN])",
    )


def is_volume(name: str) -> bool:
    """Whether *name* names a stacked device: an LV (``/dev/VG/LV``,
    ``/dev/mapper/NAME``) or an md array (``/dev/mdN``, ``/dev/md/NAME``).

    These names are never translated (libguestfs's convention); the appliance
    checks that such a device is built on slot disks only.
    """
    return bool(_VOLUME_RE.match(name))




def split_btrfsvol(name: str) -> tuple[str, str] | None:
    """``btrfsvol:DEVICE/PATH`` -> (DEVICE, PATH); None if *name* is not one.

    DEVICE is the shortest prefix that names a device (a slot device or link,
    an LV, an md array), as libguestfs reads it (the rule: :func:`wire.split_btrfsvol`).
    """
    return wire_split_btrfsvol(name, lambda d: is_volume(d) or _is_slot_name(d))


def _is_slot_name(name: str) -> bool:
    try:
        parse_device(name)
    except DeviceNameError:
        return False
    return True


def canonical_volume(name: str) -> str:
    """``/dev/mapper/VG-LV`` -> ``/dev/VG/LV`` (``--`` in a dm name is a ``-`` of a
    name); any other name is returned as it is."""
    if not name.startswith("/dev/mapper/"):
        return name
    parts = split_dm_name(name.removeprefix("/dev/mapper/"))
    if len(parts) != 2 or not all(parts):
        return name
    return f"/dev/{parts[0]}/{parts[1]}"


def translate_out_text(text: str, kernel_to_api: dict[str, str]) -> str:
    """Rewrite every kernel ``/dev/sdX[N]`` name in *text* to its API name, in one pass.

    One pass matters: with kernel ``sda`` -> API ``sdb`` and kernel ``sdb`` ->
    API ``sda``, sequential replacement would swap names twice.  Names not in
    the map are left alone.
    """

    def repl(m: re.Match[str]) -> str:
        api = kernel_to_api.get(m.group(1))
        if api is None:
            return m.group(0)
        return f"/dev/{api}{m.group(2)}"

    return _KERNEL_RE.sub(repl, text)
