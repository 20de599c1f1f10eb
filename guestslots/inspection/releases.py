"""Which Linux distribution a root filesystem holds, from its release files, in
libguestfs's order and vocabulary (``inspect_get_distro``, ``_product_name``,
``_major_version``, ``_minor_version``, ``_package_format``,
``_package_management``, ``_osinfo``).  Pure: the caller reads the files.

The files are tried in libguestfs's order, and the first that says something
wins: ``/etc/os-release``, ``/etc/lsb-release`` (a distribution it knows only),
then the distributions' own files.  Debian's os-release has only the major
version, so ``/etc/debian_version`` gives the product name and both numbers, as
libguestfs does.  Checked against libguestfs 1.48 on images holding each kind of
file (tests/unit/test_releases.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

#: The release files, in the order they are tried.
RELEASE_FILES = (
    "/etc/os-release", "/etc/lsb-release", "/etc/oracle-release", "/etc/centos-release",
    "/etc/altlinux-release", "/etc/redhat-release", "/etc/debian_version",
    "/etc/arch-release", "/etc/gentoo-release", "/etc/SuSE-release", "/etc/alpine-release",
)

#: os-release ``ID`` -> libguestfs's distro name.
OS_RELEASE_IDS = {
    "alpine": "alpinelinux", "altlinux": "altlinux", "arch": "archlinux",
    "centos": "centos", "debian": "debian", "fedora": "fedora", "gentoo": "gentoo",
    "kali": "kalilinux", "mageia": "mageia", "opensuse": "opensuse",
    "opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse", "ol": "oraclelinux",
    "rhel": "rhel", "rocky": "rocky", "sles": "sles", "sled": "sles", "ubuntu": "ubuntu",
    "void": "voidlinux", "almalinux": "alma", "coreos": "coreos",
}
#: lsb-release ``DISTRIB_ID`` -> distro.
LSB_IDS = {"Ubuntu": "ubuntu", "LinuxMint": "linuxmint", "Mandriva": "mandriva",
           "Mageia": "mageia", "CoreOS": "coreos"}

#: distro -> (package format, package management).
PACKAGES = {
    "debian": ("deb", "apt"), "ubuntu": ("deb", "apt"), "linuxmint": ("deb", "apt"),
    "kalilinux": ("deb", "apt"), "fedora": ("rpm", "dnf"), "rhel": ("rpm", "dnf"),
    "centos": ("rpm", "dnf"), "rocky": ("rpm", "dnf"), "alma": ("rpm", "dnf"),
    "oraclelinux": ("rpm", "dnf"), "redhat-based": ("rpm", "yum"),
    "opensuse": ("rpm", "zypper"), "sles": ("rpm", "zypper"), "mageia": ("rpm", "urpmi"),
    "mandriva": ("rpm", "urpmi"), "altlinux": ("rpm", "apt"), "archlinux": ("pacman", "pacman"),
    "alpinelinux": ("apk", "apk"), "gentoo": ("ebuild", "portage"),
    "voidlinux": ("xbps", "xbps"),
}

_REDHAT = (
    ("fedora", re.compile(r"Fedora release (\d+)")),
    ("rhel", re.compile(r"Red Hat.*release (\d+)(?:\.(\d+))?")),
    ("centos", re.compile(r"CentOS.*release (\d+)(?:\.(\d+))?")),
    ("scientificlinux", re.compile(r"Scientific Linux.*release (\d+)(?:\.(\d+))?")),
    ("oraclelinux", re.compile(r"Oracle Linux.*release (\d+)(?:\.(\d+))?")),
)
_MAJOR_MINOR = re.compile(r"(\d+)(?:\.(\d+))?")


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of an os-release (or lsb-release) file, shell quoting removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        out[key.strip()] = words[0] if words else ""
    return out


@dataclass(frozen=True)
class Release:
    """What the release files say, in libguestfs's terms."""

    distro: str = "unknown"
    product_name: str = "unknown"
    major: int = 0
    minor: int = 0

    @property
    def package_format(self) -> str:
        return PACKAGES.get(self.distro, ("unknown", "unknown"))[0]

    def package_management(self, has_dnf: bool) -> str:
        """The package manager (*has_dnf*: whether ``/usr/bin/dnf`` is there): Fedora 22
        and later with dnf installed, and RHEL-like 8 and later, use dnf; before, yum."""
        manager = PACKAGES.get(self.distro, ("unknown", "unknown"))[1]
        if manager == "dnf":
            newer = self.major >= 22 and has_dnf if self.distro == "fedora" else self.major >= 8
            return "dnf" if newer else "yum"
        return manager

    @property
    def osinfo(self) -> str:
        """The libosinfo short id, as libguestfs forms it (``debian12``, ``rhel7.9``,
        ``ubuntu22.04``, ``centos7.0``, ``sles15sp4``; ``unknown`` without a version)."""
        d, major, minor = self.distro, self.major, self.minor
        if d == "centos":
            if major >= 8:
                return f"centos{major}"
            if major in (6, 7):
                return f"centos{major}.{0 if major == 7 else minor}"
        elif d in ("circle", "rocky") and major >= 8:
            return f"{d}{major}"
        elif d == "debian" and major >= 4:
            return f"debian{major}"
        elif d in ("fedora", "mageia"):
            return f"{d}{major}"
        elif d == "sles":
            return f"sles{major}" if minor == 0 else f"sles{major}sp{minor}"
        elif d == "ubuntu":
            return f"ubuntu{major}.{minor:02}"
        elif d in ("archlinux", "gentoo", "voidlinux"):
            return d
        elif d == "altlinux":
            return f"alt{major}.{minor}" if major >= 8 else f"altlinux{major}.{minor}"
        if d != "unknown" and (major > 0 or minor > 0):
            return f"{d}{major}.{minor}"
        return "unknown"


