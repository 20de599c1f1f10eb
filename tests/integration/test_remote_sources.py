"""Remote sources in slots: NBD (Unix socket and TCP), HTTP and HTTPS, on both backends;
every bad source a clear error with the slot left empty and the appliance answering."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestslots import Appliance, DriveError, GuestslotsError, SlotState
from guestslots.host import runtime
from guestslots.testing import certs, nbdserver, sshserver, webserver
from guestslots.testing import testimages as images

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]

CLI = str(Path(sys.executable).parent / "guestslots")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of images: ``disk.img`` (MBR, ext4 naming itself, a 4 MiB file of
    known bytes) and ``disk.qcow2`` (the same, as qcow2)."""
    d = tmp_path_factory.mktemp("served")
    blob = hashlib.sha256(b"remote").digest() * (4 * 1024 * 1024 // 32)
    fs = images.ext4(d / "disk.fs", {"whoami": "remote-disk\n", "blob": blob})
    img = images.partitioned(d / "disk.img", "dos", fs)
    images.qcow2(img, d / "disk.qcow2")
    return d


BLOB_SHA = hashlib.sha256(hashlib.sha256(b"remote").digest() * (4 * 1024 * 1024 // 32)
                          ).hexdigest()


@pytest.fixture(scope="module")
def web(served: Path) -> Iterator[dict[str, str]]:
    """HTTP with ranges, HTTPS with ranges (a certificate made for the test, not one the
    host trusts) and HTTP without ranges, serving *served*."""
    cert = webserver.self_signed(served)
    with webserver.serving(served, ranges=True) as http, \
            webserver.serving(served, ranges=True, tls=cert) as https, \
            webserver.serving(served) as plain:
        yield {"http": f"http://127.0.0.1:{http}", "https": f"https://127.0.0.1:{https}",
               "noranges": f"http://127.0.0.1:{plain}"}


def read_back(app: Appliance, device: str) -> tuple[str, str]:
    """/whoami and the SHA-256 of /blob on *device*, mounted read-only."""
    with app.mounted(device, "/", readonly=True):
        return app.cat("/whoami").strip(), hashlib.sha256(app.read_file("/blob")).hexdigest()


def test_nbd_exports_on_a_socket_and_on_tcp_by_name(app: Appliance, served: Path,
                                                    tmp_path: Path) -> None:
    with nbdserver.serving(served / "disk.img", tmp_path, export="raw") as unix, \
            nbdserver.serving(served / "disk.qcow2", tmp_path, export="q", tcp=True,
                              fmt="raw") as tcp:
        assert app.hotplug(0, unix) == 0
        assert app.hotplug(1, tcp, format="qcow2") == 1
        assert app.slots()[0].path == unix
        assert app.list_filesystems() == {"/dev/sda1": "ext4", "/dev/sdb1": "ext4"}
        assert read_back(app, "/dev/sda1") == ("remote-disk", BLOB_SHA)
        assert read_back(app, "/dev/sdb1") == ("remote-disk", BLOB_SHA)
        app.unplug(1)
        app.unplug(0)


def test_a_writable_nbd_slot_writes_to_the_export(app: Appliance, served: Path,
                                                  tmp_path: Path) -> None:
    image = tmp_path / "rw.img"
    image.write_bytes((served / "disk.img").read_bytes())
    with nbdserver.serving(image, tmp_path, export="rw", readonly=False) as url:
        app.hotplug(0, url, readonly=False)
        with app.mounted("/dev/sda1", "/", readonly=False):
            app.write("/written", "over nbd")
        app.unplug(0)
        app.hotplug(0, url)
        with app.mounted("/dev/sda1", "/", readonly=True):
            assert app.cat("/written") == "over nbd"
        app.unplug(0)
    with nbdserver.serving(image, tmp_path, export="ro") as url:
        with pytest.raises(DriveError, match="nbd.*slot 0|read-only|Permission"):
            app.hotplug(0, url, readonly=False)
        assert app.slots()[0].state is SlotState.EMPTY


def test_http_and_https_slots_read_only_and_with_a_throwaway_overlay(
        app: Appliance, web: dict[str, str]) -> None:
    app.hotplug(0, f"{web['http']}/disk.img")
    app.hotplug(1, f"{web['https']}/disk.qcow2?token=x", format="qcow2", sslverify=False)
    assert read_back(app, "/dev/sda1") == ("remote-disk", BLOB_SHA)
    assert read_back(app, "/dev/sdb1") == ("remote-disk", BLOB_SHA)
    app.unplug(1)
    app.unplug(0)
    app.hotplug(0, f"{web['http']}/disk.img", overlay=True)
    with app.mounted("/dev/sda1", "/", readonly=False):
        app.write("/whoami", "changed\n")
        assert app.cat("/whoami") == "changed\n"
    app.unplug(0)
    app.hotplug(0, f"{web['http']}/disk.img")
    assert read_back(app, "/dev/sda1")[0] == "remote-disk"
    app.unplug(0)


def test_bad_sources_are_clear_errors_and_leave_the_slot_empty(
        app: Appliance, web: dict[str, str], served: Path, tmp_path: Path) -> None:
    dead = f"nbd://127.0.0.1:{nbdserver.free_port()}/x"
    with nbdserver.serving(served / "disk.img", tmp_path, export="there") as there:
        cases = [
            (dead, {}, "Connection refused"),
            (there.replace("/there?", "/missing?"), {}, "export 'missing' not present"),
            (f"{web['http']}/missing.img", {}, "404"),
            (f"{web['noranges']}/disk.img", {}, "byte ranges"),
            (f"{web['https']}/disk.img?token=secret", {}, "certificate"),
            (f"{web['http']}/disk.img", {"readonly": False}, "read-only"),
            (f"{web['http']}/disk.qcow2", {}, "looks like a qcow2 image"),
            ("gopher://127.0.0.1/x", {}, "unknown scheme 'gopher'"),
            ("https://me:hunter2@127.0.0.1/x", {}, "password in the URL is refused"),
        ]
        for url, kw, said in cases:
            with pytest.raises(DriveError) as raised:
                app.hotplug(2, url, **kw)  # type: ignore[arg-type]
            message = str(raised.value)
            assert said in message, (url, message)
            assert "secret" not in message and "hunter2" not in message, message
            assert app.slots()[2].state is SlotState.EMPTY
        assert app.list_devices()[2] == "/dev/sdc"  # the appliance still answers


def test_a_server_that_goes_away_fails_its_reads_not_the_appliance(
        app: Appliance, served: Path, tmp_path: Path) -> None:
    app.hotplug(1, str(served / "disk.img"))
    with nbdserver.serving(served / "disk.img", tmp_path, export="gone") as url:
        app.hotplug(0, url)
        pidfile = tmp_path / "qemu-nbd-gone.pid"
        size = app.blockdev_getsize64("/dev/sda")
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        with pytest.raises(GuestslotsError):
            app.pread_device("/dev/sda", 4096, size - (1 << 20))  # never read: not cached
        assert read_back(app, "/dev/sdb1") == ("remote-disk", BLOB_SHA)
        app.unplug(0)
        assert app.slots()[0].state is SlotState.EMPTY
    app.unplug(1)


def test_the_cli_reads_a_file_from_an_nbd_export(tmp_path: Path) -> None:
    image = images.linux_image(tmp_path, "remoteos", hostname="overnbd")
    with nbdserver.serving(image, tmp_path, export="cli") as url:
        out = subprocess.run([CLI, "cat", url, "/etc/hostname"], capture_output=True,
                             text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "overnbd"


def test_nbd_over_tls_checks_the_servers_certificate(app: Appliance, served: Path,
                                                     tmp_path: Path) -> None:
    server, client = certs.x509_dirs(tmp_path / "pki")
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    certs.x509_dirs(stranger / "pki")  # another CA: it did not sign the server's
    with nbdserver.serving(served / "disk.img", tmp_path, export="tls", tcp=True,
                           tls=server) as url:
        plain = url.replace("nbds://", "nbd://")
        with pytest.raises(DriveError, match="TLS"):
            app.hotplug(0, plain)
        with pytest.raises(DriveError, match="certificate|verif"):
            app.hotplug(0, f"{url}?tls-certificates={stranger / 'pki' / 'client'}")
        assert app.slots()[0].state is SlotState.EMPTY
        good = f"{url}?tls-certificates={client}"
        if app.backend == "libvirt":
            with pytest.raises(DriveError, match="cannot take nbds://"):
                app.hotplug(0, good)
            return
        app.hotplug(0, good)
        assert read_back(app, "/dev/sda1") == ("remote-disk", BLOB_SHA)
        app.unplug(0)
        app.hotplug(0, good)  # its TLS object was removed with the slot: the id is free
        app.unplug(0)


@pytest.mark.single_pass("the QEMU backend's QEMU inherits the caller's ssh agent; libvirt's "
                         "QEMU gets no agent (its key would be ~/.ssh/id_* of QEMU's user)")
def test_an_ssh_slot_checks_the_host_key_and_logs_in_with_the_agents_key(
        served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    why = sshserver.unavailable()
    if why:
        pytest.skip(why)
    with sshserver.serving(tmp_path / "ssh") as ssh:
        monkeypatch.setenv("SSH_AUTH_SOCK", ssh.agent_socket)
        base = f"ssh://root@127.0.0.1:{ssh.port}{served}"
        with Appliance("qemu") as own:  # launched with the agent in its environment
            own.add_drive("/dev/null")
            own.launch()
            own.hotplug(0, f"{base}/disk.qcow2?host_key_check=sha256:{ssh.fingerprint}",
                        format="qcow2")
            assert read_back(own, "/dev/sda1") == ("remote-disk", BLOB_SHA)
            own.unplug(0)
            wrong = "0" * 64
            with pytest.raises(DriveError, match="fingerprint .* does not match host_key"):
                own.hotplug(0, f"{base}/disk.img?host_key_check=sha256:{wrong}")
            with pytest.raises(DriveError, match="No such file"):
                own.hotplug(0, f"{base}/missing.img?host_key_check=sha256:{ssh.fingerprint}")
            assert own.slots()[0].state is SlotState.EMPTY


def test_a_server_that_never_answers_is_refused_within_the_calls_timeout(
        app: Appliance) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"nbd://127.0.0.1:{silent.getsockname()[1]}/e"
        saved, app.call_timeout = app.call_timeout, 3.0
        try:
            with pytest.raises(DriveError, match="no answer in 3 s"):
                app.hotplug(0, url)
        finally:
            app.call_timeout = saved
    assert app.slots()[0].state is SlotState.EMPTY
    assert app.list_devices()[0] == "/dev/sda"


def test_relaunch_reopens_remote_slots_from_the_runtime_record(
        served: Path, web: dict[str, str], tmp_path: Path) -> None:
    with nbdserver.serving(served / "disk.img", tmp_path, export="again") as nbd:
        https = f"{web['https']}/disk.qcow2?token=x"
        app = Appliance()
        try:
            for _ in range(2):
                app.add_drive("/dev/null")
            app.launch()
            app.hotplug(0, nbd, label="nbd")
            app.hotplug(1, https, format="qcow2", sslverify=False)
            record = runtime.read(runtime.record_path(app.id))
            assert [(s.path, s.sslverify) for s in record.slots] == [(nbd, None),
                                                                     (https, False)]
            app.kill()  # QEMU dies under the appliance
            with pytest.raises(GuestslotsError):
                app.list_filesystems()  # ...which the next call finds
            app.relaunch()  # the sources are reopened, sslverify=False kept
            assert [(s.path, s.label) for s in app.slots()] == [(nbd, "nbd"), (https, None)]
            assert read_back(app, "/dev/sda1") == ("remote-disk", BLOB_SHA)
            assert read_back(app, "/dev/sdb1") == ("remote-disk", BLOB_SHA)
        finally:
            app.shutdown()
