"""The appliance image: kernel, initrd and root disk, built once per set of inputs.

supermin copies the host's installed packages (see ``appliance/packages``) into
an ext2 root; our agent, wire module and udev rule go in as a tarball.  The
result lives in a per-user cache directory named by a hash of every input, is
built under a lock (concurrent launches wait for one build), and is rebuilt
when an input changes: our files, the package list, supermin, the kernel, or
the host's installed packages.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import importlib.resources
import io
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import wire
from ..errors import ApplianceBuildError
from ..inspection.packages import parse_dpkg_status
from ..model.slots import MAX_SLOTS
from .cache import cache_root, last_used, mark_used, stale
from .proc import CommandError, run

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

#: The guest side (the top-level ``appliance/`` folder), shipped as package data.
APPLIANCE_PACKAGE = "guestslots._appliance"
SUPERMIN = "/usr/bin/supermin"
#: Bumped when how the appliance is put together changes (not only what from).
BUILD_FORMAT = 2
#: The appliance's Python: the host's Debian python3, which supermin copies in.
APPLIANCE_PYTHON = "/usr/bin/python3"
DPKG_STATUS = "/var/lib/dpkg/status"
_XZ_MAGIC = b"\xfd7zXZ\x00"

# Python recompiles its stdlib at every boot without these (+3 s under TCG):
# Debian builds .pyc files at install time, so no package lists them.
_HOSTFILES = (
    "/usr/lib/python3.*/__pycache__/*.pyc",
    "/usr/lib/python3.*/*/__pycache__/*.pyc",
    "/usr/lib/python3.*/*/*/__pycache__/*.pyc",
)
_EXCLUDES = (
    "-/usr/share/doc/*",
    "-/usr/share/man/*",
    "-/usr/share/info/*",
    "-/usr/share/locale/*",
    "-/lib/udev/rules.d/*",
    "-/usr/lib/udev/rules.d/*",
    "-/lib/udev/hwdb.d/*",
    "-/usr/lib/udev/hwdb.d/*",
)


@dataclass(frozen=True)
class ApplianceImage:
    """A built appliance: what QEMU boots."""

    directory: Path
    kernel: Path
    initrd: Path
    root: Path
    key: str


def host_kernel() -> tuple[Path, Path]:
    """The newest host kernel and its modules directory (what the appliance boots)."""
    candidates = []
    for path in glob.glob("/boot/vmlinuz-*"):
        version = path.removeprefix("/boot/vmlinuz-")
        if os.path.isdir(f"/lib/modules/{version}"):
            candidates.append((os.stat(path).st_mtime, path, version))
    if not candidates:
        raise ApplianceBuildError(
            "no kernel found in /boot with modules in /lib/modules (install linux-image-amd64; "
            "./tools/setup does)"
        )
    _, path, version = max(candidates)
    return Path(path), Path(f"/lib/modules/{version}")


def _lines(text: str) -> list[str]:
    """The non-empty lines of *text*, without ``#`` comments."""
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def guest_file(name: str) -> bytes:
    """The content of guest-side file *name*, which must be listed in the MANIFEST."""
    if name not in manifest():
        raise ApplianceBuildError(f"{name} is not in the appliance MANIFEST")
    return importlib.resources.files(APPLIANCE_PACKAGE).joinpath(*name.split("/")).read_bytes()


def manifest() -> list[str]:
    """The guest-side files the appliance is built from, as ``appliance/MANIFEST`` lists
    them: the appliance's cache key hashes exactly these."""
    text = (importlib.resources.files(APPLIANCE_PACKAGE) / "MANIFEST").read_text()
    return _lines(text)


