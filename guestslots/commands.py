"""The one command table: every front end's commands, arguments and help.

Commands are the methods of :class:`guestslots.Appliance` listed in
:data:`CALLS`, spelled with hyphens (``list_devices`` -> ``list-devices``):
a new public method becomes a command only when it is chosen here, never by
accident.  Arguments and types come from the method signatures and the help
from the docstrings (shown as plain text), so the REPL, its help and
completion, and the CLI never list a command twice.

Arguments follow guestfish: required ones by position, optional ones as
``name:value`` (``add disk.img format:qcow2 readonly:false``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .appliance import Appliance
from .errors import UsageError as UsageError  # (where it was defined before)
from .model.cpus import Vcpu
from .model.flags import Affect
from .model.flags import parse as parse_flags
from .model.migration import PARAMS, MigrationParamError, MigrationParams, MigrationProgress
from .model.nics import Nic
from .model.slots import Slot

#: The Appliance methods that are commands, by area.
CALLS = (
    # lifecycle and slots
    "add_drive", "launch", "relaunch", "shutdown", "hotplug", "hotplug_domain",
    "hotplug_domain_disks", "unplug", "slots", "max_slots",
    "list_devices", "list_disk_labels", "resolve_link",
    # vCPUs
    "add_vcpu", "remove_vcpu", "vcpus", "max_vcpus",
    # the disk set
    "diskset_add", "diskset_remove", "diskset_add_all", "diskset_remove_all", "diskset_size",
    "diskset_list", "export", "snapshot",
    # moving and saving the running appliance (guestslots.restore brings a save back)
    "migrate", "save",
    # NICs
    "add_nic", "remove_nic", "nics", "fetch",
    # devices
    "list_partitions", "list_filesystems", "blkid", "vfs_type", "vfs_label", "vfs_uuid",
    # LVM and md
    "pvs", "vgs", "lvs", "vg_activate", "vg_activate_all", "list_dm_devices",
    "list_md_devices", "md_detail", "pvcreate", "vgcreate", "lvcreate", "lvcreate_free",
    "lvresize", "lvremove", "vgremove", "pvremove", "md_create", "md_stop",
    # mounts and inspection
    "mount", "mount_ro", "mount_options", "umount", "umount_all", "mounts", "mountpoints",
    "inspect_os", "mount_os", "inspect_get_roots", "inspect_get_type", "inspect_get_distro",
    "inspect_get_product_name", "inspect_get_major_version", "inspect_get_minor_version",
    "inspect_get_hostname", "inspect_get_package_format", "inspect_get_package_management",
    "inspect_get_osinfo", "inspect_get_mountpoints", "inspect_get_arch",
    "inspect_list_applications", "inspect_get_product_variant", "inspect_get_build_id",
    "inspect_get_windows_systemroot", "inspect_get_windows_current_control_set",
    "inspect_get_windows_software_hive", "inspect_get_windows_system_hive",
    "inspect_get_drive_mappings",
    # Windows registry hives (libguestfs's names)
    "hivex_open", "hivex_close", "hivex_root", "hivex_node_name", "hivex_node_children",
    "hivex_node_get_child", "hivex_node_parent", "hivex_node_values", "hivex_node_get_value",
    "hivex_value_key", "hivex_value_type", "hivex_value_value", "hivex_value_string",
    # files
    "ls", "stat", "lstat", "exists", "is_file", "is_dir", "readlink", "case_sensitive_path",
    "mkdir", "mkdir_p", "rm", "rmdir", "read_file", "cat", "write", "pread", "pwrite",
    "download", "upload", "checksum", "checksums_out",
    # searching files (libguestfs's names)
    "find", "find0", "hexdump", "glob_expand", "grep", "egrep", "fgrep", "grepi", "egrepi",
    "fgrepi", "zgrep", "zegrep", "zfgrep", "zgrepi", "zegrepi", "zfgrepi", "head", "head_n",
    "tail", "tail_n", "du",
    # changing files
    "cp", "cp_a", "cp_r", "mv", "ln", "ln_f", "ln_s", "ln_sf", "rm_rf", "rm_f", "chmod",
    "chown", "lchown", "touch", "truncate", "truncate_size", "utimens", "getxattrs",
    "lgetxattrs", "setxattr", "removexattr", "tar_out", "tar_in",
    "statvfs", "sync",
    # looking around
    "df", "df_h", "ll", "file",
    # partitions (libguestfs's names)
    "part_init", "part_add", "part_disk", "part_del", "part_list", "part_get_parttype",
    "part_get_bootable", "part_set_bootable", "part_get_name", "part_set_name",
    "part_get_gpt_type", "part_set_gpt_type", "part_get_mbr_id", "part_expand_gpt",
    "part_to_dev", "part_to_partnum",
    # making and looking after filesystems
    "mkfs", "mkswap", "set_label", "set_uuid", "resize2fs", "resize2fs_size", "resize2fs_M",
    "e2fsck_f", "xfs_growfs", "fsck", "zerofree", "fstrim",
    # block devices as bytes (libguestfs's names)
    "blockdev_getsize64", "blockdev_getsz", "blockdev_getss", "blockdev_getro",
    "blockdev_setro", "blockdev_setrw", "blockdev_flushbufs", "blockdev_rereadpt",
    "pread_device", "pwrite_device", "copy_device_to_device", "copy_device_to_file",
    "copy_file_to_device", "copy_file_to_file", "zero_device", "is_zero_device", "is_zero",
    # guest programs (inside the appliance only)
    "command", "command_lines", "sh", "sh_lines",
)

#: guestfish's short names for commands.
ALIASES = {"add": "add-drive", "run": "launch", "add-ro": "add-drive"}

#: Commands that work before launch; any other launches the appliance first in the shell.
PRE_LAUNCH = frozenset(
    {"add-drive", "launch", "relaunch", "list-devices", "slots", "max-slots",
     "list-disk-labels", "shutdown", "max-vcpus", "nics", "diskset-add", "diskset-remove",
     "diskset-add-all", "diskset-remove-all", "diskset-size", "diskset-list"}
)

#: Parameter names whose values are paths inside the appliance (for completion).
GUEST_PATH_PARAMS = frozenset({"path", "directory", "remotefile", "mountpoint"})
#: Parameter names whose values are device names (for completion).
DEVICE_PARAMS = frozenset({"device", "md"})


@dataclass(frozen=True)
class Param:
    """One argument of a command."""

    name: str
    kind: type
    required: bool
    default: Any = None
    #: For the parts of a structured argument (``migrate``'s MigrationParams, typed
    #: as ``bandwidth:32 downtime_limit:100``): the argument they make up.
    group: str = ""

    def convert(self, text: str) -> Any:
        """Turn the text typed for this argument into its value."""
        if self.name == "flags":  # flags:live, flags:config, flags:live|config...
            try:
                return int(parse_flags(text))
            except ValueError as e:
                raise UsageError(f"flags: {e}") from None
        if self.kind is bool:
            low = text.lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise UsageError(f"{self.name}: expected true or false, not {text!r}")
        if self.kind is int:
            try:
                if re.fullmatch(r"[-+]?0[0-7]+", text):
                    return int(text, 8)  # as guestfish (strtol base 0): chmod 0755 ...
                return int(text, 0)
            except ValueError:
                raise UsageError(f"{self.name}: expected an integer, not {text!r}") from None
        if self.kind is list:
            return text.split()  # guestfish: a list argument is one space-separated word
        if self.kind is float:
            try:
                return float(text)
            except ValueError:
                raise UsageError(f"{self.name}: expected a number, not {text!r}") from None
        return text


@dataclass(frozen=True)
class Command:
    """A command: its hyphenated name, the Appliance method, arguments and help."""

    name: str
    method: str
    params: tuple[Param, ...]
    doc: str

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    @property
    def usage(self) -> str:
        parts = [self.name]
        for p in self.params:
            parts.append(p.name if p.required else f"[{p.name}:{_show(p.default)}]")
        return " ".join(parts)

    def bind(self, words: list[str]) -> dict[str, Any]:
        """Map the words typed after the command name to keyword arguments."""
        required = [p for p in self.params if p.required]
        optional = {p.name: p for p in self.params if not p.required}
        positional: list[str] = []
        kwargs: dict[str, Any] = {}
        for word in words:
            name, sep, value = word.partition(":")
            if sep and name in optional:
                kwargs[name] = optional[name].convert(value)
            else:
                positional.append(word)
        if len(positional) < len(required):
            missing = " ".join(p.name for p in required[len(positional):])
            raise UsageError(f"{self.name}: missing argument(s): {missing}; usage: {self.usage}")
        if len(positional) > len(required):
            extra = positional[len(required):]
            raise UsageError(f"{self.name}: unexpected argument(s) {extra}; usage: {self.usage}")
        for p, word in zip(required, positional, strict=True):
            kwargs[p.name] = p.convert(word)
        return kwargs

    def call(self, app: Appliance, words: list[str], **extra: Any) -> Any:
        """Call the command on *app*; *extra* keyword arguments are passed as they are."""
        method: Callable[..., Any] = getattr(app, self.method)
        kwargs = self.bind(words)
        for group in dict.fromkeys(p.group for p in self.params if p.group):
            values = {p.name: kwargs.pop(p.name) for p in self.params
                      if p.group == group and p.name in kwargs}
            if "disks" in values:
                try:
                    values["disks"] = [int(d, 0) for d in values["disks"]]
                except ValueError:
                    raise UsageError(f"{self.name}: disks: slot indices are needed, not "
                                     f"{' '.join(values['disks'])!r}") from None
            try:
                kwargs[group] = MigrationParams.from_mapping(values)
            except MigrationParamError as e:
                raise UsageError(f"{self.name}: {e}") from None
        return method(**kwargs, **extra)


def _show(value: Any) -> str:
    if isinstance(value, Affect):
        return "|".join(str(f.name).lower() for f in Affect if f and f in value) or "current"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return "" if value is None else str(value)


def _kind(annotation: Any) -> type:
    """The type an argument's text converts to: int, float, bool, list (of words) or str."""
    if annotation in (bool, int, float):
        return typing.cast(type, annotation)
    if typing.get_origin(annotation) is list:
        return list
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if all(a is int for a in args):
            return int
        if all(a is bool for a in args):
            return bool
        if len(args) == 1 and typing.get_origin(args[0]) is list:
            return list  # list[str] | None
    return str


