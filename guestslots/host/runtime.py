"""Where runtime records live, and writing them so that a reader never sees half of one.

``$XDG_RUNTIME_DIR/guestslots/<id>.json`` (else ``$TMPDIR/guestslots-runtime-<uid>``,
made private to the user).  Each write goes to a temporary file that is synced and
renamed over the record, under an ``flock`` on ``<id>.lock``, so concurrent writers
of one appliance take turns and a reader sees the old or the new record, whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..model.runtime import RuntimeRecord, RuntimeRecordError, SlotRecord


def runtime_dir() -> Path:
    """The directory of this user's runtime records (made, private, if missing)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    path = (Path(xdg) / "guestslots" if xdg
            else Path(tempfile.gettempdir()) / f"guestslots-runtime-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()  # in a shared /tmp: a symlink or another user's directory is a trap
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeRecordError(str(path), "is not a private directory of this user: "
                                 "refusing to use it")
    return path


def vm_alive(record: RuntimeRecord) -> bool:
    """Whether the record's QEMU still runs: its pid, with the record's work directory
    on its command line (not a process that reused the pid)."""
    if record.pid is None or not record.workdir:
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return os.fsencode(record.workdir) in cmdline


def image_identity(path: str) -> str:
    """An image file as a record keeps it: ``dev:inode:size:mtime_ns``."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def image_changed(slot: SlotRecord) -> str:
    """Why recorded slot *slot*'s image is not the one recorded ("" if it is): another
    file at the path, or (an image the guest could not write) changed contents.  A
    writable image is only checked to be the same file: the guest wrote to it.  A
    record written before records said which file it was (no ``identity``) is read
    as seed 001 reads an older file, its missing field empty: only checked to open
    (the caller warns that nothing more was)."""
    assert slot.path is not None
    try:
        now = image_identity(slot.path)
    except OSError as e:
        return f"it cannot be opened ({e.strerror})"
    if slot.identity is None:
        return ""
    if now.split(":")[:2] != slot.identity.split(":")[:2]:
        return "another file is at its path now"
    writable = slot.readonly is False and not slot.overlay
    if not writable and now != slot.identity:
        return "it changed since it was recorded (size or modification time)"
    return ""


def record_path(appliance_id: str) -> Path:
    return runtime_dir() / f"{appliance_id}.json"


@contextlib.contextmanager
def _locked(appliance_id: str) -> Iterator[None]:
    fd = os.open(runtime_dir() / f"{appliance_id}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write(record: RuntimeRecord) -> Path:
    """Replace *record*'s file with it: write, fsync, rename, under its lock."""
    path = record_path(record.id)
    with _locked(record.id):
        fd, tmp = tempfile.mkstemp(prefix=f".{record.id}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(record.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return path


def remove(appliance_id: str) -> None:
    """Remove an appliance's record (it stopped); a no-op if there is none."""
    with contextlib.suppress(FileNotFoundError):
        with _locked(appliance_id):
            record_path(appliance_id).unlink(missing_ok=True)
        (runtime_dir() / f"{appliance_id}.lock").unlink()


def read(path: Path) -> RuntimeRecord:
    """The record in *path*; :class:`RuntimeRecordError` if it cannot be used."""
    try:
        text = path.read_text()
    except OSError as e:
        raise RuntimeRecordError(str(path), e.strerror or str(e)) from None
    return RuntimeRecord.from_json(text, str(path))


def records() -> list[tuple[Path, RuntimeRecord | RuntimeRecordError]]:
    """Every record of this user, oldest first: the record, or why it is unusable."""
    out: list[tuple[Path, RuntimeRecord | RuntimeRecordError]] = []
    for path in sorted(runtime_dir().glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            out.append((path, read(path)))
        except RuntimeRecordError as e:
            out.append((path, e))
    return out
