"""Partition tables of slot disks: made, changed and read as libguestfs does it.

Writing runs ``parted`` (``sgdisk`` for GPT types and moving the backup GPT), the
tools libguestfs's ``part-*`` calls run, with the same arguments, so that a table
made here is the table guestfish makes.  They tell the kernel of each partition
with BLKPG, so the new partitions' nodes exist when the call returns (devtmpfs);
nothing waits for udev.  Reading what parted reads (``part-list``, the table type,
the boot flag) runs ``parted -m``; a GPT name or type comes from libblkid, with
no process.

Every writing call wants a whole slot disk of a writable slot (a read-only slot's
disk takes writes into a throwaway overlay: they are refused, not lost), and a
call that replaces the table or removes a partition wants nothing on it in use.
"""

from __future__ import annotations

import errno
import re

from .blockdev import kernel_device, partitions_of
from .common import Fail, tool
from .mounts import MountCalls, check_unused

PARTED = "/sbin/parted"
SGDISK = "/sbin/sgdisk"

#: libguestfs's table names and their aliases.
PARTTYPES = {name: name for name in (
    "aix", "amiga", "bsd", "dasd", "dvh", "gpt", "mac", "msdos", "pc98", "sun")}
PARTTYPES.update({"rdb": "amiga", "efi": "gpt", "mbr": "msdos"})
PRLOGEX = {"primary": "primary", "logical": "logical", "extended": "extended",
           "p": "primary", "l": "logical", "e": "extended"}
_GUID_RE = re.compile(r"[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\Z")


def _partnum(partnum: int) -> int:
    partnum = int(partnum)
    if partnum <= 0:
        raise Fail("partition number must be >= 1", errno.EINVAL)
    return partnum


def _parted(*args: str) -> str:
    return tool(PARTED, "-s", "--", *args, what="parted")


def _print(dev: str) -> list[list[str]]:
    """``parted -m unit b print`` of *dev*: the device line's fields, then one list of
    fields per partition."""
    out = tool(PARTED, "-m", "--", dev, "unit", "b", "print", what="parted")
    lines = [line.rstrip(";") for line in out.splitlines() if line.strip()]
    if not lines or lines[0] != "BYT":
        raise Fail(f"parted print {dev}: unexpected output {out[:80]!r}", errno.EIO)
    return [line.split(":") for line in lines[1:]]