def packages() -> list[str]:
    """The Debian packages the appliance is made of: every required one, and each
    optional one (``name?`` in ``appliance/packages``) that the host has installed."""
    try:
        with open(DPKG_STATUS, encoding="utf-8", errors="replace") as f:
            installed = {a.name for a in parse_dpkg_status(f.read())}
    except OSError:
        installed = set()
    chosen, left_out = choose_packages(_lines(guest_file("packages").decode()), installed)
    if left_out:
        log.warning("appliance built without %s (not installed on this host; ./tools/setup "
                    "installs them): the calls that need them say so", ", ".join(left_out))
    return chosen


def choose_packages(listed: list[str], installed: set[str]) -> tuple[list[str], list[str]]:
    """(packages to build from, optional ones left out): *listed* as
    ``appliance/packages`` has them (``name?``: optional), *installed* the host's."""
    chosen, left_out = [], []
    for entry in listed:
        name = entry.removesuffix("?")
        if entry.endswith("?") and name not in installed:
            left_out.append(name)
        else:
            chosen.append(name)
    return chosen, left_out


def udev_rules() -> str:
    """The udev rule file, with one slotK link rule per SCSI target."""
    template = guest_file("99-guestslots.rules.in").decode()
    lines = []
    for t in range(MAX_SLOTS):
        lines.append(
            f'ENV{{DEVTYPE}}=="disk", KERNELS=="*:0:{t}:0", SYMLINK+="disk/guestslots/slot{t}"'
        )
        lines.append(
            f'ENV{{DEVTYPE}}=="partition", KERNELS=="*:0:{t}:0", '
            f'SYMLINK+="disk/guestslots/slot{t}-part%n"'
        )
    return template.replace("@SLOT_RULES@", "\n".join(lines))


