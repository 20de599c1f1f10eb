"""Pure helpers of the appliance agent (it runs in the VM; these need no VM)."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from guestslots import wire


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    """The agent's block-device helpers, imported from the package data (the agent
    imports :mod:`wire` as a top-level module, as it finds it in the appliance)."""
    sys.modules.setdefault("wire", wire)
    return importlib.import_module("guestslots._appliance.agent.blockdev")


@pytest.mark.parametrize(("dm", "parts"), [
    ("vg-root", ["vg", "root"]),
    ("my--vg-lv--1", ["my-vg", "lv-1"]),
    ("vg---x", ["vg-", "x"]),
    ("vg-pool-tpool", ["vg", "pool", "tpool"]),
    ("luks", ["luks"]),
])
def test_split_dm_name(dm: str, parts: list[str]) -> None:
    assert wire.split_dm_name(dm) == parts


def test_dashed_uuid_is_lvms_printed_form(agent: ModuleType) -> None:
    raw = "f4SbcRXPVxLyo7M13sbNz13Dc9LbBKnI"
    assert agent.dashed_uuid(raw) == "f4SbcR-XPVx-Lyo7-M13s-bNz1-3Dc9-LbBKnI"
    assert agent.dashed_uuid(raw).replace("-", "") == raw


@pytest.fixture(scope="module")
def tree() -> ModuleType:
    sys.modules.setdefault("wire", wire)
    return importlib.import_module("guestslots._appliance.agent.tree")


@pytest.mark.parametrize(("bre", "python"), [
    ("a+b", r"a\+b"),                    # literal in a BRE
    (r"a\+b", "a+b"),                    # GNU's \+ is the operator
    (r"line \(3\|7\):", "line (3|7):"),
    ("x{2}", r"x\{2\}"),
    (r"x\{2\}", "x{2}"),
    (r"a\.b", r"a\.b"),                  # other escapes stay
    ("^[a-z]*$", "^[a-z]*$"),
])
def test_basic_regular_expressions_become_python_ones(tree: ModuleType, bre: str,
                                                      python: str) -> None:
    assert tree.bre_to_python(bre) == python


def test_braces_expand_in_order_as_glob_brace_does(tree: ModuleType) -> None:
    assert tree._braces("/etc/{b,a}*") == ["/etc/b*", "/etc/a*"]
    assert tree._braces("/{x,y}/{1,2}") == ["/x/1", "/x/2", "/y/1", "/y/2"]
    assert tree._braces("/plain") == ["/plain"]
    assert tree._braces("/{one}") == ["/{one}"]  # no comma: not a brace expression


def test_hexdump_is_hexdump_c(tree: ModuleType) -> None:
    assert tree.hexdump(b"") == ""
    assert tree.hexdump(b"hi\n") == (
        "00000000  68 69 0a                                          |hi.|\n00000003\n")
    # identical full lines are squeezed to one "*"
    out = tree.hexdump(bytes(48) + b"x").splitlines()
    assert out == ["00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|",
                   "*",
                   "00000030  78                                                |x|",
                   "00000031"]


@pytest.fixture(scope="module")
def listing() -> ModuleType:
    sys.modules.setdefault("wire", wire)
    return importlib.import_module("guestslots._appliance.agent.listing")


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0"), (1023, "1023"), (1024, "1.0K"), (1025, "1.1K"), (10 * 1024, "10K"),
    (10 * 1024 + 1, "11K"), (int(9.95 * 1024**2), "10M"), (137 * 1024**2 - 5, "137M"),
    (5 * 1024**3, "5.0G"),
])
def test_sizes_are_shown_as_df_h_shows_them(listing: ModuleType, size: int,
                                            shown: str) -> None:
    assert listing.human(size) == shown  # coreutils: powers of 1024, rounded up


def test_df_columns_are_aligned_as_coreutils_aligns_them(listing: ModuleType) -> None:
    rows = [["Filesystem", "1K-blocks", "Used", "Available", "Use%", "Mounted on"],
            ["/dev/sda1", "139401", "16", "128551", "1%", "/"],
            ["/dev/vg/lv", "48838", "0", "48838", "0%", "/boot"]]
    assert listing.table(rows).splitlines() == [
        "Filesystem 1K-blocks Used Available Use% Mounted on",
        "/dev/sda1     139401   16    128551   1% /",
        "/dev/vg/lv     48838    0     48838   0% /boot",
    ]


def test_partition_names_split_into_device_and_number() -> None:
    from guestslots.errors import DeviceNameError
    from guestslots.guest.parts import split_partition

    assert split_partition("/dev/sda1") == ("/dev/sda", 1)
    assert split_partition("/dev/sdab12") == ("/dev/sdab", 12)
    assert split_partition("/dev/md127p2") == ("/dev/md127", 2)
    for bad in ("/dev/sda", "/dev/vg/lv", "sda1", "/dev/md127"):
        with pytest.raises(DeviceNameError, match="not a partition"):
            split_partition(bad)


def test_the_agent_reads_frames_that_arrive_a_few_bytes_at_a_time(tmp_path: object) -> None:
    """The virtio-serial port gives at most one 4 KiB buffer per read: a frame comes in
    many reads, each into the frame's own buffer, and the stream lands whole."""
    import collections
    import os
    import socket
    import threading

    sys.modules.setdefault("wire", wire)
    channel_module = importlib.import_module("guestslots._appliance.agent.channel")
    agent_end, host_end = socket.socketpair()
    channel = channel_module.Channel.__new__(channel_module.Channel)
    channel.fd, channel.queued = agent_end.fileno(), collections.deque()
    watchdog_module = importlib.import_module("guestslots._appliance.agent.watchdog")
    channel.watchdog = watchdog_module.Watchdog(lambda: None)
    data = os.urandom(wire.CHUNK * 2 + 12345)
    stream = b"".join([wire.encode_message({"id": 1, "call": "x"}),
                       *(wire.encode(wire.DATA, data[i:i + wire.CHUNK])
                         for i in range(0, len(data), wire.CHUNK)),
                       wire.encode(wire.END)])

    def host() -> None:  # 4 KiB at a time, some split headers included
        for i in range(0, len(stream), 4093):
            host_end.sendall(stream[i:i + 4093])

    writer = threading.Thread(target=host)
    writer.start()
    kind, payload = channel.read_frame()
    assert (kind, wire.decode_message(payload)) == (wire.MSG, {"id": 1, "call": "x"})
    read, write = os.pipe()
    got = bytearray()

    def drain() -> None:
        while piece := os.read(read, 65536):
            got.extend(piece)

    reader = threading.Thread(target=drain)
    reader.start()
    assert channel.receive_file(write) == len(data)  # closes *write*
    writer.join(10)
    reader.join(10)
    os.close(read)
    assert bytes(got) == data
    host_end.close()
    assert channel.read_exact(1) is None  # the host went away
    agent_end.close()


