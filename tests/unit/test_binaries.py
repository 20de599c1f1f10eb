"""Architectures from ELF headers."""

from __future__ import annotations

import struct
import sys

from guestslots.inspection.binaries import elf_arch


def _header(elf_class: int, data: int, machine: int) -> bytes:
    order = "<" if data == 1 else ">"
    return b"\x7fELF" + bytes([elf_class, data, 1]) + bytes(9) + struct.pack(
        order + "HH", 2, machine)


def test_this_pythons_own_binary_is_read_right() -> None:
    with open(sys.executable, "rb") as f:
        assert elf_arch(f.read(64)) == "x86_64"


def test_machines_classes_and_byte_orders() -> None:
    assert elf_arch(_header(1, 1, 3)) == "i386"
    assert elf_arch(_header(2, 1, 183)) == "aarch64"
    assert elf_arch(_header(2, 2, 21)) == "ppc64"
    assert elf_arch(_header(2, 1, 21)) == "ppc64le"
    assert elf_arch(_header(2, 2, 22)) == "s390x"


def test_not_elf_or_truncated() -> None:
    assert elf_arch(b"#!/bin/sh\n" + bytes(20)) is None
    assert elf_arch(b"\x7fELF\x02\x01") is None
    assert elf_arch(_header(2, 1, 9999)) is None