def _numbers(text: str) -> tuple[int, int]:
    m = _MAJOR_MINOR.search(text)
    if not m:
        return 0, 0
    return int(m.group(1)), int(m.group(2) or 0)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def detect(files: Mapping[str, str]) -> Release:
    """The release that *files* (path -> content of the release files present) say."""
    for path in RELEASE_FILES:
        if path not in files:
            continue
        text = files[path]
        found = _parse(path, text, files)
        if found is not None:
            return found
    return Release()


def _parse(path: str, text: str, files: Mapping[str, str]) -> Release | None:
    if path == "/etc/os-release":
        fields = parse_os_release(text)
        if not fields:
            return None
        distro = OS_RELEASE_IDS.get(fields.get("ID", ""), "unknown")
        if distro == "debian" and "/etc/debian_version" in files:
            return _parse("/etc/debian_version", files["/etc/debian_version"], files)
        major, minor = _numbers(fields.get("VERSION_ID", ""))
        return Release(distro, fields.get("PRETTY_NAME") or "unknown", major, minor)
    if path == "/etc/lsb-release":
        fields = parse_os_release(text)
        lsb = LSB_IDS.get(fields.get("DISTRIB_ID", ""))
        if lsb is None:
            return None
        major, minor = _numbers(fields.get("DISTRIB_RELEASE", ""))
        return Release(lsb, fields.get("DISTRIB_DESCRIPTION") or "unknown", major, minor)
    line = _first_line(text)
    if path in ("/etc/oracle-release", "/etc/centos-release", "/etc/redhat-release"):
        for distro, pattern in _REDHAT:
            m = pattern.search(line)
            if m:
                return Release(distro, line, int(m.group(1)),
                               int(m.group(2) or 0) if m.lastindex and m.lastindex > 1 else 0)
        return Release("redhat-based", line, *_numbers(line)) if path.endswith(
            "redhat-release") else None
    if path == "/etc/SuSE-release":
        version = re.search(r"VERSION\s*=\s*(\S+)", text)
        major, minor = _numbers(version.group(1)) if version else _numbers(line)
        return Release("opensuse" if "openSUSE" in line else "sles", line, major, minor)
    if path == "/etc/arch-release":
        return Release("archlinux")
    distro = {"/etc/debian_version": "debian", "/etc/altlinux-release": "altlinux",
              "/etc/gentoo-release": "gentoo", "/etc/alpine-release": "alpinelinux"}[path]
    return Release(distro, line or "unknown", *_numbers(line))
