"""Installed applications from a guest's package database, as libguestfs's
``inspect_list_applications2`` lists them (name, epoch, version, release, arch).
Pure parsers; the caller reads the files (bounded: :data:`MAX_DB_BYTES`).

dpkg (``/var/lib/dpkg/status``: installed packages only), apk
(``/lib/apk/db/installed``), pacman (``/var/lib/pacman/local/*/desc``), and rpm
(the agent reads the database with librpm; :func:`parse_rpm_lines` takes its answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: The most of a package database read (a hostile guest's may be endless).
MAX_DB_BYTES = 64 * 1024 * 1024
DPKG_STATUS = "/var/lib/dpkg/status"
APK_INSTALLED = "/lib/apk/db/installed"
PACMAN_LOCAL = "/var/lib/pacman/local"


@dataclass(frozen=True)
class Application:
    """One installed package."""

    name: str
    version: str
    release: str = ""
    epoch: int = 0
    arch: str = ""
    summary: str = ""
    description: str = ""
    #: Windows uninstall entries' DisplayName, Publisher, InstallLocation, URLInfoAbout.
    display_name: str = ""
    publisher: str = ""
    install_path: str = ""
    url: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "display_name": self.display_name, "epoch": self.epoch,
                "version": self.version, "release": self.release, "arch": self.arch,
                "install_path": self.install_path, "publisher": self.publisher,
                "url": self.url, "summary": self.summary, "description": self.description}


def _split_version(full: str, release_sep: str = "-") -> tuple[int, str, str]:
    """``[epoch:]version[-release]`` -> (epoch, version, release)."""
    epoch = 0
    if ":" in full:
        head, _, rest = full.partition(":")
        if head.isdigit():
            epoch, full = int(head), rest
    version, sep, release = full.rpartition(release_sep)
    if not sep:
        return epoch, full, ""
    return epoch, version, release


def _stanzas(text: str) -> list[dict[str, str]]:
    """RFC822-like stanzas separated by blank lines; a continuation line (indented)
    adds a line to the field before it (`` .`` is an empty line, as in dpkg)."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, ""
            continue
        if line[0] in " \t":
            if key:
                more = line.strip()
                cur[key] += "\n" + ("" if more == "." else more)
            continue
        key, sep, value = line.partition(":")
        key = key.strip() if sep else ""
        if sep:
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


def parse_dpkg_status(text: str) -> list[Application]:
    """The installed packages of a dpkg status file, by name: a Status with the word
    ``installed`` in it, as libguestfs reads it (its phony Debian writes ``installed
    ok``); libguestfs also counts ``not-installed``, which is not an application."""
    apps = []
    for s in _stanzas(text):
        if "Package" not in s or "installed" not in s.get("Status", "").split():
            continue
        epoch, version, release = _split_version(s.get("Version", ""))
        summary, _, description = s.get("Description", "").partition("\n")
        apps.append(Application(s["Package"], version, release, epoch,
                                s.get("Architecture", ""), summary, description))
    return sorted(apps, key=lambda a: (a.name, a.arch))


def parse_apk_installed(text: str) -> list[Application]:
    """The packages of apk's installed database (``P:``, ``V:``, ``A:`` lines)."""
    apps = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:])
        if "P" in fields:
            epoch, version, release = _split_version(fields.get("V", ""))
            apps.append(Application(fields["P"], version, release, epoch, fields.get("A", "")))
    return sorted(apps, key=lambda a: a.name)


def parse_pacman_desc(text: str) -> Application | None:
    """One package from a pacman ``desc`` file (``%NAME%``, ``%VERSION%``, ``%ARCH%``)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("%") and line.endswith("%"):
            key = line.strip("%")
        elif key and line and key not in fields:
            fields[key] = line
    if "NAME" not in fields:
        return None
    epoch, version, release = _split_version(fields.get("VERSION", ""))
    return Application(fields["NAME"], version, release, epoch, fields.get("ARCH", ""))


def parse_rpm_lines(text: str) -> list[Application]:
    """The agent's rpm answer (a JSON object per header, in database order) as
    libguestfs lists it: sorted by name, packages of one name in the reverse of the
    database's order (libguestfs collects them front first, then sorts stably)."""
    apps = []
    for line in text.splitlines():
        if not line.strip():
            continue
        h = json.loads(line)
        apps.append(Application(
            name=str(h["name"]), version=str(h["version"]), release=str(h["release"]),
            epoch=int(h["epoch"]), arch=str(h["arch"]), summary=str(h["summary"]),
            description=str(h["description"]), url=str(h["url"])))
    apps.reverse()
    return sorted(apps, key=lambda a: a.name)
