"""``guestslots mount`` / ``umount`` and ``guestslots.mounted``: a guest filesystem on the
host through FUSE, read-only by default, writes on the image after umount, and
nothing left behind (no mount, no QEMU) however it ends."""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import guestslots
from guestslots import Appliance
from guestslots.fuse.mountinfo import find
from guestslots.host import runtime
from guestslots.model.runtime import RuntimeRecord
from guestslots.testing import testimages as images

from .test_faults import wait_gone

pytestmark = pytest.mark.integration
pytest.importorskip("pyfuse3")

CLI = [sys.executable, "-m", "guestslots.cli"]


def cli(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *(os.fspath(a) for a in args)], capture_output=True, text=True,
                          timeout=300, check=False)


def server(mountpoint: Path) -> int:
    """The pid serving a guestslots mount."""
    found = find(mountpoint)
    assert found is not None and found.server_pid is not None, f"{mountpoint} is not mounted"
    return found.server_pid


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree with owners, modes, a symlink out of it, a hard link, an xattr, a big file."""
    root = tmp_path_factory.mktemp("mount") / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("mounted\n")
    (root / "home" / "u").mkdir(parents=True)
    (root / "home" / "u" / "secret").write_text("s3cret\n")
    os.chmod(root / "home" / "u" / "secret", 0o600)
    os.chown(root / "home" / "u", 1000, 1000)
    os.chown(root / "home" / "u" / "secret", 1000, 1000)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "bin" / "tool", 0o4755)
    os.symlink("/etc/passwd", root / "passwd-link")
    os.link(root / "etc" / "hostname", root / "hostname-hard")
    with open(root / "big", "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 12345))
    many = root / "many"
    many.mkdir()
    for i in range(300):
        (many / f"f{i:03}").write_text(f"{i}\n")
    # whole seconds: mkfs.ext4 -d keeps no more (the rw test checks nanoseconds)
    for n, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        t = (1_700_000_000 + n) * 1_000_000_000
        os.utime(path, ns=(t, t), follow_symlinks=False)
    return root


@pytest.fixture(scope="module")
def image(tree: Path) -> Path:
    img = tree.parent / "tree.img"
    images.sh("truncate", "-s", "64M", img)
    # 256-byte inodes: nanosecond times, which the mount must pass on as they are
    images.sh("mkfs.ext4", "-q", "-F", "-I", "256", "-d", tree, img)
    return img


@pytest.fixture
def mp(tmp_path: Path) -> Path:
    d = tmp_path / "mnt"
    d.mkdir()
    return d


def test_mount_shows_the_guest_tree_as_it_is_and_umount_leaves_nothing(
    image: Path, tree: Path, mp: Path, tmp_path: Path
) -> None:
    done = cli("mount", "-i", image, mp)
    assert done.returncode == 0, done.stderr
    pid = server(mp)
    try:
        assert (mp / "etc" / "hostname").read_text() == "mounted\n"
        st = os.lstat(mp / "home" / "u" / "secret")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o600)
        assert os.lstat(mp / "bin" / "tool").st_mode & 0o7777 == 0o4755
        assert os.readlink(mp / "passwd-link") == "/etc/passwd"  # shown, not followed:
        with pytest.raises(OSError) as e:  # the host's /etc/passwd is never reached
            (mp / "passwd-link").read_text()
        assert e.value.errno == errno.ELOOP
        assert os.lstat(mp / "hostname-hard").st_nlink == 2
        assert sorted(os.listdir(mp / "many")) == [f"f{i:03}" for i in range(300)]
        copy = tmp_path / "copy"
        subprocess.run(["cp", "-a", mp, copy], check=True)
        shutil.rmtree(copy / "lost+found")
        cmp = filecmp.dircmp(tree, copy)
        assert _same(cmp), "the copy differs from the tree"
        for rel in ("home/u/secret", "bin/tool", "big"):
            a, b = os.lstat(tree / rel), os.lstat(copy / rel)
            assert (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_mtime_ns) == (
                b.st_mode, b.st_uid, b.st_gid, b.st_size, b.st_mtime_ns)
        statvfs = os.statvfs(mp)
        assert statvfs.f_blocks > 0 and statvfs.f_bsize > 0
        with pytest.raises(OSError) as e:
            (mp / "new").write_text("x")
        assert e.value.errno == errno.EROFS
    finally:
        done = cli("umount", mp)
    assert done.returncode == 0, done.stderr
    assert find(mp) is None and os.listdir(mp) == []
    wait_gone(pid, timeout=0)  # umount returned after the server had ended


def _same(cmp: filecmp.dircmp[str]) -> bool:
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        print(cmp.left_only, cmp.right_only, cmp.diff_files, cmp.funny_files)
        return False
    # dircmp compares by stat signature: compare contents too
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_same(s) for s in cmp.subdirs.values())


def test_rw_writes_reach_the_image_by_umount(image: Path, tmp_path: Path) -> None:
    img = tmp_path / "rw.img"
    shutil.copyfile(image, img)
    with guestslots.mounted(img, rw=True) as mp:
        (mp / "etc" / "hostname").write_text("changed\n")
        (mp / "newdir").mkdir(mode=0o750)
        (mp / "newdir" / "file").write_bytes(b"x" * 300000)
        os.rename(mp / "many", mp / "renamed")
        (mp / "renamed" / "f000").unlink()
        os.chmod(mp / "bin" / "tool", 0o700)
        os.chown(mp / "etc" / "hostname", 7, 8)
        os.truncate(mp / "big", 10)
        os.symlink("../etc/hostname", mp / "newdir" / "rel")
        os.utime(mp / "newdir" / "file", ns=(1_000_000_001, 2_123_456_789))
        os.setxattr(mp / "newdir" / "file", "user.k", b"v")
        assert os.getxattr(mp / "newdir" / "file", "user.k") == b"v"
        with pytest.raises(OSError) as e:
            os.mkfifo(mp / "fifo")
        assert e.value.errno == errno.EPERM
    with Appliance() as app:
        app.add_drive(img)
        app.launch()
        with app.mounted("/dev/sda"):
            assert app.cat("/etc/hostname") == "changed\n"
            assert app.read_file("/newdir/file") == b"x" * 300000
            assert "f000" not in app.ls("/renamed") and "f001" in app.ls("/renamed")
            assert not app.exists("/many")
            assert app.stat("/bin/tool")["mode"] & 0o7777 == 0o700
            assert (app.stat("/etc/hostname")["uid"], app.stat("/etc/hostname")["gid"]) == (7, 8)
            assert app.stat("/big")["size"] == 10
            assert app.readlink("/newdir/rel") == "../etc/hostname"
            assert app.stat("/newdir/file")["mtime"] == 2_123_456_789
            assert app.stat("/newdir")["mode"] & 0o777 == 0o750


def test_inspector_mounts_the_operating_system_as_its_fstab_says(
    mounted_image: Callable[..., Path], tmp_path: Path
) -> None:
    mp = mounted_image(images.linux_image(tmp_path, "osmount", hostname="fuse-host"))
    assert (mp / "etc" / "hostname").read_text() == "fuse-host\n"
    assert (mp / "boot" / "vmlinuz-test").read_text() == "not really a kernel\n"


def test_the_fixture_mounts_and_unmounts(mounted_image: Callable[..., Path],
                                         image: Path, tmp_path: Path) -> None:
    mp = mounted_image(image)
    assert (mp / "etc" / "hostname").read_text() == "mounted\n"
    assert find(mp) is not None
    qcow2 = mounted_image(images.qcow2(image, tmp_path / "tree.qcow2"), format="qcow2")
    assert (qcow2 / "etc" / "hostname").read_text() == "mounted\n"


@pytest.mark.parametrize("case", ["missing", "not empty", "a mount", "no filesystem"])
def test_bad_mountpoints_and_images_are_clear_errors(case: str, image: Path, mp: Path,
                                                     tmp_path: Path) -> None:
    target, img, other = mp, image, None
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "not empty":
        (mp / "f").write_text("x")
    elif case == "a mount":
        other = cli("mount", "-i", image, mp)
        assert other.returncode == 0, other.stderr
    else:
        img = tmp_path / "blank.img"
        images.sh("truncate", "-s", "16M", img)
    try:
        done = cli("mount", "-i", img, target)
        assert done.returncode == 1
        expected = {"missing": "does not exist", "not empty": "is not empty",
                    "a mount": "is already a mount point",
                    "no filesystem": "no operating system found"}[case]
        assert expected in done.stderr, done.stderr
        assert done.stderr.startswith("guestslots: mount: ")
    finally:
        if other is not None:
            assert cli("umount", mp).returncode == 0
    assert cli("umount", tmp_path).returncode == 1  # not a guestslots mount


def test_a_dying_appliance_gives_eio_and_umount_cleans_up(image: Path, mp: Path) -> None:
    assert cli("mount", "-i", image, mp).returncode == 0
    pid = server(mp)
    its_qemus = qemus(pid)
    assert len(its_qemus) == 1
    os.kill(its_qemus[0], signal.SIGKILL)
    with pytest.raises(OSError) as e:
        os.stat(mp / "not-looked-up-before")
    assert e.value.errno == errno.EIO
    done = cli("umount", mp)
    assert done.returncode == 0, done.stderr
    assert find(mp) is None
    wait_gone(pid)


def qemus(pid: int) -> list[int]:
    """The QEMU processes of the appliances process *pid* holds, from their runtime
    records (both backends: libvirt's QEMU is not a child of its caller)."""
    return [record.pid for _, record in runtime.records()
            if isinstance(record, RuntimeRecord) and record.pid
            and record.owner.get("pid") == pid]


def test_sigterm_unmounts_and_shuts_down(image: Path, mp: Path) -> None:
    assert cli("mount", "-i", image, mp).returncode == 0
    pid = server(mp)
    its_qemus = qemus(pid)
    assert len(its_qemus) == 1  # (before: none was found on libvirt, and none awaited)
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    assert find(mp) is None
    for qemu in its_qemus:
        wait_gone(qemu, timeout=0)


def test_a_killed_caller_of_mounted_leaves_no_mount(image: Path, mp: Path) -> None:
    script = textwrap.dedent(f"""
        import os, guestslots
        with guestslots.mounted({str(image)!r}, mountpoint={str(mp)!r}) as mp:
            print(open(os.path.join(mp, "etc/hostname")).read(), end="", flush=True)
            os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "mounted\n", proc.stderr
    found = find(mp)
    if found is not None:  # the server may not have seen its owner die yet
        assert found.server_pid is not None
        wait_gone(found.server_pid)
    assert find(mp) is None


def test_the_audit_example_passes_and_fails_as_it_should(image: Path, tmp_path: Path) -> None:
    tree = tmp_path / "bad"
    (tree / "etc" / "ssh").mkdir(parents=True)
    key = tree / "etc" / "ssh" / "ssh_host_ed25519_key"
    key.write_text("PRIVATE\n")
    key.chmod(0o644)
    bad = tmp_path / "bad.img"
    images.sh("truncate", "-s", "16M", bad)
    images.sh("mkfs.ext4", "-q", "-F", "-d", tree, bad)
    script = Path(__file__).resolve().parents[2] / "examples" / "ci-audit-mounted.sh"
    env = dict(os.environ, GUESTSLOTS=str(Path(sys.executable).parent / "guestslots"))
    ok = subprocess.run([script, image], capture_output=True, text=True, env=env,
                        timeout=300, check=False)
    assert ok.returncode == 0 and "audit: " in ok.stdout, ok.stderr
    failed = subprocess.run([script, bad], capture_output=True, text=True, env=env,
                            timeout=300, check=False)
    assert failed.returncode == 1
    assert "/etc/ssh/ssh_host_ed25519_key" in failed.stderr, failed.stderr


def test_a_directory_larger_than_a_message_is_listed_whole(tmp_path: Path) -> None:
    """45,000 entries with their attributes are more than one message may carry: the
    listing comes in pages, and an answer too large fails alone (E2BIG), the channel
    in step (before, the agent could not send it and the channel was lost)."""
    tree = tmp_path / "big"
    (tree / "d").mkdir(parents=True)
    for i in range(45_000):
        (tree / "d" / f"entry-{i:05}").touch()
    img = tmp_path / "bigdir.img"
    images.sh("truncate", "-s", "128M", img)
    images.sh("mkfs.ext4", "-q", "-F", "-N", "50000", "-d", tree, img)
    with Appliance() as app:
        app.add_drive(img)
        app.launch()
        app.mount_ro("/dev/sda", "/")
        listed = app.fs_readdir("/d")
        assert [name for name, _ in listed] == [f"entry-{i:05}" for i in range(45_000)]
        with pytest.raises(guestslots.GuestOSError) as e:
            app._call("fs_readdir", path="/d", start=0, count=100_000)
        assert e.value.errno == errno.E2BIG
        assert app.cat("/d/entry-00007") == ""  # the channel is in step
