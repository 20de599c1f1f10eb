"""The guestslots CLI end to end, on images the tests make, hostile names included."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from guestslots.testing import testimages as images

from .test_inspect_distros import deb_image

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "guestslots")


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def osimg(workdir: Path) -> Path:
    return images.linux_image(workdir, "cliosimg", hostname="clihost")


@pytest.fixture(scope="module")
def hostile(workdir: Path) -> Path:
    """A filesystem whose names try to get out of wherever they are copied."""
    tree = workdir / "hostile.tree"
    tree.mkdir()
    (tree / "plain.txt").write_text("plain\n")
    (tree / "new\nline").write_text("newline in the name\n")
    os.mkdir(tree / "dir")
    (tree / "dir" / "...").write_text("three dots\n")
    with open(os.path.join(os.fsencode(tree / "dir"), b"bad-\xff\xfe-utf8"), "w") as f:
        f.write("not utf-8\n")
    os.symlink("/etc/passwd", tree / "abs-link")
    os.symlink("../../../../../../tmp/guestslots-escape", tree / "dir" / "up-link")
    os.mkdir(tree / "evil")  # a directory here, a symlink of the same name below
    (tree / "evil" / "payload").write_text("must not land outside\n")
    os.mkdir(tree / "links")
    os.symlink(str(workdir / "outside"), tree / "links" / "evil")
    img = workdir / "hostile.img"
    images.sh("truncate", "-s", "16M", img)
    images.sh("mkfs.ext4", "-q", "-d", tree, img)
    return img


def test_inspect_reports_each_image_as_json(osimg: Path, workdir: Path) -> None:
    plain = images.named_image(workdir, "plain", "dos")
    proc = cli("inspect", osimg, plain)
    assert proc.returncode == 0, proc.stderr
    report, other = json.loads(proc.stdout)
    assert other["image"] == str(plain) and other["device"] == "/dev/sdb"
    assert other["partitions"] == ["/dev/sdb1"] and other["operating_systems"] == []
    assert other["filesystems"]["/dev/sdb1"]["type"] == "ext4"
    assert report["device"] == "/dev/sda"
    assert report["partitions"] == ["/dev/sda1", "/dev/sda2"]
    assert report["filesystems"]["/dev/sda2"]["label"] == "boot"
    assert report["filesystems"]["/dev/sda2"]["uuid"] == "0b0e7e57-1111-4222-8333-944455556666"
    [system] = report["operating_systems"]
    assert (system["name"], system["version"], system["hostname"]) == ("Testix", "4.2",
                                                                      "clihost")
    assert system["mountpoints"] == {"/": "/dev/sda1", "/boot": "/dev/sda2"}
    assert system["applications"] == []  # no package database


def test_inspect_lists_the_applications_as_its_xml_does(workdir: Path) -> None:
    """The JSON report has each OS's applications, as --xml (virt-inspector's) has them
    (before: only --xml had them)."""
    deb = deb_image(workdir / "deb.img")
    proc = cli("inspect", deb)
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    [system] = report["operating_systems"]
    assert [(a["name"], a["version"], a["arch"]) for a in system["applications"]] == [
        ("bash", "5.2.15", "amd64"), ("tzdata", "2024a", "all"),
        ("zlib1g", "1.2.13.dfsg", "amd64")]
    xml = cli("inspect", "--xml", deb)
    assert xml.returncode == 0, xml.stderr
    assert xml.stdout.count("<application>") == len(system["applications"])


def test_cat_and_ls(osimg: Path) -> None:
    proc = cli("cat", osimg, "/etc/hostname")
    assert (proc.returncode, proc.stdout) == (0, "clihost\n"), proc.stderr
    proc = cli("ls", osimg, "/boot")
    assert (proc.returncode, proc.stdout) == (0, "lost+found\nvmlinuz-test\n"), proc.stderr


def test_errors_are_one_line_with_a_trustworthy_status(workdir: Path, osimg: Path) -> None:
    proc = cli("cat", workdir / "missing.img", "/x")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no such file" in proc.stderr
    proc = cli("cat", osimg, "/no/such/file")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    proc = cli("cat", osimg)
    assert proc.returncode == 2  # usage


def test_copy_out_never_writes_outside_destdir(hostile: Path, workdir: Path) -> None:
    dest = workdir / "dest"
    dest.mkdir()
    outside = workdir / "outside"
    proc = cli("copy-out", hostile, "/", dest)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "plain.txt").read_text() == "plain\n"
    assert (dest / "new\nline").read_text() == "newline in the name\n"
    assert (dest / "dir" / "...").read_text() == "three dots\n"
    bad = Path(os.fsdecode(os.path.join(os.fsencode(dest / "dir"), b"bad-\xff\xfe-utf8")))
    assert bad.read_text() == "not utf-8\n"
    # symlinks come out as symlinks, never followed
    assert os.readlink(dest / "abs-link") == "/etc/passwd"
    assert os.readlink(dest / "dir" / "up-link").endswith("tmp/guestslots-escape")
    # nothing written where it points, from wherever the test's directory is (a deeper
    # TMPDIR moves it off /tmp/guestslots-escape)
    escape = os.path.normpath(os.path.join(dest / "dir", os.readlink(dest / "dir" / "up-link")))
    assert not os.path.lexists(escape), escape
    assert not outside.exists()
    # copying a symlink, then a directory of the same name, must not write through it
    dest2 = workdir / "dest2"
    dest2.mkdir()
    proc = cli("copy-out", hostile, "/links/evil", "/evil", dest2)
    assert proc.returncode == 1
    assert "File exists" in proc.stderr
    assert os.path.islink(dest2 / "evil")
    assert not outside.exists()


def test_copy_in_needs_rw_and_changes_the_image(workdir: Path) -> None:
    img = images.named_image(workdir, "copyin", None)
    src = workdir / "to-copy"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("copied in\n")
    assert cli("copy-in", img, src, "/").returncode == 2  # --rw is required
    proc = cli("copy-in", "--rw", img, src, "/")
    assert proc.returncode == 0, proc.stderr
    proc = cli("cat", img, "/to-copy/sub/f.txt")
    assert (proc.returncode, proc.stdout) == (0, "copied in\n"), proc.stderr


def test_call_runs_any_command_of_the_table(osimg: Path) -> None:
    proc = cli("call", "-a", osimg, "-i", "checksum", "md5", "/etc/hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == hashlib.md5(b"clihost\n").hexdigest()


def test_test_tool_checks_the_host() -> None:
    proc = cli("test-tool")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   hotplug: read 'testtool' from a hotplugged disk" in proc.stdout
    # the QEMUs it found, each with the version it reports, the one it used marked
    used = os.environ.get("GUESTSLOTS_QEMU") or "/usr/bin/qemu-system-x86_64"
    assert re.search(rf"^ok   QEMUs found: .*{re.escape(used)} \d+\.\d+\.\d+ \(used\)",
                     proc.stdout, re.M), proc.stdout
    assert proc.stdout.rstrip().endswith("all checks passed")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_ci_example_passes_and_fails_as_it_should(osimg: Path) -> None:
    env = dict(os.environ, GUESTSLOTS=CLI)
    script = str(EXAMPLES / "ci-check-image.sh")
    ok = subprocess.run([script, str(osimg), "clihost"], capture_output=True, text=True,
                        env=env, check=False, timeout=300)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([script, str(osimg), "otherhost"], capture_output=True, text=True,
                         env=env, check=False, timeout=300)
    assert bad.returncode == 1 and "expected 'otherhost'" in bad.stderr


def test_the_scan_example_goes_through_one_slot(workdir: Path, osimg: Path) -> None:
    scan = workdir / "scan"
    scan.mkdir()
    images.named_image(scan, "first", "gpt")
    os.link(osimg, scan / "second.img")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "scan_directory.py"), str(scan)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "first.raw:\n  /dev/sda1 ext4 'first'" in proc.stdout
    assert "OS on /dev/sda1: Testix 4.2 (Sardine) (hostname clihost)" in proc.stdout


def test_inspect_gives_volumes_and_their_os_to_the_images_they_are_built_on(
    osimg: Path, volumes: dict[str, list[Path]]
) -> None:
    """An OS whose root is an LV, and LVs spanning two images, belong to their images
    (they were dropped when images were told apart by device-name prefix)."""
    (lvm_root,) = volumes["lvm-root"]
    span_a, span_b = volumes["vg-span"]
    proc = cli("inspect", lvm_root, osimg, span_a, span_b)
    assert proc.returncode == 0, proc.stderr
    lvm, plain, a, b = json.loads(proc.stdout)
    assert [(s["root"], s["hostname"]) for s in lvm["operating_systems"]] == [
        ("/dev/vgroot/root", "lvmhost")]
    assert {"/dev/vgroot/root", "/dev/vgroot/data", "/dev/sda1"} <= set(lvm["filesystems"])
    assert [s["hostname"] for s in plain["operating_systems"]] == ["clihost"]
    assert not any(fs.startswith("/dev/vg") for fs in plain["filesystems"])
    assert "/dev/vgspan/big" in a["filesystems"] and "/dev/vgspan/big" in b["filesystems"]
    assert a["operating_systems"] == b["operating_systems"] == []


def test_inspect_of_an_os_on_btrfs_subvolumes(volumes: dict[str, list[Path]]) -> None:
    """An OS whose root is a btrfs subvolume, /home on another: each subvolume is a
    filesystem of the image, as libguestfs lists them (before: the whole inspect
    failed, "blkid: btrfsvol:/dev/sda1/root: not a slot device, LV or md array")."""
    (image,) = volumes["btrfs-subvols"]
    proc = cli("inspect", image)
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)
    assert [s["root"] for s in report["operating_systems"]] == ["btrfsvol:/dev/sda1/root"]
    subvolume = report["filesystems"]["btrfsvol:/dev/sda1/home"]
    assert subvolume["type"] == "btrfs"
    assert subvolume["uuid"] == report["filesystems"]["/dev/sda1"]["uuid"] != ""


def test_a_reader_that_goes_away_ends_it_as_cat_ends(osimg: Path) -> None:
    """``guestslots inspect IMG | head`` as a Unix tool in a pipe: when the reader has
    gone (here at once), no "Broken pipe" error is printed, and the exit status is
    SIGPIPE's, as cat's (before: "guestslots: inspect: [Errno 32] Broken pipe", 1)."""
    done = subprocess.run(["bash", "-c", f'"{CLI}" inspect "{osimg}" | true; '
                           'echo "${PIPESTATUS[0]}"'],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.stderr == ""
    assert done.stdout == "141\n"