_ROLE_RE = re.compile(r":(?:meth|class|func|data|attr|mod|exc):`~?(?:[\w.]+\.)?([\w]+)`")
_LITERAL_RE = re.compile(r"``(.+?)``")
_EMPHASIS_RE = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")


def plain_text(doc: str) -> str:
    """A docstring as guestfish shows help: plain text, without reStructuredText markup
    (roles, double backquotes, emphasis, the ``::`` of literal blocks); method names
    spelled as commands."""
    text = _ROLE_RE.sub(lambda m: m.group(1).replace("_", "-"), doc)
    text = _LITERAL_RE.sub(r"\1", text)
    text = _EMPHASIS_RE.sub(r"\1", text)
    return text.replace("::\n", ":\n")


#: The typed parts of a MigrationParams a command line can give (not the
#: destination's definition, which is a RuntimeRecord or XML).
_SPEC_KINDS: dict[str, type] = {"str": str, "int": int, "bool": bool, "slots": list}


def _build() -> dict[str, Command]:
    table: dict[str, Command] = {}
    namespace = {**vars(typing), "os": os, "Slot": Slot, "Vcpu": Vcpu, "Nic": Nic}
    for name in CALLS:
        fn = getattr(Appliance, name)
        hints = typing.get_type_hints(fn, globalns={**fn.__globals__, **namespace})
        params = []
        for p in list(inspect.signature(fn).parameters.values())[1:]:
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                continue  # keyword-only parameters (callbacks) are for programs, not commands
            required = p.default is inspect.Parameter.empty
            if MigrationParams in (hints.get(p.name), *typing.get_args(hints.get(p.name))):
                params += [Param(spec.name, _SPEC_KINDS[spec.kind], False, spec.default,
                                 group=p.name)
                           for spec in PARAMS.values() if spec.kind in _SPEC_KINDS]
                continue
            params.append(Param(p.name, _kind(hints.get(p.name, str)), required,
                                None if required else p.default))
        cmd = Command(name.replace("_", "-"), name, tuple(params),
                      plain_text(inspect.getdoc(fn) or ""))
        table[cmd.name] = cmd
    return table