def test_the_watchdog_fires_once_per_call_that_outlives_the_hosts_wait() -> None:
    import threading

    sys.modules.setdefault("wire", wire)
    watchdog_module = importlib.import_module("guestslots._appliance.agent.watchdog")
    fired: list[int] = []
    event = threading.Event()

    def overdue() -> None:
        fired.append(1)
        event.set()

    watchdog = watchdog_module.Watchdog(overdue)
    watchdog.begin(None)  # no wait given: never overdue
    watchdog.begin(0.01)
    assert event.wait(10), "the watchdog did not fire for an overdue call"
    event.clear()
    watchdog.end()
    watchdog.begin(0.01)  # the next call gets its own
    assert event.wait(10), "the watchdog did not fire for the next overdue call"
    watchdog.end()
    assert len(fired) == 2


@pytest.fixture(scope="module")
def common() -> ModuleType:
    sys.modules.setdefault("wire", wire)
    return importlib.import_module("guestslots._appliance.agent.common")


def test_open_in_root_keeps_symlinks_and_dotdot_inside(common: ModuleType,
                                                       tmp_path: Path) -> None:
    """tar_in binds its directory from this descriptor: whatever the guest's links say,
    it names a directory of the guest root (openat2 RESOLVE_IN_ROOT, the real syscall)."""
    root = tmp_path / "guest"
    (root / "upload").mkdir(parents=True)
    (root / "upload" / "mark").write_text("guest")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "mark").write_text("host")
    (root / "abs").symlink_to("/upload")               # absolute: the guest's /upload
    (root / "up").symlink_to("../../../../outside")    # .. stops at the guest root
    (root / "magic").symlink_to("/proc/self/root")     # a magic link is not followed
    for path in ("/upload", "/abs", "/../../upload", "/abs/../../upload"):
        fd = common.open_in_root(str(root), path, os.O_PATH | os.O_DIRECTORY)
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "upload")
        finally:
            os.close(fd)
    with pytest.raises(OSError) as e:
        common.open_in_root(str(root), "/up", os.O_PATH | os.O_DIRECTORY)
    assert e.value.errno == errno.ENOENT  # ../../outside seen from the guest root
    with pytest.raises(OSError) as e:
        common.open_in_root(str(root), "/magic/etc", os.O_PATH | os.O_DIRECTORY)
    assert e.value.errno in (errno.ENOENT, errno.ELOOP, errno.EXDEV)
