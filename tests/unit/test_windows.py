"""The pure parts of Windows inspection: registry values as libguestfs reads them, its
osinfo rules, drive letters from MountedDevices, PE architectures, and the empty
hive the test images start from."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from guestslots.inspection import windows
from guestslots.inspection.binaries import pe_arch
from guestslots.testing.windowsimage import hive, minimal_hive, pe_stub


def sz(text: str) -> windows.Value:
    return windows.REG_SZ, (text + "\0").encode("utf-16-le")


def dword(number: int) -> windows.Value:
    return windows.REG_DWORD, struct.pack("<I", number)


def test_strings_and_dwords_by_type_only() -> None:
    assert windows.reg_string(sz("Windows 7")) == "Windows 7"
    assert windows.reg_string((windows.REG_EXPAND_SZ, "%a%\0junk".encode("utf-16-le"))) == "%a%"
    assert windows.reg_string(dword(3)) is None  # not a string: not read as one
    assert windows.reg_dword(dword(0xFFFFFFFF)) == 0xFFFFFFFF
    assert windows.reg_dword(sz("1")) is None
    assert windows.reg_dword((windows.REG_DWORD, b"\x01")) is None  # truncated


def test_version_from_the_numbers_before_current_version() -> None:
    assert windows.version_of({"CurrentVersion": sz("6.1")}) == (6, 1)
    assert windows.version_of({"CurrentVersion": sz("6.3"), "CurrentMajorVersionNumber":
                               dword(10), "CurrentMinorVersionNumber": dword(0)}) == (10, 0)
    assert windows.version_of({"CurrentMajorVersionNumber": dword(10),
                               "CurrentVersion": sz("6.3")}) == (6, 3)  # both or neither
    assert windows.version_of({"CurrentVersion": sz("six")}) == (0, 0)
    assert windows.version_of({}) == (0, 0)


def test_control_set_names() -> None:
    assert windows.control_set({"Current": dword(1)}) == "ControlSet001"
    assert windows.control_set({"Current": dword(12)}) == "ControlSet012"
    assert windows.control_set({"Current": sz("1")}) is None


@pytest.mark.parametrize(("major", "minor", "variant", "name", "build", "expected"), [
    (5, 1, "", "Microsoft Windows XP", "", "winxp"),
    (5, 2, "", "Windows Server 2003 R2", "", "win2k3r2"),
    (5, 2, "", "Windows Server 2003", "", "win2k3"),
    (6, 0, "Client", "", "", "winvista"),
    (6, 1, "Client", "Windows 7 Phony", "", "win7"),
    (6, 1, "Server", "", "", "win2k8r2"),
    (6, 3, "Client", "", "", "win8.1"),
    (6, 2, "Server Core", "", "", "win2k12"),
    (10, 0, "Client", "Windows 10 Pro", "19045", "win10"),
    (10, 0, "Client", "Windows 10 Pro", "22631", "win11"),
    (10, 0, "Client", "Windows 10 Pro", "", "unknown"),
    (10, 0, "Server", "Windows Server 2022 Standard", "20348", "win2k22"),
    (10, 0, "Server", "Windows Server 2016", "14393", "win2k16"),
    (4, 0, "", "NT", "", "unknown"),
])
def test_osinfo_as_libguestfs_derives_it(major: int, minor: int, variant: str, name: str,
                                         build: str, expected: str) -> None:
    assert windows.osinfo(major, minor, variant, name, build) == expected


def test_mounted_devices_mbr_and_gpt() -> None:
    mbr = (windows.REG_BINARY, struct.pack("<IQ", 0x12345678, 9 * 1024 * 1024))
    assert windows.mounted_device("\\DosDevices\\C:", mbr) == ("C", "mbr:12345678", 9437184)
    guid = bytes.fromhex("33221100554477668899aabbccddeeff")
    gpt = (windows.REG_BINARY, b"DMIO:ID:" + guid)
    assert windows.mounted_device("\\dosdevices\\d:", gpt) == (
        "D", "gpt:00112233-4455-6677-8899-aabbccddeeff", 0)
    assert windows.mounted_device("\\??\\Volume{x}", mbr) is None
    assert windows.mounted_device("\\DosDevices\\C:", (windows.REG_BINARY, b"short")) is None
    assert windows.mounted_device("\\DosDevices\\C:", sz("C")) is None


def test_partitions_answer_in_the_same_terms() -> None:
    assert windows.partition_key({"PART_ENTRY_SCHEME": "dos", "PART_ENTRY_UUID": "12345678-02",
                                  "PART_ENTRY_OFFSET": "18432"}) == ("mbr:12345678", 9437184)
    assert windows.partition_key({"PART_ENTRY_SCHEME": "gpt", "PART_ENTRY_UUID":
                                  "00112233-4455-6677-8899-AABBCCDDEEFF"}) == (
        "gpt:00112233-4455-6677-8899-aabbccddeeff", 0)
    assert windows.partition_key({"TYPE": "ntfs"}) is None


def test_an_uninstall_entry() -> None:
    app = windows.application("test3", {
        "DisplayName": sz("Test3"), "DisplayVersion": sz("1.2.5"), "Publisher": sz("Red Hat"),
        "InstallLocation": sz("C:\\x"), "URLInfoAbout": sz("http://x/"),
        "Comments": sz("about"), "VersionMajor": dword(1)})
    assert (app.name, app.display_name, app.version, app.publisher, app.install_path,
            app.url, app.description, app.epoch) == (
        "test3", "Test3", "1.2.5", "Red Hat", "C:\\x", "http://x/", "about", 0)


def test_pe_architectures() -> None:
    assert pe_arch(pe_stub(0x14C)) == "i386"
    assert pe_arch(pe_stub(0x8664)) == "x86_64"
    assert pe_arch(pe_stub(0xAA64)) == "aarch64"
    assert pe_arch(pe_stub(0x1234)) is None
    assert pe_arch(b"MZ" + bytes(62)) is None  # no PE header where e_lfanew points
    bad = bytearray(pe_stub())
    struct.pack_into("<I", bad, 0x3C, 1 << 30)  # e_lfanew far outside the head read
    assert pe_arch(bytes(bad)) is None
    assert pe_arch(b"\x7fELF") is None


@pytest.mark.skipif(shutil.which("file") is None, reason="file(1) is not installed")
def test_the_pe_stub_is_what_file_calls_a_windows_executable(tmp_path: Path) -> None:
    """libguestfs reads a Windows guest's arch with file(1): the stub must pass it."""
    (tmp_path / "cmd.exe").write_bytes(pe_stub(0x8664))
    said = subprocess.run(["file", "-b", tmp_path / "cmd.exe"], capture_output=True,
                          text=True, check=True).stdout
    assert said.startswith("PE32+ executable (console) x86-64")