#: Every command, by hyphenated name.
COMMANDS: dict[str, Command] = _build()


def lookup(name: str) -> Command:
    """The command called *name* (underscores, hyphens and guestfish aliases accepted)."""
    key = name.replace("_", "-")
    key = ALIASES.get(key, key)
    try:
        return COMMANDS[key]
    except KeyError:
        raise UsageError(f"{name}: unknown command (try 'help')") from None


def format_result(result: Any) -> str | bytes | None:
    """Plain, parseable text for a command's result (bytes stay bytes)."""
    if result is None:
        return None
    if isinstance(result, bytes):
        return result
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, MigrationProgress):
        result = dataclasses.asdict(result)
    if isinstance(result, dict):
        return "\n".join(f"{k}: {_show(v)}" for k, v in result.items())
    if isinstance(result, list) and all(isinstance(x, dict) for x in result):
        return "\n\n".join(str(format_result(x)) for x in result)  # records, blank-separated
    if isinstance(result, list):
        return "\n".join(format_slot(x) if isinstance(x, Slot)
                         else f"{x.id} {x.state}" if isinstance(x, Vcpu)
                         else format_nic(x) if isinstance(x, Nic) else _show(x)
                         for x in result)
    return str(result)


def format_nic(nic: Nic) -> str:
    """``slot device-id network mac address [gateway:G] [tap:T] [interface up|down
    [default-route]]``."""
    parts = [str(nic.slot), nic.device_id, nic.network, nic.mac, nic.address]
    if nic.gateway:
        parts.append(f"gateway:{nic.gateway}")
    if nic.tap:
        parts.append(f"tap:{nic.tap}")
    if nic.interface:
        parts += [nic.interface, "up" if nic.up else "down"]
        parts += ["default-route"] if nic.default_route else []
    return " ".join(parts)


