"""Small disk images for tests, examples and benchmarks, made with the host's tools.

Images made for checking usually carry ``/whoami`` naming themselves, so a
caller can tell which image is behind which device name.  Filesystems are
made without mounting anything on the host (``mkfs.ext4 -d``, an ``mkfs.xfs``
prototype file), placed into partitioned disks with ``sfdisk`` and byte
copies, and converted with ``qemu-img``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..host.proc import run

MiB = 1024 * 1024
PART_START = MiB  # first partition at 1 MiB (sector 2048)


def sh(*cmd: str | Path, stdin: str | None = None) -> str:
    """Run a host tool (through :func:`guestslots.proc.run`), return its output."""
    return run([str(c) for c in cmd], input=stdin)


def _tree(
    root: Path,
    files: Mapping[str, bytes | str],
    symlinks: Mapping[str, str] | None = None,
    nodes: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name, content in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    for name, target in (symlinks or {}).items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    for name, (mode, device) in (nodes or {}).items():  # mknod needs root on the host
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(path, mode, device)
    return root


def ext4(
    path: Path,
    files: Mapping[str, bytes | str],
    size_mib: int = 16,
    label: str = "",
    symlinks: Mapping[str, str] | None = None,
    uuid: str | None = None,
    nodes: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """A whole-image ext4 filesystem holding *files* (and *symlinks*: name -> target;
    *nodes*: name -> (mode, device) of device nodes and FIFOs, as ``os.mknod`` takes)."""
    tree = _tree(path.with_suffix(".tree"), files, symlinks, nodes)
    path.unlink(missing_ok=True)
    sh("truncate", "-s", f"{size_mib}M", path)
    sh("mkfs.ext4", "-q", "-F", "-L", label, *(["-U", uuid] if uuid else []), "-d", tree, path)
    shutil.rmtree(tree)
    return path


def xfs(path: Path, files: Mapping[str, str], size_mib: int = 300) -> Path:
    """A whole-image xfs filesystem holding *files* (flat names), via a prototype file."""
    srcdir = _tree(path.with_suffix(".tree"), files)
    lines = ["/dev/null", "0 0", "d--755 0 0"]
    for name in files:
        lines.append(f"{name.lstrip('/')} ---644 0 0 {srcdir / name.lstrip('/')}")
    lines += ["$", ""]
    proto = path.with_suffix(".proto")
    proto.write_text("\n".join(lines))
    path.unlink(missing_ok=True)
    sh("truncate", "-s", f"{size_mib}M", path)
    sh("mkfs.xfs", "-q", "-f", "-p", proto, path)
    shutil.rmtree(srcdir)
    proto.unlink()
    return path


def partitioned(path: Path, table: str, *fs_images: Path, extra_mib: int = 2,
                label_id: str = "") -> Path:
    """A disk with a *table* ("gpt" or "dos") partition table, *fs_images* as partitions 1...

    Each filesystem image size must be a multiple of 1 MiB.  *label_id*: the disk
    identifier (``0x12345678`` for dos, a GUID for gpt), random if not given.
    """
    starts = []
    offset = PART_START
    for fs in fs_images:
        starts.append(offset)
        offset += fs.stat().st_size
    path.unlink(missing_ok=True)
    sh("truncate", "-s", str(offset + extra_mib * MiB), path)
    script = f"label: {table}\n" + (f"label-id: {label_id}\n" if label_id else "") + "".join(
        f"start={start // 512}, size={fs.stat().st_size // 512}\n"
        for start, fs in zip(starts, fs_images, strict=True))
    sh("sfdisk", "-q", path, stdin=script)
    for start, fs in zip(starts, fs_images, strict=True):
        _copy_sparse(fs, path, start)
    return path


def _copy_sparse(src_path: Path, dst_path: Path, offset: int) -> None:
    """Copy *src_path* into *dst_path* at *offset*, skipping zero blocks (stays sparse)."""
    with open(src_path, "rb") as src, open(dst_path, "r+b") as dst:
        while chunk := src.read(MiB):
            if chunk.count(0) != len(chunk):
                dst.seek(offset)
                dst.write(chunk)
            offset += len(chunk)


def qcow2(raw: Path, dest: Path) -> Path:
    dest.unlink(missing_ok=True)
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, dest)
    return dest


def named_image(directory: Path, name: str, table: str | None, fmt: str = "raw") -> Path:
    """An ext4 image with ``/whoami`` = *name*: on partition 1 of a *table* ("gpt"/"dos")
    disk, or on the whole disk (*table* None); raw or qcow2 (*fmt*)."""
    fs = ext4(directory / f"{name}.fs", {"whoami": f"{name}\n"}, label=name[:16])
    if table is None:
        raw = fs
    else:
        raw = partitioned(directory / f"{name}.raw", table, fs)
        fs.unlink()
    if fmt == "raw":
        return raw
    out = qcow2(raw, directory / f"{name}.qcow2")
    raw.unlink()
    return out


def linux_image(directory: Path, name: str, hostname: str = "testhost") -> Path:
    """A GPT disk that looks like a small Linux: root on partition 1 (os-release,
    hostname, an fstab mounting partition 2 on /boot by UUID), /boot on partition 2."""
    boot_uuid = "0b0e7e57-1111-4222-8333-944455556666"
    boot = ext4(directory / f"{name}-boot.fs", {"vmlinuz-test": "not really a kernel\n"},
                size_mib=8, label="boot", uuid=boot_uuid)
    root = ext4(
        directory / f"{name}-root.fs",
        {
            "etc/os-release": 'NAME="Testix"\nVERSION_ID="4.2"\nID=testix\n'
                              'PRETTY_NAME="Testix 4.2 (Sardine)"\n',
            "etc/hostname": f"{hostname}\n",
            "etc/fstab": f"# test fstab\nLABEL=root / ext4 defaults 0 1\n"
                         f"UUID={boot_uuid} /boot ext4 defaults 0 2\n"
                         "proc /proc proc defaults 0 0\n/dev/sdz9 none swap sw 0 0\n",
            "boot/.keep": "",
            "whoami": f"{name}\n",
        },
        size_mib=24, label="root")
    disk = partitioned(directory / f"{name}.img", "gpt", root, boot)
    root.unlink()
    boot.unlink()
    return disk


def write_into_partition(disk: Path, partition: int, fs_image: Path) -> None:
    """Copy *fs_image* into partition *partition* of *disk* (where sfdisk says it starts)."""
    table = json.loads(sh("sfdisk", "-J", disk))["partitiontable"]
    sector = table.get("sectorsize", 512)
    for part in table["partitions"]:
        if part["node"] == f"{disk}{partition}":  # sfdisk names partitions path + number
            _copy_sparse(fs_image, disk, part["start"] * sector)
            return
    raise ValueError(f"{disk} has no partition {partition}")


def mbr_with_logicals(directory: Path, name: str) -> Path:
    """MBR: ext4 on 1, an extended partition 2 holding logical 5 (ext4) and 6 (swap)."""
    disk = directory / f"{name}.img"
    disk.unlink(missing_ok=True)
    sh("truncate", "-s", "48M", disk)
    sh("sfdisk", "-q", disk, stdin="label: dos\nsize=12M, type=83\ntype=5\n"
                                   "size=12M, type=83\nsize=8M, type=82\n")
    for part, who in ((1, f"{name}-p1"), (5, f"{name}-p5")):
        fs = ext4(directory / f"{name}-{part}.fs", {"whoami": f"{who}\n"}, size_mib=8)
        write_into_partition(disk, part, fs)
        fs.unlink()
    swap = directory / f"{name}-swap.fs"
    sh("truncate", "-s", "4M", swap)
    sh("mkswap", "-q", swap)
    write_into_partition(disk, 6, swap)
    swap.unlink()
    return disk


def gpt_many(directory: Path, name: str, count: int = 33) -> Path:
    """GPT with *count* 2 MiB partitions; the first holds an ext4 with /whoami."""
    disk = directory / f"{name}.img"
    disk.unlink(missing_ok=True)
    sh("truncate", "-s", f"{2 * count + 4}M", disk)
    sh("sfdisk", "-q", disk, stdin="label: gpt\n" + "size=2M\n" * count)
    fs = ext4(directory / f"{name}-1.fs", {"whoami": f"{name}-p1\n"}, size_mib=2)
    write_into_partition(disk, 1, fs)
    fs.unlink()
    return disk


def btrfs(path: Path, files: Mapping[str, str]) -> Path:
    """A whole-image btrfs holding *files*."""
    tree = _tree(path.with_suffix(".tree"), files)
    path.unlink(missing_ok=True)
    sh("truncate", "-s", "128M", path)
    sh("mkfs.btrfs", "-q", "-f", "--rootdir", tree, path)
    shutil.rmtree(tree)
    return path


BOMB_CLUSTER = 2 * MiB  # each L2 table then maps 512 GiB of the guest's disk


def cluster_bomb(dest: Path, at_least: int) -> Path:
    """A hostile qcow2: a few MiB on the host whose every guest cluster (2 MiB) maps to
    one host cluster of 0x5a bytes, so the guest sees *at_least* bytes (rounded up to
    512 GiB) of data, and a copy of it would write them all out.  Made by rewriting
    the L2 tables of an image qemu-io allocated one cluster per table in."""
    entries = BOMB_CLUSTER // 8
    span = entries * BOMB_CLUSTER
    tables = max(1, -(-at_least // span))
    dest.unlink(missing_ok=True)
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={BOMB_CLUSTER}",
       dest, str(tables * span))
    writes: list[str] = []
    for table in range(tables):
        writes += ["-c", f"write -q -P 0x5a {table * span} {BOMB_CLUSTER}"]
    sh("qemu-io", "-f", "qcow2", *writes, dest)
    with open(dest, "r+b") as f:
        header = f.read(56)
        l1_size = int.from_bytes(header[36:40], "big")
        l1_offset = int.from_bytes(header[40:48], "big")
        f.seek(l1_offset)
        l1 = [int.from_bytes(f.read(8), "big") & 0x00FFFFFFFFFFFE00 for _ in range(l1_size)]
        f.seek(l1[0])
        mapped = f.read(8)  # guest cluster 0's entry: the one data cluster, for all
        for l2 in l1[:tables]:
            f.seek(l2)
            f.write(mapped * entries)
    return dest


def png(width: int, height: int) -> bytes:
    """A small grey PNG of *width* x *height* pixels (an OS's logo in a test image)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))  # filter 0, grey
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
