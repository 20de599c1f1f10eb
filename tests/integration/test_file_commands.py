"""The everyday file commands (issue 17): the same calls through libguestfs and through
guestslots give the same answers, and the same changes leave the same image (each
tool's result read by the other)."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from guestslots import Appliance, GuestOSError, GuestslotsError
from guestslots.testing import peer
from guestslots.testing import testimages as images

from .compare import run_ours, same

pytestmark = [pytest.mark.integration,
              pytest.mark.single_pass("compares with libguestfs; the agent is the same on "
                                      "both backends")]

MESSAGES = "".join(f"line {i}: {'ERROR disk' if i % 7 == 3 else 'ok'}\n" for i in range(30))
FILES: dict[str, bytes | str] = {
    "etc/hostname": "guest\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
                  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                  "user:x:1000:1000:User,,,:/home/user:/bin/bash\n",
    "var/log/messages": MESSAGES,
    "var/log/old.gz": gzip.compress(b"first gz line\nsecond LINE\n", mtime=0),
    "no-newline": "a\nb",
    "empty": "",
    "dir with space/file.txt": "x\n",
    "data/a.bin": bytes(range(256)) * 200,
    "data/zeros": bytes(100) + b"tail",
    "data/short": "abc",
}
SYMLINKS = {"etc/mtab": "/proc/mounts", "link-to-dir": "etc"}

READS: list[list[Any]] = [
    ["find", "/"], ["find", "/etc"], ["find", "/etc/hostname"], ["find", "/missing"],
    ["glob_expand", "/etc/*"], ["glob_expand", "/var/*/*"], ["glob_expand", "/nomatch*"],
    ["glob_expand", "/{etc,data}"], ["glob_expand", "/link-to-dir"], ["glob_expand", "/*"],
    ["grep", "ERROR", "/var/log/messages"], ["grep", "^line 1[0-9]", "/var/log/messages"],
    ["grep", "line \\(3\\|7\\):", "/var/log/messages"], ["grep", "x:1+", "/etc/passwd"],
    ["egrep", "line (3|7):", "/var/log/messages"], ["egrep", "x:1+", "/etc/passwd"],
    ["fgrep", "x:1", "/etc/passwd"], ["fgrep", "(3|7)", "/var/log/messages"],
    ["grepi", "error", "/var/log/messages"], ["egrepi", "ROOT|USER", "/etc/passwd"],
    ["fgrepi", "DAEMON", "/etc/passwd"],
    ["zgrep", "line", "/var/log/old.gz"], ["zgrepi", "LINE", "/var/log/old.gz"],
    ["zegrep", "fir+st", "/var/log/old.gz"], ["zfgrep", "LINE", "/var/log/old.gz"],
    ["zgrep", "root", "/etc/passwd"], ["grep", "a", "/no-newline"], ["grep", "b$", "/no-newline"],
    ["grep", "[", "/etc/passwd"], ["grep", "x", "/etc"], ["grep", "nothing", "/etc/passwd"],
    ["head", "/var/log/messages"], ["head_n", 3, "/var/log/messages"],
    ["head_n", -28, "/var/log/messages"], ["head_n", 0, "/var/log/messages"],
    ["tail", "/var/log/messages"], ["tail_n", 2, "/var/log/messages"],
    ["tail_n", -29, "/var/log/messages"], ["tail_n", 0, "/var/log/messages"],
    ["head_n", 5, "/no-newline"], ["tail_n", 1, "/no-newline"], ["head", "/empty"],
    ["tail_n", 100, "/etc/passwd"], ["head", "/etc"],
    ["du", "/data"], ["du", "/etc/hostname"], ["du", "/"], ["du", "/missing"],
    ["hexdump", "/data/zeros"], ["hexdump", "/data/short"], ["hexdump", "/empty"],
    ["hexdump", "/etc/passwd"], ["hexdump", "/data/a.bin"],
    ["file", "/etc/passwd"], ["file", "/var/log/old.gz"], ["file", "/etc"], ["file", "/etc/mtab"],
    ["file", "/data/a.bin"], ["file", "/empty"], ["file", "/data/zeros"], ["file", "/missing"],
]

WRITES: list[list[Any]] = [
    ["mkdir_p", "/new/deep"],
    ["cp", "/etc/hostname", "/new/hostname"], ["cp", "/etc/passwd", "/new/deep"],
    ["cp", "/etc", "/new/etc"], ["cp", "/link-to-dir/hostname", "/new/via-link"],
    ["cp_a", "/etc", "/etc-copy"], ["cp_r", "/var", "/var-copy"],
    ["mv", "/new/hostname", "/new/hostname2"], ["mv", "/dir with space", "/new"],
    ["mv", "/missing", "/new"],
    ["ln", "/etc/passwd", "/new/passwd-hard"], ["ln", "/etc/passwd", "/new/passwd-hard"],
    ["ln_s", "../etc/passwd", "/new/passwd-soft"],
    ["ln_sf", "/etc/hostname", "/new/passwd-soft"], ["ln_f", "/etc/hostname", "/new/passwd-hard"],
    ["chmod", 0o600, "/new/hostname2"], ["chmod", 0o4755, "/new/via-link"],
    ["chown", 1000, 1000, "/new/deep/passwd"], ["lchown", 12, 34, "/new/passwd-soft"],
    ["chown", 5, 6, "/link-to-dir"],
    ["touch", "/new/touched"], ["touch", "/etc"], ["touch", "/link-to-dir"],
    ["truncate_size", "/data/a.bin", 1000], ["truncate_size", "/new/touched", 5000],
    ["truncate", "/etc-copy/passwd"],
    ["setxattr", "user.note", "hello", 5, "/new/touched"],
    ["setxattr", "user.other", "abcdef", 3, "/new/touched"], ["getxattrs", "/new/touched"],
    ["removexattr", "user.note", "/new/touched"], ["getxattrs", "/new/touched"],
    ["removexattr", "user.note", "/new/touched"],
    ["rm_f", "/missing"], ["rm_f", "/empty"], ["rm_f", "/data"],
    ["rm_rf", "/var-copy/log"], ["rm_rf", "/nothing-here"], ["rm_rf", "/"],
    ["snapshot", "/"],
    ["utimens", "/new/touched", 1_000_000_000, 5, 1_200_000_000, 7],  # after: reads set atime
]


@pytest.fixture(scope="module")
def tree_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return images.ext4(tmp_path_factory.mktemp("tree") / "tree.img", FILES, size_mib=32,
                       symlinks=SYMLINKS)


def test_the_search_commands_answer_as_libguestfs_does(app: Appliance, tree_image: Path,
                                                       tcg: bool) -> None:
    theirs = peer.calls({"force_tcg": tcg, "image": str(tree_image), "readonly": True,
                         "calls": READS})
    app.hotplug(0, tree_image)
    app.mount_ro("/dev/sda", "/")
    same(run_ours(app, READS), theirs, READS)
    # one deliberate difference: libguestfs's hexdump of a directory is "", ours an error
    with pytest.raises(GuestslotsError, match="not a regular file"):
        app.hexdump("/etc")


def test_find0_lists_in_finds_order_as_libguestfs_does(
    app: Appliance, tree_image: Path, tcg: bool, tmp_path: Path,
) -> None:
    script = [["find0", d, str(tmp_path / f"theirs{i}")]
              for i, d in enumerate(("/", "/etc", "/var/"))]
    theirs = peer.calls({"force_tcg": tcg, "image": str(tree_image), "readonly": True,
                         "calls": script})
    assert all(r[0] == "ok" for r in theirs), theirs
    app.hotplug(0, tree_image)
    app.mount_ro("/dev/sda", "/")
    for i, (_, directory, _) in enumerate(script):
        app.find0(directory, tmp_path / f"ours{i}")
        assert (tmp_path / f"ours{i}").read_bytes() == (tmp_path / f"theirs{i}").read_bytes()


def test_the_change_commands_leave_the_image_libguestfs_leaves(
    app: Appliance, tree_image: Path, tcg: bool, tmp_path: Path,
) -> None:
    mine, peers = tmp_path / "mine.img", tmp_path / "peers.img"
    shutil.copyfile(tree_image, mine)
    shutil.copyfile(tree_image, peers)
    theirs = peer.calls({"force_tcg": tcg, "image": str(peers), "readonly": False,
                         "calls": WRITES})
    app.hotplug(0, mine, readonly=False)
    app.mount("/dev/sda", "/")
    ours = run_ours(app, WRITES)
    assert ours[-2][0] == "ok" and "new/touched" in ours[-2][1]
    st = app.stat("/new/touched")
    assert (st["atime"], st["mtime"]) == (1_000_000_000_000_000_005, 1_200_000_000_000_000_007)
    app.umount_all()
    app.unplug(0)
    same(ours, theirs, WRITES)
    # and each result read by the other tool: libguestfs reads guestslots's image
    (cross,) = peer.calls({"force_tcg": tcg, "image": str(mine), "readonly": True,
                           "calls": [["snapshot", "/"]]})
    assert cross == theirs[-2]


def test_change_commands_are_refused_on_a_read_only_mount(app: Appliance,
                                                         tree_image: Path) -> None:
    before = os.stat(tree_image)
    app.hotplug(0, tree_image)
    app.mount_ro("/dev/sda", "/")
    refused: dict[tuple[Any, ...], int | None] = {}
    for name, *args in WRITES:
        if name == "snapshot":
            continue
        if name == "getxattrs" or [name, *args] in (
                ["rm_f", "/missing"], ["rm_rf", "/nothing-here"], ["rm_rf", "/var-copy/log"]):
            continue  # a read, or nothing to remove (here): no error is right
        with pytest.raises(GuestOSError) as e:
            getattr(app, name)(*args)
        refused[(name, *args)] = e.value.errno
    app.umount_all()
    app.unplug(0)
    after = os.stat(tree_image)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    # a change to what the image holds is refused as read-only; the others are refused
    # for what they name (the earlier changes did not happen), each with its errno
    for call in [("mkdir_p", "/new/deep"), ("cp_a", "/etc", "/etc-copy"),
                 ("mv", "/dir with space", "/new"), ("chown", 5, 6, "/link-to-dir"),
                 ("truncate_size", "/data/a.bin", 1000), ("rm_f", "/empty")]:
        assert refused[call] == errno.EROFS, (call, refused[call])
    assert refused[("rm_rf", "/")] == errno.EPERM  # refused before the mount is asked
    assert set(refused.values()) <= {errno.EROFS, errno.ENOENT, errno.EISDIR, errno.EINVAL,
                                     errno.EPERM}, refused


def members(path: Path) -> list[tuple[Any, ...]]:
    """What a tar archive holds, as two tools' archives are compared (no times)."""
    with tarfile.open(path) as tar:
        out = []
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out.append((m.name.rstrip("/"), m.type, m.mode, m.uid, m.gid, m.linkname,
                        hashlib.sha256(data).hexdigest()))
        return sorted(out)


