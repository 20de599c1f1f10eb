"""command and sh (issue 17): guest programs run with the guest filesystem as /, inside
the appliance, in namespaces of their own: they change the guest, see none of the
appliance's devices or processes, and are stopped at their time limit."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from guestslots import Appliance, GuestslotsError
from guestslots.testing import attacker
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration,
              pytest.mark.single_pass("the agent's own work: the same on both backends")]

#: A guest that can run programs: the host's dash as /bin/sh, with its loader and libc.
RUNTIME = ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6")


#: The classic way out of a chroot: chroot into a subdirectory while the working
#: directory stays outside it, walk up with "..", chroot there.  It prints whether "/"
#: is still the guest's root afterwards.
ESCAPE_C = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    struct stat before, after;
    stat("/", &before);
    mkdir("/way-out", 0755);
    if (chroot("/way-out") != 0) { puts("chroot refused"); return 0; }
    for (int i = 0; i < 64; i++) chdir("..");
    chroot(".");
    stat("/", &after);
    puts(before.st_dev == after.st_dev && before.st_ino == after.st_ino
         ? "contained" : "escaped");
    return 0;
}
"""


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("exec")
    files: dict[str, bytes | str] = {"bin/sh": Path("/bin/dash").read_bytes(),
                                     "bin/escape": attacker.compile_static("escape", ESCAPE_C, tmp),
                                     "etc/hostname": "guest\n"}
    for lib in RUNTIME:
        files[lib.lstrip("/")] = Path(lib).resolve().read_bytes()
    for d in ("proc", "sys", "dev", "tmp"):
        files[f"{d}/.keep"] = ""
    return images.ext4(tmp / "guest.img", files, size_mib=32,
                       nodes={"slot-disk": (stat.S_IFBLK | 0o666, 0x800)})  # b 8 0


@pytest.fixture
def running(app: Appliance, guest: Path, tmp_path: Path) -> Appliance:
    img = tmp_path / "guest.img"
    img.write_bytes(guest.read_bytes())
    app.hotplug(0, img, readonly=False)
    app.mount("/dev/sda", "/")
    for program in ("/bin/sh", "/bin/escape", RUNTIME[0]):  # the loader is executed too
        app.chmod(0o755, program)
    return app


def test_a_guest_program_runs_with_the_guest_as_root(running: Appliance) -> None:
    app = running
    assert app.sh("echo hello; echo to-stderr >&2") == "hello\n"
    assert app.command(["/bin/sh", "-c", "echo $0 $1", "a", "b"]) == "a b\n"
    assert app.sh_lines("echo one; echo two") == ["one", "two"]
    app.sh("echo made-inside > /made; read h < /etc/hostname; echo $h >> /made")
    assert app.cat("/made") == "made-inside\nguest\n"
    with pytest.raises(GuestslotsError, match="exit status 3: why"):
        app.sh("echo why >&2; exit 3")
    with pytest.raises(GuestslotsError, match="exit status 127"):
        app.command(["/no/such/program"])


def test_a_guest_program_sees_no_appliance_device_or_process(running: Appliance) -> None:
    app = running
    devices = app.sh("for f in /dev/*; do echo ${f#/dev/}; done").split()
    assert devices == ["fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout",
                       "tty", "urandom", "zero"]
    assert app.sh("echo $$") == "1\n"  # its own PID namespace: the agent is not there
    # a device node the guest planted (the slot's own disk) opens nothing: nodev
    with pytest.raises(GuestslotsError, match="exit status"):
        app.sh("read x < /slot-disk")
    with pytest.raises(GuestslotsError, match="exit status"):
        app.sh("echo 1 > /proc/sys/kernel/sysrq")  # read-only
    with pytest.raises(GuestslotsError, match="exit status"):
        app.sh("echo o > /proc/sysrq-trigger")  # read-only: would power the appliance off
    assert app.sh("echo still here") == "still here\n"
    assert app.list_filesystems()["/dev/sda"] == "ext4"


def test_a_guest_program_cannot_walk_out_of_the_guest_root(running: Appliance) -> None:
    # before the fix: "escaped", into the appliance's own root (every slot's disk there)
    assert running.command(["/bin/escape"]) in ("chroot refused\n", "contained\n")


def test_sysrq_is_read_only_in_a_guest_without_dev(running: Appliance) -> None:
    app = running
    app.rm_rf("/dev")  # the masking must not depend on the guest's /dev
    with pytest.raises(GuestslotsError, match="exit status"):
        app.sh("echo o > /proc/sysrq-trigger")
    assert app.sh("echo still here") == "still here\n"


def test_a_guest_program_is_stopped_at_its_time_limit(running: Appliance) -> None:
    app = running
    with pytest.raises(GuestslotsError, match="no end in 2 s"):
        app.sh("while :; do :; done", timeout=2)
    with pytest.raises(GuestslotsError, match="no end in 2 s"):
        app.sh("sh -c 'while :; do :; done' & wait", timeout=2)  # its children too
    assert app.sh("echo next") == "next\n"  # the channel is in step


def test_guest_programs_do_not_run_on_a_read_only_root(app: Appliance, guest: Path) -> None:
    app.hotplug(0, guest)
    app.mount_ro("/dev/sda", "/")
    with pytest.raises(GuestslotsError, match="writable root mount"):
        app.sh("echo no")
