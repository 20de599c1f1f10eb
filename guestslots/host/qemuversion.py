"""Which QEMU a binary is: the version it reports (``-version``, the same QEMU reports
in ``query-version``), asked once per binary file and kept in the cache, so that a
restored launch pays a file read, not a process.

Saved states are keyed by it (a state one QEMU saved is never restored by another,
even behind the same path or a wrapper script), and the rules that differ between
QEMU versions are chosen by it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

from .cache import cache_root, file_id
from .proc import CommandError, run

_CACHE = "qemu-versions.json"


def reported_version(qemu: str) -> str:
    """The version *qemu* reports (``"7.2.15"``, ``"10.0.2"``); a binary that does not
    run or says nothing of the kind: a :class:`~guestslots.host.proc.CommandError`."""
    key = file_id(qemu)
    path = cache_root() / _CACHE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), str):
        return str(known[key])
    said = run([qemu, "-version"], timeout=30)
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", said)
    if not m:
        raise CommandError([qemu, "-version"], f"no QEMU version in {said[:200]!r}")
    known = {k: v for k, v in known.items() if _still_there(k)}
    known[key] = m.group(1)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(path)
    return m.group(1)


def _still_there(key: str) -> bool:
    """Whether the binary of a cached *key* still is that file."""
    path = key.rsplit(":", 2)[0]
    try:
        return file_id(path) == key
    except OSError:
        return False


def second_qemu() -> str:
    """Where ``tools/second-qemu`` unpacks the next Debian release's QEMU (a wrapper
    script), whether or not it is there."""
    return str(cache_root() / "qemu-backports" / "qemu-system-x86_64")


def known_qemus(default: str) -> list[tuple[str, str]]:
    """The QEMUs on this host that guestslots knows of, each with the version it
    reports or why it does not run: *default* (the one an Appliance takes), the
    system's, ``$GUESTSLOTS_QEMU``, and the second one of ``tools/second-qemu``."""
    found: list[tuple[str, str]] = []
    for path in dict.fromkeys([default, "/usr/bin/qemu-system-x86_64",
                               os.environ.get("GUESTSLOTS_QEMU", ""), second_qemu()]):
        if not path or not os.path.exists(path):
            continue
        try:
            found.append((path, reported_version(path)))
        except (OSError, CommandError) as e:
            found.append((path, f"does not run: {str(e).splitlines()[0]}"))
    return found