class PartCalls(MountCalls):
    """part-init, part-add, part-disk, part-del, part-list and the partition flags."""

    def _whole_disk(self, device: str, write: bool) -> str:
        """The kernel name of slot disk *device* (not a partition); with *write*, it
        must be on a writable slot."""
        disk, name = kernel_device(device)
        if name != disk:
            raise Fail(f"{device}: a whole disk is needed, not a partition", errno.EINVAL)
        if write:
            self.require_writable(disk)
        return disk

    def _new_table(self, device: str, parttype: str) -> tuple[str, str]:
        """(disk, parted's table name) for a new table on *device*: a known type, a
        writable whole disk, nothing on it in use."""
        table = PARTTYPES.get(parttype)
        if table is None:
            raise Fail('unknown partition type: common choices are "gpt" and "msdos"',
                       errno.EINVAL)
        disk = self._whole_disk(device, write=True)
        check_unused([disk, *partitions_of(disk)])
        return disk, table

    def call_part_init(self, device: str, parttype: str) -> None:
        """A new, empty partition table of *parttype* on *device*."""
        disk, table = self._new_table(device, parttype)
        _parted(f"/dev/{disk}", "mklabel", table)

    def call_part_add(self, device: str, prlogex: str, startsect: int,
                      endsect: int) -> None:
        """Add a partition from sector *startsect* to *endsect* (negative: from the
        end of the disk) to the table on *device*."""
        kind = PRLOGEX.get(prlogex)
        if kind is None:
            raise Fail(f'unknown partition type: {prlogex}: this should be "primary", '
                       '"logical" or "extended"', errno.EINVAL)
        startsect, endsect = int(startsect), int(endsect)
        if startsect < 0:
            raise Fail("startsect cannot be negative", errno.EINVAL)
        disk = self._whole_disk(device, write=True)
        # As libguestfs: on GPT, parted's mkpart names the partition after prlogex.
        _parted(f"/dev/{disk}", "mkpart", kind, f"{startsect}s", f"{endsect}s")

    def call_part_disk(self, device: str, parttype: str) -> None:
        """A new table of *parttype* on *device* with one partition over all of it
        (from sector 128 to 128 sectors before the end, as libguestfs)."""
        disk, table = self._new_table(device, parttype)
        _parted(f"/dev/{disk}", "mklabel", table, "mkpart",
                "p1" if table == "gpt" else "primary", "128s", "-128s")

    def call_part_del(self, device: str, partnum: int) -> None:
        """Remove partition *partnum* of *device*."""
        partnum = _partnum(partnum)
        disk = self._whole_disk(device, write=True)
        part = next((p for p in partitions_of(disk) if p == f"{disk}{partnum}"), None)
        if part is not None:
            check_unused([part])
        _parted(f"/dev/{disk}", "rm", str(partnum))

    def call_part_list(self, device: str) -> list[dict[str, int]]:
        """The partitions of *device*: number, start, end (inclusive) and size in
        bytes, in the table's order (logical partitions after the primary ones)."""
        disk = self._whole_disk(device, write=False)
        out = []
        for fields in _print(f"/dev/{disk}")[1:]:
            try:
                num, start, end, size = (int(fields[0]), *(int(f.rstrip("B"))
                                                            for f in fields[1:4]))
            except (ValueError, IndexError):
                raise Fail(f"parted print /dev/{disk}: cannot read {':'.join(fields)!r}",
                           errno.EIO) from None
            out.append({"part_num": num, "part_start": start, "part_end": end,
                        "part_size": size})
        return out

    def call_part_get_parttype(self, device: str) -> str:
        """The table type of *device*: ``msdos``, ``gpt``..."""
        disk = self._whole_disk(device, write=False)
        fields = _print(f"/dev/{disk}")[0]
        if len(fields) < 6:
            raise Fail(f"parted print /dev/{disk}: no table type", errno.EIO)
        if fields[5] == "loop":
            raise Fail("not a partitioned device", errno.EINVAL)
        return fields[5]

    def _entry(self, device: str, partnum: int) -> dict[str, str]:
        """What libblkid says of partition *partnum* of *device* (PART_ENTRY_*)."""
        disk = self._whole_disk(device, write=False)
        part = f"{disk}{_partnum(partnum)}"
        if part not in partitions_of(disk):
            raise Fail(f"/dev/{disk}: no partition {partnum}", errno.ENOENT)
        return self.blkid.probe(f"/dev/{part}")

    def call_part_get_bootable(self, device: str, partnum: int) -> bool:
        """Whether partition *partnum* of *device* has the boot flag (MBR: active)."""
        disk = self._whole_disk(device, write=False)
        partnum = _partnum(partnum)
        for fields in _print(f"/dev/{disk}")[1:]:
            if fields[0] == str(partnum):
                # the flags are the last field (a GPT name before them may hold ":")
                flags = fields[-1] if len(fields) > 6 else ""
                return "boot" in [f.strip() for f in flags.split(",")]
        raise Fail(f"/dev/{disk}: no partition {partnum}", errno.ENOENT)

    def call_part_set_bootable(self, device: str, partnum: int, bootable: bool) -> None:
        """Set or clear the boot flag of partition *partnum* of *device*."""
        partnum = _partnum(partnum)
        disk = self._whole_disk(device, write=True)
        _parted(f"/dev/{disk}", "set", str(partnum), "boot", "on" if bootable else "off")

    def call_part_set_name(self, device: str, partnum: int, name: str) -> None:
        """Set the name of partition *partnum* of *device* (GPT; also mac, pc98)."""
        partnum = _partnum(partnum)
        disk = self._whole_disk(device, write=True)
        if not isinstance(name, str) or "\0" in name:
            raise Fail("bad partition name", errno.EINVAL)
        if self.blkid.probe(f"/dev/{disk}").get("PTTYPE") == "gpt":
            # parted splits a name at its spaces; sgdisk takes it whole
            tool(SGDISK, "-c", f"{partnum}:{name}", f"/dev/{disk}", what="sgdisk")
        else:
            _parted(f"/dev/{disk}", "name", str(partnum), name)

    def call_part_get_name(self, device: str, partnum: int) -> str:
        """The name of partition *partnum* of *device* (GPT only)."""
        entry = self._entry(device, partnum)
        if entry.get("PTTYPE") != "gpt" and entry.get("PART_ENTRY_SCHEME") != "gpt":
            raise Fail("part-get-name can only be used on GUID Partition Tables",
                       errno.EINVAL)
        return entry.get("PART_ENTRY_NAME", "")

    def call_part_set_gpt_type(self, device: str, partnum: int, guid: str) -> None:
        """Set the type GUID of partition *partnum* of *device* (GPT)."""
        partnum = _partnum(partnum)
        if not isinstance(guid, str) or not _GUID_RE.match(guid):
            raise Fail(f"{guid!r}: not a GUID", errno.EINVAL)
        disk = self._whole_disk(device, write=True)
        tool(SGDISK, f"/dev/{disk}", "-t", f"{partnum}:{guid}", what="sgdisk")

    def call_part_get_gpt_type(self, device: str, partnum: int) -> str:
        """The type GUID of partition *partnum* of *device* (GPT), upper case."""
        entry = self._entry(device, partnum)
        if entry.get("PART_ENTRY_SCHEME") != "gpt":
            raise Fail("part-get-gpt-type can only be used on GUID Partition Tables",
                       errno.EINVAL)
        return entry.get("PART_ENTRY_TYPE", "").upper()

    def call_part_get_mbr_id(self, device: str, partnum: int) -> int:
        """The MBR type byte of partition *partnum* of *device* (MBR)."""
        entry = self._entry(device, partnum)
        if entry.get("PART_ENTRY_SCHEME") != "dos":
            raise Fail("part-get-mbr-id can only be used on MBR partition tables",
                       errno.EINVAL)
        return int(entry.get("PART_ENTRY_TYPE", "0"), 16)

    def call_part_expand_gpt(self, device: str) -> None:
        """Move the backup GPT to the end of *device* (after the disk grew)."""
        disk = self._whole_disk(device, write=True)
        tool(SGDISK, "-e", f"/dev/{disk}", what="sgdisk")