@pytest.mark.parametrize("compress", [None, "gzip", "xz"])
def test_tar_out_holds_what_libguestfs_tar_out_holds(
    app: Appliance, tree_image: Path, tcg: bool, tmp_path: Path, compress: str | None,
) -> None:
    theirs = tmp_path / "theirs.tar"
    (done,) = peer.calls({"force_tcg": tcg, "image": str(tree_image), "readonly": True,
                          "calls": [["tar_out", "/etc", str(theirs), *(
                              [compress] if compress else [])]]})
    assert done[0] == "ok", done
    app.hotplug(0, tree_image)
    app.mount_ro("/dev/sda", "/")
    ours = tmp_path / "ours.tar"
    app.tar_out("/etc", ours, compress=compress)
    assert members(ours) == members(theirs)
    assert {m[0] for m in members(ours)} == {".", "./hostname", "./passwd", "./mtab"}
    app.tar_out("/", ours, excludes=["./var/*", "*.bin"], numericowner=True)
    names = {m[0] for m in members(ours)}
    assert "./etc/mtab" in names and "./var" in names and "./var/log" not in names
    assert "./data/a.bin" not in names


def test_tar_in_extracts_as_libguestfs_does_and_refuses_escapes(
    app: Appliance, tree_image: Path, tcg: bool, tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "file").write_text("in a tar\n")
    (src / "d" / "e" / "big").write_bytes(os.urandom(300_000))
    os.symlink("file", src / "d" / "sym")
    os.link(src / "d" / "file", src / "d" / "hard")
    os.chmod(src / "d" / "file", 0o640)
    archive = tmp_path / "in.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "d", arcname="d")
    mine, peers = tmp_path / "mine.img", tmp_path / "peers.img"
    shutil.copyfile(tree_image, mine)
    shutil.copyfile(tree_image, peers)
    script: list[list[Any]] = [["mkdir", "/new"], ["tar_in", str(archive), "/new", "gzip"],
                               ["snapshot", "/new"]]
    theirs = peer.calls({"force_tcg": tcg, "image": str(peers), "readonly": False,
                         "calls": script})
    app.hotplug(0, mine, readonly=False)
    app.mount("/dev/sda", "/")
    same(run_ours(app, script), theirs, script)

    before = set(app.find("/"))
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(hostile, "w") as tar:
        for name, data in (("fine", b""), ("../evil", b"evil"), ("/abs", b"abs!")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(GuestslotsError, match=r"\.\."):
        app.tar_in(hostile, "/new")
    assert app.cat("/etc/hostname") == "guest\n"  # and the channel is in step
    # as GNU tar: the .. member skipped, the absolute one kept inside the directory
    assert set(app.find("/")) - before == {"new/fine", "new/abs"}
    assert app.cat("/new/abs") == "abs!"


def test_tar_in_cannot_follow_a_guest_symlink_out_of_the_guest(
    app: Appliance, tmp_path: Path,
) -> None:
    # a hostile guest: /new/escape -> / (in the appliance, / is the appliance's own root)
    img = images.ext4(tmp_path / "hostile.img", {"new/keep": "k\n"},
                      symlinks={"new/escape": "/", "new/etc": "/etc"})
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("escape/planted", "etc/planted"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda", "/")
    with pytest.raises(GuestslotsError, match="tar-in"):
        app.tar_in(archive, "/new")
    # nothing was written through the symlinks, in the guest or anywhere else
    assert not app.exists("/planted") and not app.exists("/etc/planted")
    assert app.find("/new") == ["/escape", "/etc", "/keep"]
    assert app.list_filesystems()  # the appliance itself is fine


def test_a_guest_fifo_as_a_copy_destination_is_refused_not_waited_on(
    app: Appliance, tmp_path: Path,
) -> None:
    img = images.ext4(tmp_path / "fifo.img", {"src": "data\n"},
                      nodes={"fifo": (stat.S_IFIFO | 0o644, 0)}, symlinks={"to-fifo": "fifo"})
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda", "/")
    for dest in ("/fifo", "/to-fifo"):  # before: the agent waited for a reader, forever
        with pytest.raises(GuestslotsError, match="not a regular file"):
            app.cp("/src", dest)
    with pytest.raises(GuestslotsError, match="not a regular file"):
        app.grep("x", "/fifo")
    assert app.cat("/src") == "data\n"
