"""guestslots-fish driven as a user would: script files, piped stdin, a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from guestslots.testing import testimages as images

pytestmark = pytest.mark.integration

FISH = str(Path(sys.executable).parent / "guestslots-fish")


@pytest.fixture(scope="module")
def osimg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return images.linux_image(tmp_path_factory.mktemp("fish"), "fishos")


def fish(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([FISH, *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=300, check=False)


def test_piped_commands_and_hyphenated_names(osimg: Path) -> None:
    proc = fish("-a", osimg, stdin="list-devices\nlist-filesystems\nmount-ro /dev/sda1 /\n"
                                   "cat /etc/hostname\nvfs-label /dev/sda2\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("/dev/sda\n/dev/sda1: ext4\n/dev/sda2: ext4\ntesthost\nboot\n")


def test_a_script_stops_at_the_first_error_with_status_1(osimg: Path) -> None:
    proc = fish("-a", osimg, stdin="mount-ro /dev/sda1 /\ncat /nope\ncat /etc/hostname\n")
    assert proc.returncode == 1
    assert proc.stdout == ""  # nothing after the failing command ran
    assert proc.stderr.count("\n") == 1 and "/nope" in proc.stderr


def test_minus_ignores_an_error_and_bang_runs_a_host_command(osimg: Path) -> None:
    proc = fish("-a", osimg, stdin="mount-ro /dev/sda1 /\n-cat /nope\n!echo from-the-host\n"
                                   "cat /whoami\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from-the-host\nfishos\n"


def test_script_file_with_inspector_and_trace(osimg: Path, tmp_path: Path) -> None:
    script = tmp_path / "check.gsf"
    script.write_text("# a comment\nmountpoints\ncat /boot/vmlinuz-test\n")
    proc = fish("-a", osimg, "-i", "-x", "-f", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "/dev/sda1: /\n/dev/sda2: /boot\nnot really a kernel\n"
    assert "mountpoints\ncat /boot/vmlinuz-test\n" in proc.stderr  # -x traced them


def test_a_script_runs_by_its_shebang_line(osimg: Path, tmp_path: Path) -> None:
    script = tmp_path / "run-me"
    script.write_text(f"#!{FISH} -f\nadd {osimg} readonly:true\nrun\nmount-ro /dev/sda1 /\n"
                      "cat /whoami\n")
    script.chmod(0o755)
    proc = subprocess.run([str(script)], capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0\nfishos\n"  # add prints the slot index


def test_commands_after_the_options_and_help_from_docstrings(osimg: Path) -> None:
    proc = fish("-a", osimg, "-m", "/dev/sda1", "cat", "/whoami", ":", "help", "mount-ro")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("fishos\nmount-ro device mountpoint\n")
    assert "Mount device read-only on mountpoint." in proc.stdout  # plain text, as guestfish
    listing = fish("help").stdout
    assert "list-filesystems" in listing and "hotplug" in listing


def test_hotplug_by_slot_from_the_shell(osimg: Path, tmp_path: Path) -> None:
    other = images.named_image(tmp_path, "other", None)
    proc = fish("--slots", "2", stdin=f"hotplug 1 {other}\nslots\ndiskset-add 1\nunplug 1\n"
                "list-devices\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[2].startswith(f"1 /dev/sdb filled {other} raw ro serial:slot1")
    assert lines[-2:] == ["/dev/sda", "/dev/sdb"]
    # the slot left the disk set: said once, in one line, without Python's warning frame
    assert proc.stderr.endswith("slot 1 was unplugged and left the disk set (now [])\n")
    assert proc.stderr.count("\n") == 1, proc.stderr


class Terminal:
    """guestslots-fish on a pseudo-terminal, read until an expected text appears."""

    def __init__(self, *args: str | Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become guestslots-fish
            os.environ["HOME"] = os.environ.get("TMPDIR", "/tmp")
            os.execv(FISH, [FISH, *map(str, args)])
        # a terminal has a size (tqdm and readline size themselves to it)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        self.seen = b""

    def expect(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        want = text.encode()
        while want not in self.seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"waited {timeout:g} s for {text!r}; saw {self.seen!r}")
            try:
                self.seen += os.read(self.fd, 4096)
            except OSError:  # the child exited
                raise AssertionError(f"exited before {text!r}; saw {self.seen!r}") from None
        before, _, self.seen = self.seen.partition(want)
        return before.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_transfers_show_a_progress_bar_on_a_terminal_only(osimg: Path, tmp_path: Path) -> None:
    piped = fish("-a", osimg, "-m", "/dev/sda1", stdin=f"download /whoami {tmp_path}/a\n")
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "", "")
    assert (tmp_path / "a").read_text() == "fishos\n"
    term = Terminal("-a", osimg, "-m", "/dev/sda1")
    term.expect("><gs> ")
    term.send(f"download /whoami {tmp_path}/b\r")
    assert "B/s" in term.expect("><gs> ")  # tqdm's bar was drawn
    term.send("quit\r")
    assert term.wait() == 0
    assert (tmp_path / "b").read_text() == "fishos\n"


def test_interactive_session_with_completion(osimg: Path) -> None:
    term = Terminal("-a", osimg, "-m", "/dev/sda1")
    term.expect("><gs> ")
    term.send("list-filesy\t")
    term.expect("list-filesystems")  # the command name completed
    term.send("\r")
    out = term.expect("><gs> ")
    assert "/dev/sda1: ext4" in out and "/dev/sda2: ext4" in out
    term.send("cat /etc/host\t")
    term.expect("/etc/hostname")  # a path inside the appliance completed
    term.send("\r")
    assert "testhost" in term.expect("><gs> ")
    term.send("cat /nope\r")
    assert "/nope" in term.expect("><gs> ")  # an error, and the session goes on
    term.send("cat /whoami\r")
    assert "fishos" in term.expect("><gs> ")
    term.send("quit\r")
    assert term.wait() == 0


def test_edit_runs_the_editor_on_a_copy_and_writes_back_only_a_change(tmp_path: Path) -> None:
    img = images.ext4(tmp_path / "edit.img", {"etc/motd": "hello guest\n", "keep": "same\n"})
    editor = tmp_path / "editor"
    editor.write_text("#!/bin/sh\nsed -i s/guest/edited/ \"$1\"\n")
    editor.chmod(0o755)
    proc = subprocess.run(
        [FISH, "--rw", "-a", str(img)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "EDITOR": str(editor)}, check=False,
        input="mount /dev/sda /\nchmod 0600 /etc/motd\nedit /etc/motd\ncat /etc/motd\n"
              "stat /keep\nedit /keep\nstat /keep\nstat /etc/motd\nhelp edit\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("hello edited\n")
    stats = out.split("\n\n")
    mtime = [line for line in out.splitlines() if line.startswith("mtime")]
    assert mtime[0] == mtime[1], stats  # unchanged: not written back
    assert "mode: 33152" in out  # 0o100600: rewritten in place, the mode kept
    assert "Edit guest file FILE on the host" in out


def test_prepared_disks_as_guestfish_n_makes_them(tmp_path: Path) -> None:
    proc = subprocess.run(
        [FISH, "-N", "fs:ext4:64M", "-N", f"{tmp_path / 'vol.img'}=lvfs:/dev/data/vol:xfs:400M",
         "-N", "part:gpt:8M", "-m", "/dev/sda1"],
        input="write /hello hi\nlist-filesystems\npart-get-parttype /dev/sdc\n"
              "vfs-type /dev/data/vol\n",
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("/dev/sda1: ext4\n/dev/sdc1: unknown\n/dev/data/vol: xfs\n"
                           "gpt\nxfs\n")
    assert (tmp_path / "test1.img").stat().st_size == 64 << 20
    assert (tmp_path / "test3.img").stat().st_size == 8 << 20
    assert (tmp_path / "vol.img").stat().st_size == 400 << 20
    proc = fish("-a", tmp_path / "test1.img", "-m", "/dev/sda1", "cat", "/hello")
    assert proc.stdout == "hi\n"
