"""Many images at once: the pool (threads of appliances), Ctrl-C, the CLI's scan, Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import guestslots
from guestslots import Appliance, ChannelClosed, DriveError, Pool
from guestslots.testing import testimages as images

pytestmark = pytest.mark.integration

GOOD = 9


def whoami(app: Appliance) -> str:
    """The image's /whoami; an image that says ``die`` kills its own appliance first."""
    device = next(iter(app.list_filesystems()))
    app.mount_ro(device, "/")
    who = app.cat("/whoami").strip()
    if who == "die":
        app.kill()
        app.cat("/whoami")
    return who


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """12 images: 9 good (raw and qcow2, GPT, MBR and bare filesystems; one of them
    kills its appliance), a missing one, a corrupt qcow2, a hostile qcow2."""
    d = tmp_path_factory.mktemp("fleet")
    out: list[tuple[str, str]] = []
    tables = ["gpt", "dos", None]
    for i in range(GOOD):
        name = "die" if i == 4 else f"good{i}"
        fmt = "qcow2" if i % 2 else "raw"
        out.append((str(images.named_image(d, name, tables[i % 3], fmt)), fmt))
    out.append((str(d / "missing.img"), "raw"))
    corrupt = d / "corrupt.qcow2"
    corrupt.write_bytes(b"QFI\xfb" + os.urandom(64 * 1024))
    out.append((str(corrupt), "qcow2"))
    secret = images.ext4(d / "secret.fs", {"whoami": "secret\n"})
    hostile = d / "hostile.qcow2"
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", "-o",
              f"data_file={secret},data_file_raw=on", hostile, "16M")
    out.append((str(hostile), "qcow2"))
    return out


def check_results(fleet: list[tuple[str, str]], results: list[guestslots.ImageResult[str]]
                  ) -> None:
    assert [r.image for r in results] == [path for path, _ in fleet]
    by_name = {Path(r.image).name: r for r in results}
    for path, _fmt in fleet[:GOOD]:
        name = Path(path).name
        result = by_name[name]
        if name.startswith("die"):
            assert isinstance(result.error, ChannelClosed), result
        else:
            assert result.ok, result
            assert result.get() == Path(path).stem
    missing, corrupt, hostile = results[GOOD:]
    assert isinstance(missing.error, DriveError) and "missing.img" in str(missing.error)
    assert isinstance(corrupt.error, DriveError) and "corrupt.qcow2" in str(corrupt.error)
    assert isinstance(hostile.error, DriveError)
    assert "external data file" in str(hostile.error)
    with pytest.raises(DriveError):
        missing.get()


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "shared"])
def test_a_pool_answers_every_good_image_and_says_why_each_bad_one_failed(
    fleet: list[tuple[str, str]], isolate: bool
) -> None:
    with Pool(workers=2, isolate=isolate) as pool:
        results = pool.map(whoami, fleet)
        check_results(fleet, results)
        # nothing is left running: every appliance the pool started has stopped
        assert not pool._live


def _gone(pid: int, timeout: float) -> bool:
    """Whether process *pid* is gone, waiting up to *timeout* for it to exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        import select

        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_ctrl_c_stops_the_run_and_leaves_no_qemu(fleet: list[tuple[str, str]]) -> None:
    started: list[int] = []
    both = threading.Event()
    lock = threading.Lock()

    def busy(app: Appliance) -> str:
        with lock:
            assert app.pid is not None
            started.append(app.pid)
            if len(started) == 2:
                both.set()
        deadline = time.monotonic() + 300  # a broken Ctrl-C fails the test, never hangs it
        while time.monotonic() < deadline:  # until Ctrl-C kills this appliance
            app.list_filesystems()
        return "not interrupted"

    def interrupt() -> None:
        both.wait(120)  # both busy (or the test fails below): Ctrl-C
        os.kill(os.getpid(), signal.SIGINT)

    good = fleet[:4]
    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        Pool(workers=2).map(busy, good * 3)
    assert len(started) == 2, "two appliances were busy when Ctrl-C came; no more started"
    for pid in started:
        assert _gone(pid, 10), f"QEMU {pid} is still running after Ctrl-C"


def test_guestslots_scan_writes_one_json_line_per_image(
    fleet: list[tuple[str, str]], tmp_path: Path
) -> None:
    d = tmp_path / "images"
    (d / "sub").mkdir(parents=True)
    for i, (path, fmt) in enumerate(fleet[:3] + fleet[GOOD + 1:GOOD + 2]):
        where = d / "sub" if i % 2 else d
        os.link(path, where / (Path(path).stem + (".qcow2" if fmt == "qcow2" else ".img")))
    (d / "notes.txt").write_text("not an image\n")
    proc = subprocess.run([sys.executable, "-m", "guestslots.cli", "scan", "-j", "2", str(d)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stderr  # the corrupt image failed
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {Path(r["image"]).name: r for r in lines}
    assert sorted(by_name) == ["corrupt.qcow2", "good0.img", "good1.qcow2", "good2.img"]
    assert "error" in by_name["corrupt.qcow2"]
    assert by_name["good0.img"]["filesystems"]["/dev/sda1"]["label"] == "good0"
    assert by_name["good1.qcow2"]["filesystems"]["/dev/sda1"]["label"] == "good1"
    assert list(by_name["good2.img"]["filesystems"]) == ["/dev/sda"]


def test_inspect_jobs_inspects_each_image_on_its_own(fleet: list[tuple[str, str]]) -> None:
    good0, good2, missing = fleet[0][0], fleet[2][0], fleet[GOOD][0]

    def inspect(*images: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guestslots.cli", "inspect", "--jobs",
                               "2", *images], capture_output=True, text=True, timeout=600,
                              check=False)

    proc = inspect(good0, good2)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["image"] for r in report] == [good0, good2]
    # each in slot 0 of an appliance of its own
    assert [r["device"] for r in report] == ["/dev/sda", "/dev/sda"]
    # one failed image: its error in the report, and exit status 1
    proc = inspect(good0, missing)
    assert proc.returncode == 1, proc.stdout
    report = json.loads(proc.stdout)
    assert "error" not in report[0] and "missing.img" in report[1]["error"]


@pytest.mark.single_pass("the pool's work on another engine: the backends are the pool's")
def test_dask_gives_the_same_answers_as_the_pool(fleet: list[tuple[str, str]]) -> None:
    distributed = pytest.importorskip("distributed")
    import guestslots.dask

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        results = guestslots.dask.map(client, whoami, fleet)
        check_results(fleet, results)
        # every worker has the plugin that keeps its appliances
        plugged = client.run(lambda dask_worker: guestslots.dask.PLUGIN in dask_worker.plugins)
        assert list(plugged.values()) == [True, True]
        shared = guestslots.dask.map(client, whoami, fleet, isolate=False)
        check_results(fleet, shared)
