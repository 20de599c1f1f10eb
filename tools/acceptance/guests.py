"""Guests made by others, for acceptance checks: libguestfs 1.48's own phony guests
(made by its own scripts, from Debian's libguestfs source package) and a real Debian
12 (debootstrapped, minbase), fetched and made once and kept in
``~/.cache/guestslots/acceptance``.

Needs root (debootstrap, and the phony guests' scripts run guestfish), the machine's
Debian mirror (``tools/debfetch``), and libguestfs (guestfish and its Perl binding,
which the Fedora guests' script uses).  ``python3 tools/acceptance/guests.py`` makes
them and prints their paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

from guestslots.testing import testimages as images

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "guestslots" \
    / "acceptance"
TOOLS = Path(__file__).resolve().parents[1]
#: The phony guests inspect_vm.py can take (one disk each), and how each is made:
#: the script, and the LAYOUT the Fedora script takes.
PHONY = {
    "debian": ("make-debian-img.sh", ""),
    "ubuntu": ("make-ubuntu-img.sh", ""),
    "archlinux": ("make-archlinux-img.sh", ""),
    "coreos": ("make-coreos-img.sh", ""),
    "fedora": ("make-fedora-img.pl", "partitions"),
    "fedora-btrfs": ("make-fedora-img.pl", "btrfs"),
}


def _install(*packages: str) -> None:
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True,
        check=False).stdout != "install ok installed"]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        *missing], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def libguestfs_env() -> dict[str, str]:
    """The environment libguestfs runs in here: its direct backend, TCG forced where
    KVM does not run."""
    from guestslots.host.accel import expected_accel

    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
    if expected_accel(shutil.which("qemu-system-x86_64") or "") != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def phony_guests() -> dict[str, Path]:
    """libguestfs's phony guests by name (``debian``, ``fedora-btrfs``...)."""
    where = CACHE / "phony-guests"
    made = {name: where / f"{name}.img" for name in PHONY}
    if all(p.exists() for p in made.values()):
        return made
    _install("libguestfs-perl", "guestfish")
    source = CACHE / "libguestfs-source"
    if not list(source.glob("libguestfs_*.orig.tar.*")):
        subprocess.run([TOOLS / "debfetch", source, "", "source", "libguestfs"], check=True)
    tarball = next(source.glob("libguestfs_*.orig.tar.*"))
    unpacked = CACHE / "libguestfs-test-data"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        wanted = [m for m in tar.getmembers()
                  if "/test-data/phony-guests/" in m.name or "/test-data/binaries/" in m.name]
        tar.extractall(unpacked, members=wanted, filter="data")
    scripts = next(unpacked.glob("*/test-data/phony-guests"))
    where.mkdir(parents=True, exist_ok=True)
    for name, (script, layout) in PHONY.items():
        if made[name].exists():
            continue
        runner = ["perl"] if script.endswith(".pl") else ["bash"]
        subprocess.run([*runner, f"./{script}"], cwd=scripts, check=True, capture_output=True,
                       env={**libguestfs_env(), "SRCDIR": ".", "LAYOUT": layout})
        (scripts / f"{name}.img").rename(made[name])
    shutil.rmtree(unpacked)
    return made


def debian12() -> Path:
    """A real Debian 12 (debootstrap --variant=minbase from the machine's mirror) on
    an MBR disk: one ext4 root, an fstab naming it by UUID, hostname ``debian12``."""
    made = CACHE / "debian12.img"
    if made.exists():
        return made
    _install("debootstrap")
    mirror = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)",
         "Identifier: Packages"], capture_output=True, text=True, check=True).stdout.split()
    work = CACHE / "debian12.work"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, mirror[0]],
                   check=True, capture_output=True)
    fs_uuid = str(uuid.uuid4())
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("debian12\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (root / cache).glob("*.deb"):
            f.unlink()
    fs = work / "root.ext4"
    images.sh("truncate", "-s", "640M", fs)
    images.sh("mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-d", root, fs)
    images.partitioned(work / "debian12.img", "dos", fs)
    (work / "debian12.img").rename(made)
    shutil.rmtree(work)
    return made


if __name__ == "__main__":
    for name, path in {**phony_guests(), "debian12": debian12()}.items():
        print(f"{name}: {path}")