def format_slot(slot: Slot) -> str:
    """``index device state [path format ro|rw|overlay serial:S label:L]``."""
    parts = [str(slot.index), slot.device, slot.state.value]
    if slot.drive is not None:
        access = "overlay" if slot.drive.overlay else "ro" if slot.drive.readonly else "rw"
        parts += [slot.drive.path, slot.drive.format, access, f"serial:{slot.serial}"]
        if slot.label:
            parts.append(f"label:{slot.label}")
    return " ".join(parts)


def reference() -> str:
    """The call reference (``docs/reference.md``), made from this table: every command
    by area, its usage and its help, as the shell shows them.  ``python -m
    guestslots.commands > docs/reference.md`` writes it; a unit test fails when the
    file is stale."""
    out = ["# Call reference", "",
           "Made from the command table (`guestslots/commands.py`): `python -m "
           "guestslots.commands > docs/reference.md`. Each is a method of "
           "`guestslots.Appliance` (underscores) and a command of the shell and of "
           "`guestslots call` (hyphens); optional arguments are `name:value` in the "
           "shell, keywords in Python.", ""]
    for method in CALLS:
        command = COMMANDS[method.replace("_", "-")]
        out += [f"## {command.name}", "", "```", command.usage, "```", "",
                plain_text(command.doc).strip(), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
