"""A Windows-like disk image for inspection tests, as libguestfs's own test suite makes
one (``make-windows-img.sh``): an MBR disk whose NTFS partition has a system root,
``cmd.exe`` and real registry hives that hivex reads (hivexregedit writes them).

Made on the host with ntfs-3g's ``mkntfs`` and a FUSE mount of the new filesystem's
file (userspace only, on a filesystem made here), and libhivex-bin's
``hivexregedit``.  Nothing of Windows is needed.
"""

from __future__ import annotations

import select
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from . import testimages

#: The disk identifier written at 0x1b8 of the MBR (what SYSTEM\\MountedDevices names).
DISK_ID = 0x12345678
#: The SOFTWARE hive's keys and values, as libguestfs's windows-software.reg has them.
SOFTWARE: dict[str, dict[str, object]] = {
    r"Microsoft\Windows NT\CurrentVersion": {
        "ProductName": "Microsoft Windows 7 Phony Edition", "CurrentVersion": "6.1",
        "InstallationType": "Client"},
    r"Microsoft\Windows\CurrentVersion\Uninstall\test1": {
        "DisplayName": "Test1 is not real software", "URLInfoAbout": "http://libguestfs.org/",
        "DisplayVersion": "1.2.3", "VersionMajor": 1, "VersionMinor": 2},
    r"Microsoft\Windows\CurrentVersion\Uninstall\test2": {
        "DisplayName": "Test2 is not real software", "URLInfoAbout": "http://libguestfs.org/",
        "DisplayVersion": "1.2.4",
        "Comments": "Longer description about phony test2 software"},
    r"Microsoft\Windows\CurrentVersion\Uninstall\test3": {
        "DisplayName": "Test3 is not real software", "DisplayVersion": "1.2.5",
        "Publisher": "Red Hat Inc.", "InstallLocation": r"C:\Program Files\Red Hat\test3"},
    r"WOW6432node\Microsoft\Windows\CurrentVersion\Uninstall\test4": {
        "DisplayName": "Test4 is not real software", "DisplayVersion": "1.2.6",
        "Publisher": "Red Hat Inc.",
        "Comments": "WOW6432node is where 32 bit emulated apps are installed on 64 bit Windows"},
}


def system_keys(hostname: str, partition_offset: int) -> dict[str, dict[str, object]]:
    """The SYSTEM hive: the current control set, its hostname, and C: mapped to the
    partition at *partition_offset* of the disk :data:`DISK_ID`."""
    return {
        "Select": {"Current": 1},
        r"ControlSet001\Services\Tcpip\Parameters": {"Hostname": hostname},
        "MountedDevices": {r"\DosDevices\C:": struct.pack("<IQ", DISK_ID, partition_offset)},
    }


def minimal_hive(root_name: str = "ROOT") -> bytes:
    """An empty registry hive (a root key and its security cell), to merge keys into:
    hivex cannot make one, and libguestfs's tests start from a hand-made one too."""
    page = 0x1000
    hbin = bytearray(page)
    hbin[0:4] = b"hbin"
    struct.pack_into("<II", hbin, 4, 0, page)
    descriptor = struct.pack("<BBHIIII", 1, 0, 0x8000, 0, 0, 0, 0)  # self-relative, empty
    sk_off = 0x20
    sk = struct.pack("<i2sHIIII", 0, b"sk", 0, sk_off, sk_off, 1, len(descriptor)) + descriptor
    nk_off = sk_off + ((len(sk) + 7) & ~7)
    name = root_name.encode("ascii")
    nk = struct.pack("<i2sHqIIIIIIIIIIHHIIIIHH", 0, b"nk", 0x2C, 0, 0, 0xFFFFFFFF, 0, 0,
                     0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, sk_off, 0xFFFFFFFF,
                     0, 0, 0, 0, 0, 0, len(name), 0) + name
    free_off = nk_off + ((len(nk) + 7) & ~7)
    for off, cell, end in ((sk_off, sk, nk_off), (nk_off, nk, free_off)):
        hbin[off:off + len(cell)] = cell
        struct.pack_into("<i", hbin, off, off - end)  # negative: a used cell
    struct.pack_into("<i", hbin, free_off, page - free_off)  # the rest is free
    head = bytearray(page)
    head[0:4] = b"regf"
    struct.pack_into("<IIqIIIIIII", head, 4, 1, 1, 0, 1, 3, 0, 1, nk_off, page, 1)
    checksum = 0
    for (word,) in struct.iter_unpack("<I", bytes(head[:0x1FC])):
        checksum ^= word
    struct.pack_into("<I", head, 0x1FC, checksum)
    return bytes(head + hbin)


