"""A slot's source as the caller names it (a file or a URL) made a checked drive.

A remote source is probed before QEMU plugs it, as a file is: ``qemu-img`` opens
it as raw data (no format probed, nothing its header names opened), reads its
size and first bytes, and the same header checks as a file's apply.  Errors name
the source as :func:`guestslots.model.sources.shown` shows it, never its query or
a command line.
"""

from __future__ import annotations

import json
import os
import tempfile

from ..errors import DriveError
from ..model import sources
from ..model.drives import FORMATS, HEAD_SIZE, DriveSpec, check_head, check_label, qcow2_size
from ..model.drives import make_drive as make_file_drive
from .proc import CommandError, run

#: How long probing a remote source may take before it is refused.
PROBE_TIMEOUT = 30.0


def make_drive(
    path: str | os.PathLike[str],
    format: str | None = None,
    readonly: bool = True,
    label: str | None = None,
    overlay: bool = False,
    sslverify: bool = True,
    timeout: float = PROBE_TIMEOUT,
) -> DriveSpec:
    """Check a file or URL source and return its :class:`DriveSpec`, or raise
    :class:`DriveError` (see :func:`guestslots.model.drives.make_drive` for files and
    :mod:`guestslots.model.sources` for URLs).  A remote source is opened once here,
    read-only, to check that it answers and what its first bytes are."""
    text = os.fspath(path)
    if not sources.is_url(text):
        if not sslverify:
            raise DriveError(text, "sslverify=False is for https:// sources only")
        return make_file_drive(text, format, readonly, label, overlay)
    if label is not None:
        check_label(label)
    try:
        remote = sources.parse(text, sslverify)
    except sources.SourceError as e:
        raise DriveError(text, str(e)) from None
    if format is not None and format not in FORMATS:
        raise DriveError(text, f"format {format!r} is not supported (use one of {FORMATS})")
    if overlay:
        readonly = False  # the guest writes to a throwaway overlay; the source is only read
    elif not readonly and not remote.writable_protocol:
        raise DriveError(text, f"a {remote.protocol}:// source is read-only: add it "
                         "read-only, or with overlay=True for writes thrown away")
    head, size = probe(remote, text, timeout)
    fmt = check_head(text, format, head)
    if fmt == "qcow2":
        size = qcow2_size(head) or size
    if size == 0:
        raise DriveError(text, "is empty (0 bytes)")
    return DriveSpec(text, fmt, readonly, label, overlay, remote=remote, size=size)


#: The id of an ``nbds`` source's TLS object in ``qemu-img`` commands.
TLS_ID = "tls0"


def qemu_img_objects(remote: sources.Remote) -> list[str]:
    """The ``--object`` arguments a ``qemu-img`` command needs to open *remote* (an
    ``nbds`` source's TLS credentials, as :data:`TLS_ID`; none for the others)."""
    return ["--object", json.dumps(remote.tls_object(TLS_ID))] if remote.tls else []


def qemu_img_spec(remote: sources.Remote) -> tuple[list[str], str]:
    """The ``--object`` arguments and the ``json:`` name that make ``qemu-img`` open
    *remote* as raw data, read-only."""
    file = remote.qemu_options(tls_creds=TLS_ID if remote.tls else None)
    return qemu_img_objects(remote), "json:" + json.dumps({"driver": "raw", "file": file})


def probe(remote: sources.Remote, url: str, timeout: float = PROBE_TIMEOUT) -> tuple[bytes, int]:
    """Open *remote* read-only as raw data: its first :data:`HEAD_SIZE` bytes (or
    fewer, for a smaller disk) and its size in bytes."""
    objects, spec = qemu_img_spec(remote)
    try:
        info = json.loads(run(["qemu-img", "info", "--output=json", *objects, spec],
                              timeout=timeout))
        size = int(info["virtual-size"])
        with tempfile.TemporaryDirectory(prefix="guestslots-probe-") as tmp:
            head_file = os.path.join(tmp, "head")
            count = min(HEAD_SIZE, size)
            if count:
                run(["qemu-img", "dd", *objects, "-f", "raw", "-O", "raw", f"bs={count}",
                     "count=1", f"if={spec}", f"of={head_file}"], timeout=timeout)
                with open(head_file, "rb") as f:
                    head = f.read()
            else:
                head = b""
    except CommandError as e:
        raise DriveError(url, f"cannot be opened: {_said(e, spec)}") from None
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise DriveError(url, f"cannot be probed: {e}") from None
    return head, size


def _said(error: CommandError, spec: str) -> str:
    """What qemu-img said, its last line, without the ``json:`` name (which holds the
    URL's query) or the command line."""
    if error.reason.startswith("timed out"):
        return f"no answer in {error.reason.removeprefix('timed out after ')}"
    lines = [line for line in error.output.strip().splitlines() if line.strip()]
    if not lines:
        return error.reason
    said = " ".join(line.strip() for line in lines[-2:]) if len(lines) > 1 else lines[-1]
    said = said.replace(f"'{spec}'", "it").replace(spec, "it")
    said = said.removeprefix("qemu-img: ").replace("qemu-img: ", "")
    return said.removeprefix("Could not open it: ")
