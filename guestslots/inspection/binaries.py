"""A binary's architecture from its ELF header, in libguestfs's words
(``inspect_get_arch``, ``file_architecture``).  Pure."""

from __future__ import annotations

import struct

#: The system binaries libguestfs reads the architecture from, in its order.
ARCH_BINARIES = ("/bin/bash", "/bin/ls", "/bin/echo", "/bin/rm", "/bin/sh")

#: ELF e_machine -> libguestfs's name (64-bit class where it matters).
_MACHINES = {
    (3, 1): "i386", (62, 2): "x86_64", (183, 2): "aarch64", (40, 1): "arm",
    (20, 1): "ppc", (21, 2): "ppc64", (22, 2): "s390x", (22, 1): "s390",
    (243, 2): "riscv64", (243, 1): "riscv32", (8, 1): "mips", (8, 2): "mips64",
    (2, 2): "sparc64", (2, 1): "sparc", (50, 2): "ia64",
}


def elf_arch(header: bytes) -> str | None:
    """The architecture of the ELF binary starting with *header* (its first 20 bytes
    are enough), or None if it is not ELF or of a machine not known here."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    elf_class, data = header[4], header[5]
    if data not in (1, 2) or elf_class not in (1, 2):
        return None
    (machine,) = struct.unpack_from("<H" if data == 1 else ">H", header, 18)
    arch = _MACHINES.get((machine, elf_class))
    if arch in ("ppc64", "mips64", "mips") and data == 1:
        arch += "le"
    return arch


#: PE/COFF Machine -> libguestfs's name (what ``file`` reports, as libguestfs maps it).
_PE_MACHINES = {0x14C: "i386", 0x8664: "x86_64", 0xAA64: "aarch64"}

#: Where a PE header may start at most (``e_lfanew``), for reading a bounded head.
PE_HEAD_BYTES = 4096


def pe_arch(head: bytes) -> str | None:
    """The architecture of the PE executable starting with *head* (its first
    :data:`PE_HEAD_BYTES`), or None if it is not PE or of a machine not known here."""
    if len(head) < 64 or head[:2] != b"MZ":
        return None
    (lfanew,) = struct.unpack_from("<I", head, 0x3C)
    if lfanew + 6 > len(head) or head[lfanew:lfanew + 4] != b"PE\0\0":
        return None
    (machine,) = struct.unpack_from("<H", head, lfanew + 4)
    return _PE_MACHINES.get(machine)
