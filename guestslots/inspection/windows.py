"""What libguestfs reads from a Windows guest, as pure functions: where its system
root may be, the registry keys and values it reads and what they mean (version,
product variant, hostname, drive letters, installed applications), and the libosinfo
short id it derives.  :mod:`guestslots.inspection` reads the guest; nothing here does.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping

from .packages import Application

#: Where libguestfs looks for %SYSTEMROOT%, in its order (matched regardless of case).
SYSTEMROOT_PATHS = ("/windows", "/winnt", "/win32", "/win", "/reactos")

#: An operating system line of boot.ini: ``multi(0)disk(0)rdisk(0)partition(1)\WINDOWS="..."``.
_BOOT_INI_OS = re.compile(
    r"^(multi|scsi)\((\d+)\)disk\((\d+)\)rdisk\((\d+)\)partition\((\d+)\)([^=]+)=")

#: Keys of the SOFTWARE hive and of the SYSTEM hive libguestfs reads.
CURRENT_VERSION = ("Microsoft", "Windows NT", "CurrentVersion")
UNINSTALL_KEYS = (("Microsoft", "Windows", "CurrentVersion", "Uninstall"),
                  ("WOW6432node", "Microsoft", "Windows", "CurrentVersion", "Uninstall"))
SELECT = ("Select",)
MOUNTED_DEVICES = ("MountedDevices",)
TCPIP_PARAMETERS = ("Services", "Tcpip", "Parameters")

#: The most boot.ini system roots tried (each costs a few guest calls).
MAX_BOOT_INI_ROOTS = 16

#: The most uninstall entries read from one key (a hostile hive may hold millions).
MAX_APPLICATIONS = 20_000

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD = 1, 2, 3, 4

#: A registry value as read: (type, data).
Value = tuple[int, bytes]


def boot_ini_systemroots(text: str) -> list[str]:
    r"""The system roots boot.ini's ``[operating systems]`` section names, as guest paths
    (``\WINDOWS`` -> ``/WINDOWS``), in its order; libguestfs assumes each is on the
    filesystem that holds boot.ini."""
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = next(n for n, line in enumerate(lines)
                     if line.startswith("[operating systems]"))
    except StopIteration:
        return []
    roots = []
    for line in lines[start + 1:]:
        if not line.startswith(("multi(", "scsi(")):
            break
        m = _BOOT_INI_OS.match(line)
        if m:
            roots.append(m.group(6).replace("\\", "/"))
    return roots


def reg_string(value: Value | None) -> str | None:
    """The text of a REG_SZ / REG_EXPAND_SZ value (UTF-16LE, up to its first NUL), or
    None for another type."""
    if value is None or value[0] not in (REG_SZ, REG_EXPAND_SZ):
        return None
    text = value[1].decode("utf-16-le", errors="replace")
    return text.split("\0", 1)[0]


def reg_dword(value: Value | None) -> int | None:
    """The number in a REG_DWORD value, or None."""
    if value is None or value[0] != REG_DWORD or len(value[1]) < 4:
        return None
    return int(struct.unpack_from("<I", value[1])[0])


def version_of(values: Mapping[str, Value]) -> tuple[int, int]:
    """(major, minor) as libguestfs reads them from ...\\CurrentVersion: the
    CurrentMajor/MinorVersionNumber dwords (Windows 10 on), else CurrentVersion
    (``6.1``); (0, 0) when neither says."""
    major = reg_dword(values.get("CurrentMajorVersionNumber"))
    minor = reg_dword(values.get("CurrentMinorVersionNumber"))
    if major is not None and minor is not None:
        return major, minor
    text = reg_string(values.get("CurrentVersion")) or ""
    head, _, tail = text.partition(".")
    if head.isdigit() and (tail.isdigit() or not tail):
        return int(head), int(tail or 0)
    return 0, 0


def control_set(select: Mapping[str, Value]) -> str | None:
    """``ControlSet001``... from SYSTEM\\Select's Current, as libguestfs names it."""
    current = reg_dword(select.get("Current"))
    return None if current is None else f"ControlSet{current:03d}"


def osinfo(major: int, minor: int, variant: str, product_name: str, build_id: str) -> str:
    """The libosinfo short id of a Windows version, by libguestfs's rules."""
    server = "Server" in variant
    if major == 5:
        if minor == 1:
            return "winxp"
        if minor == 2:
            if "XP" in product_name:
                return "winxp"
            return "win2k3r2" if "R2" in product_name else "win2k3"
    elif major == 6 and minor in (0, 1, 2, 3):
        return (("win2k8", "win2k8r2", "win2k12", "win2k12r2") if server else
                ("winvista", "win7", "win8", "win8.1"))[minor]
    elif major == 10 and minor == 0:
        if server:
            for year, name in (("2025", "win2k25"), ("2022", "win2k22"), ("2019", "win2k19")):
                if year in product_name:
                    return name
            return "win2k16"
        if build_id.isdigit():
            return "win11" if int(build_id) >= 22000 else "win10"
    return "unknown"


def mounted_device(name: str, value: Value) -> tuple[str, str, int] | None:
    """What a SYSTEM\\MountedDevices value maps a drive letter to: (letter, key, offset)
    where key is ``mbr:<disk id as blkid prints it>`` with the partition's byte offset,
    or ``gpt:<partition GUID>`` (offset 0); None for anything but a ``\\DosDevices\\X:``
    value of a fixed disk."""
    if len(name) < 14 or name[:12].lower() != "\\dosdevices\\" or not name[12].isalpha() \
            or name[13] != ":" or value[0] != REG_BINARY:
        return None
    letter, blob = name[12].upper(), value[1]
    if len(blob) >= 24 and blob.startswith(b"DMIO:ID:"):
        data1, data2, data3 = struct.unpack_from("<IHH", blob, 8)
        (data4,) = struct.unpack_from(">Q", blob, 16)
        node = data4 & 0xFFFFFFFFFFFF
        guid = f"{data1:08x}-{data2:04x}-{data3:04x}-{data4 >> 48:04x}-{node:012x}"
        return letter, f"gpt:{guid}", 0
    if len(blob) == 12:
        disk_id, offset = struct.unpack("<IQ", blob)
        return letter, f"mbr:{disk_id:08x}", offset
    return None


def partition_key(blkid: Mapping[str, str]) -> tuple[str, int] | None:
    """The (key, byte offset) a partition answers to in :func:`mounted_device`'s terms,
    from its blkid (PART_ENTRY_*); None for what is not a partition."""
    scheme = blkid.get("PART_ENTRY_SCHEME")
    uuid = blkid.get("PART_ENTRY_UUID", "").lower()
    if scheme == "gpt" and uuid:
        return f"gpt:{uuid}", 0
    offset = blkid.get("PART_ENTRY_OFFSET", "")
    if scheme == "dos" and "-" in uuid and offset.isdigit():
        return f"mbr:{uuid.split('-', 1)[0]}", int(offset) * 512
    return None


def application(name: str, values: Mapping[str, Value]) -> Application:
    """One uninstall entry as libguestfs lists it: the key's name, and DisplayName,
    DisplayVersion, Publisher, InstallLocation, URLInfoAbout and Comments."""
    def text(key: str) -> str:
        return reg_string(values.get(key)) or ""

    return Application(
        name=name, version=text("DisplayVersion"), display_name=text("DisplayName"),
        publisher=text("Publisher"), install_path=text("InstallLocation"),
        url=text("URLInfoAbout"), description=text("Comments"))
