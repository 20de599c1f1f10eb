"""What a drive is, and whether an image may become one.

A disk image is hostile input.  The format is never guessed: a raw image whose
first bytes pose as qcow2 could otherwise make QEMU open a backing file of the
image's choosing.  ``format=None`` means raw, and an image that *looks* like
another format is refused until the caller names the format.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass

from ..errors import DriveError, LabelError
from .sources import Remote

#: The path that reserves an empty slot (libguestfs's convention).
NULL_DRIVE = "/dev/null"

#: Formats a slot accepts.  Others (vmdk, vhdx...) can name further host files
#: in their metadata and are refused rather than half-trusted.
FORMATS = ("raw", "qcow2")

LABEL_MAX = 20
# fullmatch, never match with "$": "$" also matches before a trailing newline
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESERVED_LABEL_RE = re.compile(r"slot[0-9]+")

# First bytes of image formats a raw image must not be mistaken for.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"QFI\xfb", "qcow2"),
    (b"QEVM", "qcow (v1)"),
    (b"QED\x00", "qed"),
    (b"KDMV", "vmdk"),
    (b"# Disk DescriptorFile", "vmdk"),
    (b"vhdxfile", "vhdx"),
    (b"conectix", "vpc"),
    (b"<<< Oracle VM VirtualBox Disk Image >>>", "vdi"),
    (b"<<< innotek VirtualBox Disk Image >>>", "vdi"),
    (b"<<< Sun VirtualBox Disk Image >>>", "vdi"),
)


def check_label(label: str) -> str:
    """Return *label* if it is a valid slot label, else raise :class:`LabelError`.

    Labels become the SCSI serial and the link ``/dev/disk/guestslots/<label>``:
    1-20 characters, a letter first, then letters, digits or ``_``; ``slotN``
    is reserved for the per-slot links.
    """
    if not label or len(label) > LABEL_MAX:
        raise LabelError(f"label {label!r}: must be 1-{LABEL_MAX} characters long")
    if not _LABEL_RE.fullmatch(label):
        raise LabelError(
            f"label {label!r}: must start with a letter and contain only letters, digits and _"
        )
    if _RESERVED_LABEL_RE.fullmatch(label):
        raise LabelError(f"label {label!r}: names of the form slotN are reserved")
    return label


#: How much of an image :func:`make_drive` reads to check it.
HEAD_SIZE = 512
# qcow2 header fields (big-endian): version at 4, backing_file_offset at 8,
# incompatible_features at 72 (version 3 only).
_QCOW2_VERSION = struct.Struct(">I")
_QCOW2_BACKING_OFFSET = struct.Struct(">Q")
_QCOW2_INCOMPAT = struct.Struct(">Q")
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2


def qcow2_named_files(head: bytes) -> list[str]:
    """What the qcow2 header *head* says QEMU would open besides the image itself.

    An external data file (incompatible feature bit 2) is opened by QEMU from
    the name in the header, read-write when the node is writable: a hostile
    image could read or overwrite any host file.  A backing file is never
    opened (``backing: null``) but is refused all the same, so that the image
    means what it says.  A header QEMU would not accept anyway (another
    version, too short) names nothing here: QEMU refuses it.
    """
    if len(head) < 80:
        return []
    found = []
    (version,) = _QCOW2_VERSION.unpack_from(head, 4)
    if version not in (2, 3):
        return []
    (backing,) = _QCOW2_BACKING_OFFSET.unpack_from(head, 8)
    if backing:
        found.append("a backing file")
    if version == 3:
        (incompat,) = _QCOW2_INCOMPAT.unpack_from(head, 72)
        if incompat & _QCOW2_INCOMPAT_DATA_FILE:
            found.append("an external data file")
    return found


def check_chain(image: str, chain: tuple[str, ...]) -> None:
    """Refuse snapshot overlays *chain* (oldest first, over *image*) unless each is
    still what ``Appliance.snapshot`` made: a regular qcow2 file whose header names
    no external data file and, as its backing file, the layer below it.  Raises
    :class:`DriveError` naming the overlay."""
    below = image
    for path in chain:
        try:
            st = os.lstat(path)
            with open(path, "rb") as f:
                head = f.read(QCOW2_HEAD_SIZE)
        except OSError as e:
            raise DriveError(path, f"snapshot overlay of {image}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode) or sniff_format(head) != "qcow2":
            raise DriveError(path, f"snapshot overlay of {image}: no longer a qcow2 file")
        named = qcow2_named_files(head)
        if "an external data file" in named:
            raise DriveError(path, f"snapshot overlay of {image}: its header names an "
                             "external data file; it is not the overlay guestslots made")
        if qcow2_backing_name(head) != below:
            raise DriveError(path, f"snapshot overlay of {image}: its header names "
                             f"{qcow2_backing_name(head)!r} as its backing file, not {below}; "
                             "it is not the overlay guestslots made")
        below = path


#: How much of a qcow2 file :func:`check_chain` reads (header, extensions, backing name).
QCOW2_HEAD_SIZE = 65536
_QCOW2_BACKING_SIZE = struct.Struct(">I")


def qcow2_backing_name(head: bytes) -> str | None:
    """The backing file name in qcow2 header *head* (None: none, or not in *head*)."""
    if len(head) < 20:
        return None
    (offset,) = _QCOW2_BACKING_OFFSET.unpack_from(head, 8)
    (size,) = _QCOW2_BACKING_SIZE.unpack_from(head, 16)
    if not offset or offset + size > len(head):
        return None
    return head[offset:offset + size].decode(errors="replace")


_QCOW2_SIZE = struct.Struct(">Q")


def qcow2_size(head: bytes) -> int | None:
    """The virtual size in qcow2 header *head* (None: too short to say)."""
    return _QCOW2_SIZE.unpack_from(head, 24)[0] if len(head) >= 32 else None


def sniff_format(head: bytes) -> str | None:
    """Return the image format whose magic *head* starts with, or None (raw)."""
    for magic, fmt in _MAGICS:
        if head.startswith(magic):
            return fmt
    return None


@dataclass(frozen=True)
class DriveSpec:
    """An image to attach to a slot: absolute path, format, access and label.

    With ``overlay``, the guest writes to a throwaway qcow2 overlay and the
    image itself is opened read-only: it never changes (``readonly`` is then
    False, the guest's view).
    """

    path: str
    format: str = "raw"
    readonly: bool = True
    label: str | None = None
    overlay: bool = False
    #: External snapshot overlays over the image, oldest first (see
    #: ``Appliance.snapshot``): qcow2 files guestslots made, the newest of which takes
    #: the guest's writes.  Each is opened on the layer below by node, never by the
    #: backing file its header names.
    chain: tuple[str, ...] = ()
    #: A disk behind a URL (``path`` is then the URL): see :mod:`.sources`.
    remote: Remote | None = None
    #: The virtual size, where the host already knows it (a remote source's probe).
    size: int | None = None

    @property
    def throwaway(self) -> bool:
        """Whether the guest sees the image through a throwaway overlay: with
        ``overlay``, and for every read-only drive (as libguestfs does), so that the
        appliance can assemble md arrays and replay dirty journals without the
        image ever being written.  Mounts of a read-only drive stay read-only."""
        return self.overlay or self.readonly


def make_drive(
    path: str | os.PathLike[str],
    format: str | None = None,
    readonly: bool = True,
    label: str | None = None,
    overlay: bool = False,
) -> DriveSpec:
    """Check an image and return its :class:`DriveSpec`, or raise :class:`DriveError`.

    Checks that the path exists, is a regular file or block device, can be
    opened for reading (and writing unless *readonly*), and that its first
    bytes agree with *format*.
    """
    raw_path = os.fspath(path)
    if label is not None:
        check_label(label)
    if format is not None and format not in FORMATS:
        raise DriveError(raw_path, f"format {format!r} is not supported (use one of {FORMATS})")
    abspath = os.path.abspath(raw_path)
    try:
        st = os.stat(abspath)
    except FileNotFoundError:
        raise DriveError(raw_path, "no such file") from None
    except OSError as e:
        raise DriveError(raw_path, e.strerror or str(e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise DriveError(raw_path, "is a directory, not a disk image")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise DriveError(raw_path, "is not a regular file or block device")
    try:
        with open(abspath, "rb") as f:
            head = f.read(HEAD_SIZE)
    except OSError as e:
        raise DriveError(raw_path, f"cannot be read: {e.strerror}") from None
    if overlay:
        readonly = False  # the guest writes to the overlay; the image is only read
    elif not readonly and not os.access(abspath, os.W_OK):
        raise DriveError(raw_path, "is not writable (add it read-only, or fix its permissions)")
    fmt = check_head(raw_path, format, head)
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise DriveError(raw_path, "is empty (0 bytes); use /dev/null to reserve an empty slot")
    return DriveSpec(abspath, fmt, readonly, label, overlay)


def check_head(raw_path: str, format: str | None, head: bytes) -> str:
    """Check that an image's first bytes *head* agree with *format* (None: raw) and
    that a qcow2 header names no other file; return the format, or raise
    :class:`DriveError` for *raw_path*."""
    looks_like = sniff_format(head)
    fmt = format or "raw"
    if fmt == "raw" and looks_like is not None:
        hint = f"pass format={looks_like!r}" if looks_like in FORMATS else "convert it first"
        raise DriveError(
            raw_path,
            f"looks like a {looks_like} image but is being added as raw; formats are never "
            f"guessed (a raw image can pose as another format): {hint}",
        )
    if fmt != "raw" and looks_like != fmt:
        raise DriveError(
            raw_path, f"is not a {fmt} image (it looks like {looks_like or 'raw data'})"
        )
    if fmt == "qcow2":
        named = qcow2_named_files(head)
        if named:
            raise DriveError(
                raw_path,
                f"its qcow2 header names {' and '.join(named)}; images that make QEMU open "
                "another file are refused (a hostile image could name any host file): "
                "flatten it with qemu-img convert first",
            )
    return fmt
