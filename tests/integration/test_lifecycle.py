"""Launch failures say why, and no QEMU process outlives its Appliance."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from guestslots import (
    LIVE,
    Appliance,
    ApplianceState,
    ChannelClosed,
    LaunchError,
    StateError,
)
from guestslots.testing import testimages as images

from .test_faults import wait_gone

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


def test_launch_failure_holds_exit_status_command_and_log(tmp_path: Path) -> None:
    app = Appliance(memory_mb=-1)  # QEMU refuses the memory size at once
    app.add_drive("/dev/null")
    with pytest.raises(LaunchError) as e:
        app.launch()
    err = e.value
    if app.backend == "qemu":
        assert err.exitcode == 1
        assert "-m" in err.command and "-1" in err.command
        assert "-m -1" in err.log_tail  # QEMU's own complaint, from its log
        assert "exit status 1" in str(err) and "command: " in str(err)
    else:  # libvirt refuses the domain XML before any QEMU runs
        assert "Invalid value '-1'" in str(err) and "memory" in str(err)
    # nothing is left running, and the Appliance can still be configured and relaunched
    assert app.state is ApplianceState.CONFIG
    assert app.pid is None


def test_qemu_dying_at_start_up_is_a_launch_error_with_its_words(tmp_path: Path) -> None:
    """QEMU starts and dies before it serves QMP (it cannot set up 4 TB of guest
    memory): a LaunchError with QEMU's complaint from its log, nothing left running and
    no work directory left, the Appliance still configurable.  (Before, the QEMU
    backend let qemu.qmp's ConnectError out: "Failed to establish session: EOFError".)"""
    before = set(Path(tempfile.gettempdir()).glob("guestslots-*"))
    app = Appliance(memory_mb=4_000_000)
    app.add_drive("/dev/null")
    with pytest.raises(LaunchError) as e:
        app.launch()
    assert "qemu-system" in e.value.log_tail
    assert re.search(r"phys-bits too low|cannot set up guest memory", e.value.log_tail)
    if app.backend == "qemu":
        assert e.value.exitcode == 1 and "QEMU exited during start-up" in str(e.value)
    assert app.state is ApplianceState.CONFIG
    assert app.pid is None
    left = {p for p in set(Path(tempfile.gettempdir()).glob("guestslots-*")) - before
            if not p.name.startswith("guestslots-lv-")}  # libvirt's root is the process's
    assert not left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    """Wait for *pid* to exit, on the kernel's pidfd notification (no polling sleep)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        import select

        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready) or not _alive(pid)
    finally:
        os.close(fd)


CHILD = textwrap.dedent("""
    import os, signal, sys
    import guestslots
    app = guestslots.Appliance()
    app.add_drive("/dev/null")
    app.launch()
    print(app.pid, flush=True)
    if sys.argv[1] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    # "forget": exit without shutdown
""")


@pytest.mark.parametrize("how", [
    pytest.param("crash", marks=pytest.mark.single_pass(
        "libvirt daemonises QEMU: the next launch kills it (test_libvirt)")),
    "forget",
])
def test_no_qemu_outlives_its_caller(how: str) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, how], capture_output=True, text=True,
                          timeout=300, check=False)
    if how == "crash":
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    qemu_pid = int(proc.stdout.split()[0])
    assert _wait_gone(qemu_pid), f"QEMU {qemu_pid} is still running after the caller {how}ed"


def test_a_dying_qemu_gives_a_clear_error_and_a_closed_appliance(tmp_path: Path) -> None:
    img = images.ext4(tmp_path / "d.img", {"whoami": "d\n"})
    app = Appliance()
    app.add_drive(img)
    app.add_drive("/dev/null")
    app.launch()
    pid = app.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ChannelClosed) as e:
        app.list_filesystems()
    assert "QEMU exited (-9)" in str(e.value) or "QEMU exited (libvirt" in str(e.value)
    assert app.state is ApplianceState.CLOSED
    assert not _alive(pid)
    with pytest.raises(StateError):
        app.hotplug(1, img, flags=LIVE)  # CURRENT would change the definition now
    with pytest.raises(StateError):
        app.cat("/whoami")
    app.shutdown()  # still fine


def test_a_read_only_appliance_is_stopped_without_waiting_for_the_guest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing of a read-only appliance outlives it (its writes go to throwaway
    overlays): shutdown stops it at once, even a stopped QEMU (which the graceful
    path would wait call_timeout for, then warn about)."""
    img = images.ext4(tmp_path / "ro.img", {"whoami": "ro\n"})
    app = Appliance(call_timeout=5)
    app.add_drive(img)
    app.launch()
    app.mount_ro("/dev/sda", "/")
    pid = app.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    with caplog.at_level("WARNING", logger="guestslots"):
        app.shutdown()
    assert "did not power off" not in caplog.text
    assert app.state is ApplianceState.CLOSED
    wait_gone(pid)
