"""Guest calls that make and change partition tables, with libguestfs's names,
argument order and meanings: part-init, part-add, part-disk, part-del, part-list and
the partition flags, names and types.

Paired with the agent's ``parts`` area, which runs parted and sgdisk as libguestfs
does.  Writing calls want a whole disk of a writable slot; replacing a table or
removing a partition wants nothing on it in use (mounted, an LV's PV, an array's
member): each refusal is a clear error and the table is left as it was.
"""

from __future__ import annotations

import re

from ..errors import DeviceNameError
from .base import GuestCalls, serialised

_PART_RE = re.compile(r"^(/dev/(?:sd|vd|hd|xvd)[a-z]+)([0-9]+)\Z")
_PART_P_RE = re.compile(r"^(/dev/(?:md[0-9]+|nvme[0-9]+n[0-9]+))p([0-9]+)\Z")


def split_partition(partition: str) -> tuple[str, int]:
    """(whole device, partition number) of partition name *partition*."""
    m = _PART_RE.match(partition) or _PART_P_RE.match(partition)
    if m is None:
        raise DeviceNameError(partition, "device name is not a partition")
    return m.group(1), int(m.group(2))


class PartCalls(GuestCalls):
    """Partition tables: made, changed and listed as libguestfs does."""

    @serialised
    def part_init(self, device: str, parttype: str) -> None:
        """Write a new, empty partition table of *parttype* to *device* (``gpt`` or
        ``msdos``; ``efi`` and ``mbr`` are the same; also aix, amiga/rdb, bsd, dasd, dvh,
        mac, pc98, sun).  Whatever partitions it had are gone."""
        self._call("part_init", device=self._dev(device), parttype=parttype)

    @serialised
    def part_add(self, device: str, prlogex: str, startsect: int, endsect: int) -> None:
        """Add a partition to *device* from sector *startsect* to *endsect* inclusive
        (a negative *endsect* counts back from the end of the disk).  *prlogex* is
        ``primary``, ``logical`` or ``extended`` (``p``, ``l``, ``e``); on GPT every
        partition is primary and is named after *prlogex*, as with libguestfs."""
        self._call("part_add", device=self._dev(device), prlogex=prlogex,
                   startsect=startsect, endsect=endsect)

    @serialised
    def part_disk(self, device: str, parttype: str) -> None:
        """Write a new partition table of *parttype* to *device* with one partition
        covering it, from sector 128 to 128 sectors before the end."""
        self._call("part_disk", device=self._dev(device), parttype=parttype)

    @serialised
    def part_del(self, device: str, partnum: int) -> None:
        """Remove partition number *partnum* of *device* (refused while it is in use)."""
        self._call("part_del", device=self._dev(device), partnum=partnum)

    @serialised
    def part_list(self, device: str) -> list[dict[str, int]]:
        """The partitions of *device*, each with ``part_num``, and ``part_start``,
        ``part_end`` (inclusive) and ``part_size`` in bytes."""
        return [dict(p) for p in self._call("part_list", device=self._dev(device))]

    @serialised
    def part_get_parttype(self, device: str) -> str:
        """The partition table type of *device*: ``msdos``, ``gpt``..."""
        return str(self._call("part_get_parttype", device=self._dev(device)))

    @serialised
    def part_get_bootable(self, device: str, partnum: int) -> bool:
        """Whether partition *partnum* of *device* has the boot flag (MBR: active)."""
        return bool(self._call("part_get_bootable", device=self._dev(device),
                               partnum=partnum))

    @serialised
    def part_set_bootable(self, device: str, partnum: int, bootable: bool) -> None:
        """Set (*bootable* true) or clear the boot flag of partition *partnum*."""
        self._call("part_set_bootable", device=self._dev(device), partnum=partnum,
                   bootable=bootable)

    @serialised
    def part_get_name(self, device: str, partnum: int) -> str:
        """The name of partition *partnum* of *device* (GPT only)."""
        return str(self._call("part_get_name", device=self._dev(device), partnum=partnum))

    @serialised
    def part_set_name(self, device: str, partnum: int, name: str) -> None:
        """Set the name of partition *partnum* of *device* (GPT)."""
        self._call("part_set_name", device=self._dev(device), partnum=partnum, name=name)

    @serialised
    def part_get_gpt_type(self, device: str, partnum: int) -> str:
        """The type GUID of partition *partnum* of *device* (GPT), in upper case."""
        return str(self._call("part_get_gpt_type", device=self._dev(device),
                              partnum=partnum))

    @serialised
    def part_set_gpt_type(self, device: str, partnum: int, guid: str) -> None:
        """Set the type GUID of partition *partnum* of *device* (GPT), such as
        ``0FC63DAF-8483-4772-8E79-3D69D8477DE4`` (Linux filesystem)."""
        self._call("part_set_gpt_type", device=self._dev(device), partnum=partnum,
                   guid=guid)

    @serialised
    def part_get_mbr_id(self, device: str, partnum: int) -> int:
        """The type byte of partition *partnum* of *device* (MBR only), such as 0x83."""
        return int(self._call("part_get_mbr_id", device=self._dev(device), partnum=partnum))

    @serialised
    def part_expand_gpt(self, device: str) -> None:
        """Move the backup GPT of *device* to the end of the disk, after it grew."""
        self._call("part_expand_gpt", device=self._dev(device))

    def part_to_dev(self, partition: str) -> str:
        """The whole device of partition *partition*: ``/dev/sdb1`` gives ``/dev/sdb``.
        A name that is not a partition's is an error."""
        return split_partition(partition)[0]

    def part_to_partnum(self, partition: str) -> int:
        """The partition number of *partition*: ``/dev/sdb1`` gives 1."""
        return split_partition(partition)[1]
