"""File calls inside the appliance, and that a guest filesystem cannot reach outside itself."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from guestslots import Appliance, GuestOSError
from guestslots.testing import testimages as images

pytestmark = pytest.mark.integration


@pytest.fixture
def rw(app: Appliance, image_dir: Path) -> Appliance:
    img = images.ext4(image_dir / "files.img", {"whoami": "files\n", "etc/hostname": "guest\n"},
                      size_mib=32)
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda", "/")
    return app


def test_file_calls(rw: Appliance, tmp_path: Path) -> None:
    app = rw
    assert app.ls("/") == ["etc", "lost+found", "whoami"]
    assert app.cat("/etc/hostname") == "guest\n"
    app.write("/a.txt", "héllo")
    assert app.read_file("/a.txt") == "héllo".encode()
    assert app.exists("/a.txt") and app.is_file("/a.txt") and not app.is_dir("/a.txt")
    assert not app.exists("/nope")
    st = app.stat("/a.txt")
    assert st["size"] == len("héllo".encode()) and stat.S_ISREG(st["mode"])
    app.mkdir("/d")
    app.mkdir_p("/d/e/f")
    assert app.is_dir("/d/e/f")
    app.rmdir("/d/e/f")
    app.rm("/a.txt")
    assert not app.exists("/a.txt")
    with pytest.raises(GuestOSError) as e:
        app.rm("/a.txt")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(GuestOSError) as e:
        app.mkdir("/d")
    assert e.value.errno == errno.EEXIST
    vfs = app.statvfs("/")
    assert vfs["blocks"] > 0 and vfs["bfree"] <= vfs["blocks"]
    app.sync()


def test_upload_download_large_file(rw: Appliance, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 1)  # several chunks and a ragged end
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    rw.upload(src, "/big.bin")
    assert rw.checksum("sha256", "/big.bin") == hashlib.sha256(data).hexdigest()
    assert rw.checksum("md5", "/big.bin") == hashlib.md5(data).hexdigest()
    rw.download("/big.bin", dst)
    assert dst.read_bytes() == data
    # the channel stays in step after a failed download
    with pytest.raises(GuestOSError):
        rw.download("/missing.bin", dst)
    assert rw.cat("/whoami") == "files\n"


def test_guest_symlinks_cannot_escape_the_guest_filesystem(
    app: Appliance, image_dir: Path
) -> None:
    # /init and /usr/lib/guestslots/wire.py exist in the appliance, not in this guest.
    img = images.ext4(
        image_dir / "hostile.img",
        {"whoami": "hostile\n", "etc/motd": "guest motd\n", "data/x": "x"},
        symlinks={"abs": "/init", "dotdot": "../../../../usr/lib/guestslots/wire.py",
                  "inside": "/etc/motd", "mnt": "/etc", "sub/up": "../../../init",
                  "loop": "loop"},
    )
    other = images.ext4(image_dir / "other.img", {"whoami": "other\n"})
    app.hotplug(0, img)
    app.hotplug(1, other)
    app.mount_ro("/dev/sda", "/")
    for link in ("/abs", "/dotdot", "/sub/up"):
        with pytest.raises(GuestOSError) as e:
            app.cat(link)
        assert e.value.errno == errno.ENOENT, link
    assert app.cat("/inside") == "guest motd\n"  # resolved inside the guest
    # many at once, as inspection asks: resolved inside the guest as well
    paths = ["/etc/motd", "/etc", "/abs", "/inside", "/nope", "/loop", "/etc/motd/x"]
    assert app.file_types(paths, followsymlinks=True) == ["f", "d", "", "f", "", "", ""]
    assert app.file_types(paths) == ["f", "d", "l", "l", "", "l", ""]
    with pytest.raises(GuestOSError) as e:
        app.file_types(["etc"])
    assert e.value.errno == errno.EINVAL
    # A mount point that is a guest symlink resolves inside the guest too.
    app.mount_ro("/dev/sdb", "/mnt")
    assert app.mountpoints() == {"/dev/sda": "/", "/dev/sdb": "/etc"}
    assert app.cat("/etc/whoami") == "other\n"


def test_ranged_reads_and_writes(rw: Appliance) -> None:
    rw.write("/r.bin", bytes(range(256)) * 4)
    assert rw.pread("/r.bin", 10, 250) == bytes(range(250, 256)) + bytes(range(4))
    assert rw.pread("/r.bin", 100, 1020) == bytes(range(252, 256))  # short at the end
    assert rw.pread("/r.bin", 5, 5000) == b""
    assert rw.pwrite("/r.bin", b"XYZ", 1) == 3
    assert rw.pread("/r.bin", 5, 0) == b"\x00XYZ\x04"
    assert rw.stat("/r.bin")["size"] == 1024  # not truncated
    assert rw.pwrite("/r.bin", "end", 1024) == 3
    assert rw.stat("/r.bin")["size"] == 1027
    with pytest.raises(GuestOSError) as e:
        rw.pwrite("/missing.bin", b"x", 0)  # pwrite never creates
    assert e.value.errno == errno.ENOENT
    with pytest.raises(GuestOSError) as e:
        rw.pread("/r.bin", -1, 0)
    assert e.value.errno == errno.EINVAL
    assert rw.cat("/whoami") == "files\n"


def test_checksums_out_matches_md5sum_over_the_same_tree(app: Appliance, image_dir: Path,
                                                         tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {
        "a.txt": "alpha\n", "etc/hostname": "guest\n", "etc/deep/x.bin": os.urandom(70_000),
        "odd\nname": "newline in its name\n", "back\\slash": "b\n", "etc/empty": "",
    }
    img = images.ext4(image_dir / "sums.img", files,
                      symlinks={"etc/passwd-link": "/etc/passwd", "loop": "."})
    tree = tmp_path / "tree"
    for name, content in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(content.encode() if isinstance(content, str) else content)
    listed = subprocess.run("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum",
                            shell=True, cwd=tree, capture_output=True, check=True).stdout
    app.hotplug(0, img)
    app.mount_ro("/dev/sda", "/")
    out = tmp_path / "sums"
    app.checksums_out("md5", "/", out)
    assert out.read_bytes() == listed  # symlinks (even a loop) are not followed
    app.checksums_out("sha256", "/etc", out)
    assert out.read_bytes().splitlines()[0] == (
        hashlib.sha256(files["etc/deep/x.bin"]).hexdigest()  # type: ignore[arg-type]
        + "  ./deep/x.bin").encode()
    with pytest.raises(GuestOSError, match="not a directory"):
        app.checksums_out("md5", "/a.txt", out)
    with pytest.raises(GuestOSError, match="unknown checksum type"):
        app.checksums_out("crc32x", "/", out)
