"""Where an operating system keeps its logo, as libguestfs's ``inspect_get_icon``
looks for it (a guest's favicon first, then the distribution's own PNG), and the
checks a PNG must pass (pure, but for :func:`find_icon`'s reads)."""

from __future__ import annotations

import struct
from collections.abc import Callable

#: Each distribution's logos, in order, and the largest file taken (0: four bytes
#: per pixel), as libguestfs 1.48 has them.
DISTRO_ICONS: dict[str, tuple[tuple[str, ...], int]] = {
    "fedora": (("/usr/share/icons/hicolor/96x96/apps/fedora-logo-icon.png",), 0),
    "debian": (("/usr/share/pixmaps/debian-logo.png",), 2048),
    "ubuntu": (("/usr/share/icons/gnome/24x24/places/ubuntu-logo.png",
                "/usr/share/help/C/ubuntu-help/figures/ubuntu-logo.png"), 2048),
    "mageia": (("/usr/share/icons/mageia.png",), 10240),
    "opensuse": (("/usr/share/icons/hicolor/48x48/apps/distributor.png",
                  "/usr/share/icons/hicolor/24x24/apps/distributor.png"), 10240),
    "voidlinux": (("/usr/share/void-artwork/void-logo.png",), 20480),
    "altlinux": (("/usr/share/icons/hicolor/48x48/apps/altlinux.png",), 20480),
    "gentoo": (("/usr/share/icons/gentoo/48x48/gentoo.png",), 10240),
    "openmandriva": (("/usr/share/icons/large/mandriva.png",
                      "/usr/share/icons/mandriva.png"), 10240),
}
for _clone in ("suse-based", "sles"):
    DISTRO_ICONS[_clone] = DISTRO_ICONS["opensuse"]
_RHEL = ("rhel", "redhat-based", "centos", "rocky", "scientificlinux", "oraclelinux")
#: Low-quality logos, left out when high quality is asked for.
_LOW_QUALITY = ("ubuntu",)
FAVICON = "/etc/favicon.png"
_PNG = b"\x89PNG\r\n\x1a\n"


def png_size(head: bytes) -> tuple[int, int] | None:
    """The width and height in a PNG's IHDR chunk (its first 24 bytes), or None."""
    if len(head) < 24 or not head.startswith(_PNG) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def candidates(type: str, distro: str, major: int, favicon: bool, highquality: bool
               ) -> list[tuple[str, int]]:
    """The (path, largest size) to try, in order, for an OS of *type* and *distro*."""
    found: list[tuple[str, int]] = []
    if favicon and not highquality:
        found.append((FAVICON, 0))
    if type not in ("linux", "hurd"):
        return found  # Windows' icons live in explorer.exe's resources: not read here
    if distro in _RHEL:
        shadowman = ("/usr/share/pixmaps/redhat/shadowman-transparent.png" if major < 7
                     else "/usr/share/icons/hicolor/96x96/apps/system-logo-icon.png")
        return [*found, (shadowman, 102400)]
    if distro in DISTRO_ICONS and not (highquality and distro in _LOW_QUALITY):
        paths, limit = DISTRO_ICONS[distro]
        found += [(path, limit) for path in paths]
    return found


def find_icon(tries: list[tuple[str, int]], is_file: Callable[[str], bool],
              size: Callable[[str], int], read: Callable[[str, int], bytes]) -> bytes:
    """The first of *tries* that is a regular file (symlinks followed) holding a
    PNG of 16 to 1024 pixels a side, no larger than its limit; ``b""`` if none."""
    for path, limit in tries:
        if not is_file(path):
            continue
        head = read(path, 24)
        geometry = png_size(head)
        if geometry is None or not all(16 <= side <= 1024 for side in geometry):
            continue
        largest = limit or 4 * geometry[0] * geometry[1]
        length = size(path)
        if length > largest:
            continue
        return read(path, length)
    return b""
