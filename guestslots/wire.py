"""The wire format between the host and the appliance agent, and every name both
sides must agree on (both import this module).

Standard library only: this file is copied into the appliance as it is.

A frame is a 5-byte header, ``>IB`` (payload length, kind), then the payload.
Kinds:

- ``M`` a message: one JSON object (UTF-8).  Requests are
  ``{"id": N, "call": NAME, "args": {...}, "wait": SECONDS}`` (how long the host
  waits for the reply, or in a transfer for the next frame); replies are
  ``{"id": N, "ok": RESULT}`` or ``{"id": N, "error": {"type", "message", "errno"}}``.
- ``D`` a chunk of a file transfer (raw bytes), ``E`` its end, ``C`` a cancel.

A download is the request, then ``D``... ``E`` from the agent, then the reply;
an upload is the request, then ``D``... ``E`` (or ``C``) from the host, then
the reply.  Frames larger than :data:`MAX_FRAME` are refused on both sides.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

HEADER = struct.Struct(">IB")
MAX_FRAME = 4 * 1024 * 1024
CHUNK = 256 * 1024

MSG = ord("M")
DATA = ord("D")
END = ord("E")
CANCEL = ord("C")
KINDS = frozenset((MSG, DATA, END, CANCEL))

#: Bumped when either side's calls or framing change incompatibly.
PROTOCOL_VERSION = 2

#: The virtio-serial port of the agent channel (the guest finds it by this name).
AGENT_PORT = "org.guestslots.agent.0"
#: Where the appliance's udev rule makes ``<label|slotK>[-partN]`` links.
LINK_DIR = "/dev/disk/guestslots"
#: libguestfs's prefix for a btrfs subvolume: ``btrfsvol:/dev/sda2/home``.
BTRFSVOL = "btrfsvol:"
#: The appliance's own configuration (the image build puts it there).
CONFIG_DIR = "/etc/guestslots"
#: LVM's system directory in the appliance (its ``lvm.conf``).
LVM_SYSTEM_DIR = CONFIG_DIR + "/lvm"
#: mdadm's configuration in the appliance.
MDADM_CONF = CONFIG_DIR + "/mdadm.conf"


def split_btrfsvol(name: str, names_device: Callable[[str], bool]) -> tuple[str, str] | None:
    """``btrfsvol:DEVICE/PATH`` -> (DEVICE, PATH); None if *name* is not one.

    DEVICE is the shortest prefix after ``btrfsvol:`` that *names_device* accepts,
    as libguestfs reads it (the host asks whether it is a slot device, link, LV or
    md array; the agent whether the device node exists).
    """
    if not name.startswith(BTRFSVOL + "/dev/"):
        return None
    rest = name.removeprefix(BTRFSVOL)
    at = len("/dev/")
    while (slash := rest.find("/", at)) != -1:
        device, path = rest[:slash], rest[slash + 1 :].strip("/")
        if path and names_device(device):
            return device, path
        at = slash + 1
    return None


#: Every call the agent answers (its ``call_<name>`` methods), by area; the host
#: makes no other.  ``download``, ``upload``, ``pread``, ``pwrite``, ``pread_device`` and
#: ``pwrite_device`` stream data.
CALLS = frozenset({
    # channel and lifecycle
    "ping", "shutdown", "prepare_save",
    # disks
    "wait_disk", "disk_plugged", "prepare_unplug", "wait_link", "list_partitions",
    "list_filesystems", "blkid", "disks_of",
    # vCPUs
    "vcpus_online", "vcpu_plugged", "vcpu_unplugging",
    "net_prepare", "nic_plugged", "nic_unplugging", "nics_state", "fetch", "checksums_out",
    "find", "find0", "hexdump", "glob_expand", "grep", "head_n", "tail_n", "du", "cp", "mv",
    "ln", "rm_rf", "rm_f",
    "chmod", "chown", "touch", "truncate_size", "utimens", "getxattrs", "setxattr",
    "removexattr", "tar_out", "tar_in",
    # partitions, filesystems, looking around
    "part_init", "part_add", "part_disk", "part_del", "part_list", "part_get_parttype",
    "part_get_bootable", "part_set_bootable", "part_get_name", "part_set_name",
    "part_get_gpt_type", "part_set_gpt_type", "part_get_mbr_id", "part_expand_gpt",
    "mkfs", "mkswap", "set_label", "set_uuid", "resize2fs", "e2fsck_f", "xfs_growfs", "fsck",
    "zerofree", "fstrim", "df", "ll", "file",
    "pvcreate", "vgcreate", "lvcreate", "lvresize", "lvremove", "vgremove", "pvremove",
    "md_create", "md_stop", "command", "freeze", "thaw",
    # volumes
    "pvs", "vgs", "lvs", "vg_activate", "list_dm_devices", "list_md_devices", "md_detail",
    # mounts
    "mount", "umount", "umount_all", "mounts",
    # files
    # augeas
    "aug_init", "aug_load", "aug_close", "aug_get", "aug_set", "aug_setm", "aug_clear",
    "aug_rm", "aug_mv", "aug_insert", "aug_defvar", "aug_label", "aug_match", "aug_ls",
    "aug_save",
    "ls", "stat", "exists", "is_file", "is_dir", "file_types", "readlink", "realpath",
    "case_sensitive_path", "mkdir",
    "rm", "rmdir", "download", "upload", "pread", "pwrite", "checksum", "statvfs", "sync",
    # devices as bytes, and their ioctls
    "blockdev_getsize64", "blockdev_getss", "blockdev_getro", "blockdev_setro",
    "blockdev_flushbufs", "blockdev_rereadpt", "pread_device", "pwrite_device",
    "copy_device_to_device", "copy_device_to_file", "copy_file_to_device",
    "copy_file_to_file", "zero_device", "is_zero_device", "is_zero",
    # Windows registry hives (hivex)
    "hivex_open", "hivex_close", "hivex_root", "hivex_node_name", "hivex_node_children",
    "hivex_node_get_child", "hivex_node_parent", "hivex_node_values", "hivex_node_get_value",
    "hivex_value_key", "hivex_value_type", "hivex_value_value", "hivex_value_string",
    "hivex_node_values_all", "hivex_node_children_named",
    # rpm's package database (librpm)
    "rpm_applications",
    # fs: what a host-side FUSE filesystem forwards
    "fs_lstat", "fs_readdir", "fs_create", "fs_mkdir", "fs_symlink", "fs_link", "fs_rename",
    "fs_unlink", "fs_setattr", "fs_fsync", "fs_listxattr", "fs_getxattr", "fs_setxattr",
    "fs_removexattr",
})

#: The order of a file's attributes in the ``fs_*`` calls' answers (``os.stat_result``
#: names less ``st_``; times in nanoseconds).
STAT_FIELDS = ("mode", "ino", "nlink", "uid", "gid", "size", "atime_ns", "mtime_ns",
               "ctime_ns", "blocks", "rdev")


def split_dm_name(mangled: str) -> list[str]:
    """LVM's device-mapper name ``VG-LV`` split into its parts (``--`` is a ``-``
    inside a name): ``my--vg-lv`` -> ``["my-vg", "lv"]``."""
    parts, cur, i = [], "", 0
    while i < len(mangled):
        if mangled[i] == "-":
            if mangled[i + 1 : i + 2] == "-":
                cur += "-"
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += mangled[i]
        i += 1
    parts.append(cur)
    return parts


class Mount(NamedTuple):
    """One line of ``/proc/PID/mountinfo`` (proc(5)), its paths unescaped."""

    mount_id: str
    #: ``major:minor`` of the mounted filesystem (btrfs and FUSE: an anonymous one).
    device: str
    #: The directory of the filesystem mounted here (a bind's or subvolume's root).
    root: str
    mountpoint: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount of a mountinfo text, in mount order (the one mountinfo reader of
    the host and the agent): fields, optional fields, ``-``, type, source."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(" "), right.split(" ")
        if not sep or len(fields) < 5 or len(after) < 2:
            continue
        mounts.append(Mount(fields[0], fields[2], _unescape(fields[3]), _unescape(fields[4]),
                            after[0], _unescape(after[1])))
    return mounts


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(kind: int, payload: bytes = b"") -> bytes:
    """One frame of *kind* carrying *payload*."""
    if kind not in KINDS:
        raise ProtocolError(f"unknown frame kind {kind}")
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(payload), kind) + payload


def encode_message(obj: dict[str, Any]) -> bytes:
    """A ``M`` frame holding *obj* as JSON."""
    return encode(MSG, json.dumps(obj, separators=(",", ":")).encode())


def decode_header(header: bytes) -> tuple[int, int]:
    """Return (kind, payload length) of a frame header, checking both."""
    if len(header) != HEADER.size:
        raise ProtocolError(f"short frame header ({len(header)} bytes)")
    length, kind = HEADER.unpack(header)
    if kind not in KINDS:
        raise ProtocolError(f"unknown frame kind {kind}")
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return kind, length


def decode_message(payload: bytes) -> dict[str, Any]:
    """Parse the payload of a ``M`` frame."""
    try:
        obj = json.loads(payload)
    except ValueError as e:
        raise ProtocolError(f"message is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    return obj