def _stat_key(path: str | Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def input_key() -> str:
    """Hash of everything the appliance is made from."""
    kernel, modules = host_kernel()
    h = hashlib.sha256()
    for name in manifest():
        h.update(name.encode() + b"\0" + guest_file(name) + b"\0")
    h.update(Path(wire.__file__).read_bytes())
    h.update(udev_rules().encode())
    for part in (
        f"build format {BUILD_FORMAT}",
        _stat_key(SUPERMIN),
        _stat_key(kernel),
        _stat_key(modules),
        _stat_key(DPKG_STATUS),
        repr(_HOSTFILES),
        repr(_EXCLUDES),
    ):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _agent_files() -> dict[str, bytes]:
    """The agent package and wire.py as they go into ``/usr/lib/guestslots``, with their
    bytecode compiled here by the appliance's own Python (``/usr/bin/python3``, copied
    from the host): compiling them at every cold boot costs seconds under TCG.  The
    bytecode is hash-based and unchecked, so the tarball's mtimes do not matter."""
    files = {name: guest_file(name) for name in manifest() if name.startswith("agent/")}
    files["wire.py"] = Path(wire.__file__).read_bytes()
    with tempfile.TemporaryDirectory(prefix="guestslots-agent-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(data)
        try:
            run([APPLIANCE_PYTHON, "-m", "compileall", "-q", "--invalidation-mode",
                 "unchecked-hash", tmp])
        except CommandError as e:  # the agent still runs, compiling at boot
            log.warning("the agent's bytecode was not precompiled: %s", e)
        for pyc in Path(tmp).rglob("*.pyc"):
            files[str(pyc.relative_to(tmp))] = pyc.read_bytes()
    return files


def _overlay_tarball(dest: Path) -> None:
    """Our files in the appliance: /init, the agent package and the wire module beside
    it, the udev rule, the LVM and mdadm configuration."""
    with tarfile.open(dest, "w:gz") as tar:
        for d in (
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "sysroot",
            "etc",
            "etc/udev",
            "etc/udev/rules.d",
            "usr",
            "usr/lib",
            "usr/lib/guestslots",
            "usr/lib/guestslots/agent",
            "usr/lib/guestslots/agent/__pycache__",
            "usr/lib/guestslots/__pycache__",
            wire.CONFIG_DIR.lstrip("/"),
            wire.LVM_SYSTEM_DIR.lstrip("/"),
        ):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add_file(tar, "init", guest_file("init"), 0o755)
        for name, data in _agent_files().items():
            _add_file(tar, f"usr/lib/guestslots/{name}", data)
        _add_file(tar, "etc/udev/rules.d/99-guestslots.rules", udev_rules().encode())
        _add_file(tar, f"{wire.LVM_SYSTEM_DIR.lstrip('/')}/lvm.conf", guest_file("lvm.conf"))
        _add_file(tar, wire.MDADM_CONF.lstrip("/"), guest_file("mdadm.conf"))
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add_file(tar, "etc/group", b"root:x:0:\n")
        _add_file(tar, "etc/fstab", b"")


def extract_vmlinux(bzimage: Path, dest: Path) -> Path:
    """Write the uncompressed kernel inside an XZ bzImage to *dest* (saves ~5 s of TCG boot).

    The ELF has a PVH note, so QEMU's ``-kernel`` boots it directly.  Falls
    back to copying the bzImage when it is not XZ-compressed.
    """
    data = bzimage.read_bytes()
    at = data.find(_XZ_MAGIC)
    if at >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(b"\x7fELF"):
            dest.write_bytes(elf)
            return dest
    shutil.copyfile(bzimage, dest)
    return dest


def _build(directory: Path, progress: Progress) -> None:
    kernel, modules = host_kernel()
    sm = directory / "supermin.d"
    env = dict(os.environ, SUPERMIN_KERNEL=str(kernel), SUPERMIN_MODULES=str(modules))
    progress(f"building the appliance from the host's packages (kernel {kernel.name})")
    try:
        run([SUPERMIN, "--prepare", "--use-installed", "-o", str(sm), *packages()], env=env)
        _overlay_tarball(sm / "zz-guestslots.tar.gz")
        (sm / "zz-hostfiles").write_text("\n".join(_HOSTFILES) + "\n")
        (sm / "zz-excludefiles").write_text("\n".join(_EXCLUDES) + "\n")
        run(
            [
                SUPERMIN,
                "--build",
                "--format",
                "ext2",
                "--host-cpu",
                "x86_64",
                "-o",
                str(directory / "out"),
                str(sm),
            ],
            env=env,
        )
    except CommandError as e:
        raise ApplianceBuildError(f"supermin failed: {e}") from None
    extract_vmlinux(kernel, directory / "vmlinux")
    (directory / "out" / "initrd").rename(directory / "initrd")
    (directory / "out" / "root").rename(directory / "root")
    shutil.rmtree(directory / "out")


def ensure_appliance(progress: Progress | None = None, rebuild: bool = False) -> ApplianceImage:
    """Return the cached appliance for the current inputs, building it first if needed."""
    say: Progress = progress or (lambda msg: log.info("%s", msg))
    root = cache_root()
    key = input_key()
    final = root / f"appliance-{key}"
    image = ApplianceImage(final, final / "vmlinux", final / "initrd", final / "root", key)
    if not rebuild and (final / "complete").exists():
        mark_used(final)
        return image
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "appliance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if not rebuild and (final / "complete").exists():
            return image
        started = time.monotonic()
        tmp = root / f"building-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _build(tmp, say)
            (tmp / "complete").write_text(key + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # Other appliances, and the saved states booted from them, go once no launch
        # has used them for a day (running VMs keep their open files): another
        # guestslots in use here (another checkout or virtual environment) keeps
        # its own, rather than each rebuilding after the other.
        entries = [*root.glob("appliance-*"), *root.glob("state-*")]
        for old in stale(((e, last_used(e)) for e in entries), final, time.time()):
            shutil.rmtree(old, ignore_errors=True)
        say(f"appliance built in {time.monotonic() - started:.1f} s: {final}")
    return image


def main() -> None:
    """``guestslots-build-appliance``: build (or rebuild) the cached appliance."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")
    args = parser.parse_args()
    image = ensure_appliance(print, rebuild=args.rebuild)
    print(image.directory)
