"""An rpm package database for inspection tests, made on the host with Debian's rpm:
tiny packages built with rpmbuild from generated specs, recorded with ``rpm -i
--justdb`` into a database of rpm's default (sqlite) format, as a real guest's."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import testimages


@dataclass(frozen=True)
class Package:
    """What a package says of itself (an empty url or epoch: none given)."""

    name: str
    version: str
    release: str
    summary: str
    description: str
    epoch: int = 0
    url: str = ""
    arch: str = "noarch"


def _spec(p: Package) -> str:
    lines = [f"Name: {p.name}", f"Version: {p.version}", f"Release: {p.release}",
             f"Summary: {p.summary}", "License: MIT", f"BuildArch: {p.arch}"]
    lines += [f"Epoch: {p.epoch}"] if p.epoch else []
    lines += [f"URL: {p.url}"] if p.url else []
    return "\n".join([*lines, "%description", p.description, "%files", ""])


def rpm_database(packages: list[Package], dbpath: str = "/var/lib/rpm") -> Mapping[str, bytes]:
    """The files of a database holding *packages*, by path under the guest's root, and
    the rpm configuration a real guest has beside it (``/usr/lib/rpm/rpmrc``, and
    ``macros`` naming the database's place and format: librpm run in the guest's root,
    as libguestfs runs it, reads those)."""
    with tempfile.TemporaryDirectory(prefix="rpmdb-") as tmp:
        work = Path(tmp)
        built = []
        for p in packages:
            spec = work / f"{p.name}.spec"
            spec.write_text(_spec(p))
            testimages.sh("rpmbuild", "-bb", "--quiet", "--define", f"_topdir {work}/top",
                          "--define", f"_rpmdir {work}/rpms", spec)
            built.append(work / "rpms" / p.arch /
                         f"{p.name}-{p.version}-{p.release}.{p.arch}.rpm")
        root = work / "root"
        (root / dbpath.lstrip("/")).mkdir(parents=True)
        testimages.sh("rpm", "--root", root, "--dbpath", dbpath, "--initdb")
        testimages.sh("rpm", "--root", root, "--dbpath", dbpath, "-i", "--justdb", "--nodeps",
                      "--noscripts", "--ignorearch", *built)
        db = root / dbpath.lstrip("/")
        files = {f"{dbpath.strip('/')}/{f.name}": f.read_bytes()
                 for f in sorted(db.iterdir()) if f.is_file() and not f.name.startswith(".")}
    files["usr/lib/rpm/rpmrc"] = Path("/usr/lib/rpm/rpmrc").read_bytes()
    files["usr/lib/rpm/macros"] = f"%_dbpath {dbpath}\n%_db_backend sqlite\n".encode()
    return files
