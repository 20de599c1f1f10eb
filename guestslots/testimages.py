"""Small disk images for tests, examples and benchmarks, made with the host's tools.

Images made for checking usually carry ``/whoami`` naming themselves, so a
caller can tell which image is behind which device name.  Filesystems are
made without mounting anything on the host (``mkfs.ext4 -d``, an ``mkfs.xfs``
prototype file), placed into partitioned disks with ``sfdisk`` and byte
copies, and converted with ``qemu-img``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from .proc import run

MiB = 1024 * 1024
PART_START = MiB  # first partition at 1 MiB (sector 2048)


def sh(*cmd: str | Path, stdin: str | None = None) -> str:
    """Run a host tool (through :func:`guestslots.proc.run`), return its output."""
    return run([str(c) for c in cmd], input=stdin)


def _tree(
    root: Path, files: Mapping[str, bytes | str], symlinks: Mapping[str, str] | None = None
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
    return root


def ext4(
    path: Path,
    files: Mapping[str, bytes | str],
    size_mib: int = 16,
    label: str = "",
    symlinks: Mapping[str, str] | None = None,
) -> Path:
    """A whole-image ext4 filesystem holding *files* (and *symlinks*: name -> target)."""
    tree = _tree(path.with_suffix(".tree"), files, symlinks)
    path.unlink(missing_ok=True)
    sh("truncate", "-s", f"{size_mib}M", path)
    sh("mkfs.ext4", "-q", "-F", "-L", label, "-d", tree, path)
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


def partitioned(path: Path, table: str, fs_image: Path, extra_mib: int = 2) -> Path:
    """A disk with a *table* ("gpt" or "dos") partition table, *fs_image* as partition 1."""
    fs_size = fs_image.stat().st_size
    path.unlink(missing_ok=True)
    sh("truncate", "-s", str(PART_START + fs_size + extra_mib * MiB), path)
    sectors = fs_size // 512
    sh("sfdisk", "-q", path, stdin=f"label: {table}\nstart=2048, size={sectors}\n")
    with open(fs_image, "rb") as src, open(path, "r+b") as dst:
        offset = PART_START
        while chunk := src.read(MiB):
            if chunk.count(0) != len(chunk):  # keep the image sparse
                dst.seek(offset)
                dst.write(chunk)
            offset += len(chunk)
    return path


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