def test_the_minimal_hive_has_a_valid_header() -> None:
    data = minimal_hive()
    assert len(data) == 8192 and data[:4] == b"regf" and data[4096:4100] == b"hbin"
    checksum = 0
    for (word,) in struct.iter_unpack("<I", data[:0x1FC]):
        checksum ^= word
    assert struct.unpack_from("<I", data, 0x1FC)[0] == checksum


@pytest.mark.skipif(shutil.which("hivexregedit") is None,
                    reason="hivexregedit (libhivex-bin, ./tools/setup) is not installed")
def test_hivex_takes_the_minimal_hive_and_merges_keys_into_it(tmp_path: Path) -> None:
    made = hive(tmp_path / "h", r"HKEY_LOCAL_MACHINE\SYSTEM",
                {r"Select": {"Current": 1}, r"A\B": {"Name": 'q"uo\\te'}})
    exported = subprocess.run(["hivexregedit", "--export", made, "\\"], capture_output=True,
                              text=True, check=True).stdout
    assert '[\\Select]\n"Current"=dword:00000001' in exported
    # exported as hex(1) (UTF-16LE) because of the quote and backslash it holds
    data = 'q"uo\\te\0'.encode("utf-16-le")
    assert '[\\A\\B]\n"Name"=hex(1):' + ",".join(f"{b:02x}" for b in data) in exported


def test_boot_ini_names_system_roots_in_its_os_section() -> None:
    text = ("[boot loader]\r\ntimeout=30\r\ndefault=multi(0)disk(0)rdisk(0)partition(1)\\X\r\n"
            "[operating systems]\r\n"
            'multi(0)disk(0)rdisk(0)partition(1)\\WinXP="Windows XP" /fastdetect\r\n'
            'scsi(0)disk(1)rdisk(0)partition(2)\\WINNT="Windows 2000"\r\n'
            "multi(0)garbage\r\n"
            'C:\\="Recovery Console"\r\n'
            'multi(0)disk(0)rdisk(0)partition(3)\\After="not in the section any more"\r\n')
    assert windows.boot_ini_systemroots(text) == ["/WinXP", "/WINNT"]
    assert windows.boot_ini_systemroots("no section\n") == []