def _reg_value(value: object) -> str:
    if isinstance(value, int):
        return f"dword:{value:08x}"
    if isinstance(value, bytes):
        return "hex(3):" + ",".join(f"{b:02x}" for b in value)
    return 'str(1):"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def hive(path: Path, prefix: str, keys: Mapping[str, Mapping[str, object]]) -> Path:
    """A registry hive at *path* holding *keys* (key path -> value name -> str, int
    (REG_DWORD) or bytes (REG_BINARY)), written by hivexregedit under *prefix*."""
    paths: list[str] = []
    for key in keys:
        parts = key.split("\\")
        for n in range(1, len(parts) + 1):
            if "\\".join(parts[:n]) not in paths:
                paths.append("\\".join(parts[:n]))
    text = ""
    for key in paths:
        text += f"[{prefix}\\{key}]\n"
        for name, value in keys.get(key, {}).items():
            quoted = name.replace("\\", "\\\\")
            text += f'"{quoted}"={_reg_value(value)}\n'
        text += "\n"
    path.write_bytes(minimal_hive())
    reg = path.with_suffix(".reg")
    reg.write_text(text)
    testimages.sh("hivexregedit", "--merge", path, "--prefix", prefix, reg)
    reg.unlink()
    return path


def pe_stub(machine: int = 0x14C) -> bytes:
    """The headers of a PE console executable for *machine* (0x14c: i386, 0x8664:
    x86-64): what ``file`` and inspection read an architecture from."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)
    pe32_plus = machine != 0x14C
    optional = bytearray(0xF0 if pe32_plus else 0xE0)
    struct.pack_into("<H", optional, 0, 0x20B if pe32_plus else 0x10B)
    struct.pack_into("<H", optional, 68, 3)  # subsystem: console
    coff = struct.pack("<HHIIIHH", machine, 0, 0, 0, 0, len(optional), 0x102)
    return bytes(dos) + b"PE\0\0" + coff + bytes(optional)


def ntfs(path: Path, files: Mapping[str, bytes | str], size_mib: int = 32,
         directories: tuple[str, ...] = ()) -> Path:
    """An NTFS filesystem image holding *files* and empty *directories*: mkntfs, then
    the files written through ntfs-3g (FUSE, in the foreground, waited for after the
    unmount so that everything is on disk)."""
    path.unlink(missing_ok=True)
    testimages.sh("truncate", "-s", f"{size_mib}M", path)
    testimages.sh("mkntfs", "-F", "-f", "-q", path)
    with tempfile.TemporaryDirectory(prefix="ntfs-") as mnt, \
            open("/proc/self/mountinfo") as table:
        daemon = subprocess.Popen(["ntfs-3g", "-o", "no_detach", str(path), mnt],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        try:
            poller = select.poll()
            poller.register(table, select.POLLPRI)
            while f" {mnt} " not in Path("/proc/self/mountinfo").read_text():
                if daemon.poll() is not None or not poller.poll(30_000):
                    raise RuntimeError(f"ntfs-3g {path}: not mounted on {mnt}")
                table.seek(0)
                table.read()
            for directory in directories:
                (Path(mnt) / directory).mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                target = Path(mnt) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode() if isinstance(content, str) else content)
        finally:
            testimages.sh("umount", mnt)
            daemon.wait(60)
    return path


def windows_image(path: Path, hostname: str = "WIN-PHONY", machine: int = 0x14C,
                  software: bytes | None = None, systemroot: str = "Windows",
                  boot_ini: str | None = None) -> Path:
    """The Windows-like disk: MBR (disk id :data:`DISK_ID`), a small NTFS partition (a
    boot loader's) and the system one, with Windows/System32/{Config,Drivers}, the
    SOFTWARE and SYSTEM hives, cmd.exe (PE for *machine*), ``/Program Files`` and
    ``/autoexec.bat``.  *software*: the SOFTWARE file's bytes instead of the hive;
    *systemroot*: the system root's directory; *boot_ini*: a ``/boot.ini``."""
    with tempfile.TemporaryDirectory(prefix="win-") as tmp:
        work = Path(tmp)
        boot = ntfs(work / "boot.img", {}, size_mib=8)
        system_offset = testimages.PART_START + boot.stat().st_size
        software_hive = hive(work / "software", r"HKEY_LOCAL_MACHINE\SOFTWARE", SOFTWARE)
        system = hive(work / "system", r"HKEY_LOCAL_MACHINE\SYSTEM",
                      system_keys(hostname, system_offset))
        files: dict[str, bytes | str] = {
            f"{systemroot}/System32/Config/SOFTWARE": software if software is not None
            else software_hive.read_bytes(),
            f"{systemroot}/System32/Config/SYSTEM": system.read_bytes(),
            f"{systemroot}/System32/cmd.exe": pe_stub(machine),
            "autoexec.bat": "",
        }
        if boot_ini is not None:
            files["boot.ini"] = boot_ini
        root = ntfs(work / "root.img", files,
                    directories=(f"{systemroot}/System32/Drivers", "Program Files"))
        testimages.partitioned(path, "dos", boot, root, label_id=f"0x{DISK_ID:08x}")
    return path


