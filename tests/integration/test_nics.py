"""NIC slots (seed 001): user-mode and tap networks, the guest's view, a fetch over them,
reproducible ids in the runtime record, refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from guestslots import CONFIG, Appliance, GuestOSError, NicError
from guestslots.host import runtime
from guestslots.testing.webserver import serving

from .conftest import Image

pytestmark = [pytest.mark.integration, pytest.mark.every_qemu]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, bytes]]:
    """An HTTP server on the host's 127.0.0.1 (only): (port, the bytes of /payload)."""
    root = tmp_path_factory.mktemp("www")
    payload = os.urandom(300_000)
    (root / "payload").write_bytes(payload)
    with serving(root) as port:
        yield port, payload


@pytest.fixture
def netapp(app: Appliance) -> Iterator[Appliance]:
    """The shared appliance; every NIC is removed after the test."""
    yield app
    for nic in app.nics():
        app.remove_nic(nic.slot)


def test_a_user_nic_reaches_the_hosts_127_0_0_1_and_fetches_into_the_guest(
    netapp: Appliance, corpus: dict[str, Image], server: tuple[int, bytes],
) -> None:
    port, payload = server
    assert netapp.nics() == []
    slot = netapp.add_nic()
    assert slot == 0
    (nic,) = netapp.nics()
    assert (nic.slot, nic.network, nic.address, nic.gateway, nic.host) == (
        0, "user", "10.0.2.15/24", "10.0.2.2", "10.0.2.2")
    assert nic.device_id == f"nic-{netapp.id}-0"
    assert nic.interface is not None and nic.interface.startswith("eth") and nic.up
    # the runtime record names it by the same device id
    record = runtime.read(runtime.record_path(netapp.id))
    assert [(n.slot, n.device_id, n.mac) for n in record.nics] == [(0, nic.device_id, nic.mac)]

    image = corpus["whole-qcow2-ext4"]
    index = netapp.hotplug(-1, image.path, format=image.format, overlay=True)
    netapp.mount(netapp.slots()[index].device, "/")
    url = f"http://{nic.host}:{port}/payload"
    assert netapp.fetch(url, "/fetched") == len(payload)
    assert netapp.read_file("/fetched") == payload
    with pytest.raises(GuestOSError, match="HTTP 404"):
        netapp.fetch(f"http://{nic.host}:{port}/missing", "/missing")
    with pytest.raises(GuestOSError, match="only http and https"):
        netapp.fetch("file:///etc/passwd", "/passwd")

    assert netapp.remove_nic() == 0  # -1: the highest full slot
    assert netapp.nics() == []
    assert runtime.read(runtime.record_path(netapp.id)).nics == ()
    with pytest.raises(GuestOSError, match="10.0.2.2"):
        netapp.fetch(url, "/again", timeout=5)  # no NIC: no route to the host


def test_two_user_nics_each_have_their_own_network_and_unplug_by_slot(
    netapp: Appliance, corpus: dict[str, Image], server: tuple[int, bytes],
) -> None:
    port, payload = server
    assert netapp.add_nic(1) == 1
    assert netapp.add_nic() == 0  # -1: the first free slot
    nics = {n.slot: n for n in netapp.nics()}
    assert {s: (n.address, n.gateway) for s, n in nics.items()} == {
        0: ("10.0.2.15/24", "10.0.2.2"), 1: ("10.0.3.15/24", "10.0.3.2")}
    assert nics[0].interface != nics[1].interface and nics[0].mac != nics[1].mac
    assert netapp.remove_nic(0) == 0
    (left,) = netapp.nics()
    assert left.slot == 1 and left.up
    image = corpus["whole-qcow2-ext4"]
    index = netapp.hotplug(-1, image.path, format=image.format, overlay=True)
    netapp.mount(netapp.slots()[index].device, "/")
    assert netapp.fetch(f"http://10.0.3.2:{port}/payload", "/p") == len(payload)


def test_the_default_route_moves_to_the_next_nic_when_its_nic_goes(
    netapp: Appliance,
) -> None:
    """The first NIC with a gateway carries the guest's default route; removing it
    moves the route to a NIC that is left (the agent routes again before the unplug)."""
    netapp.add_nic(0)
    netapp.add_nic(1)
    assert {n.slot: n.default_route for n in netapp.nics()} == {0: True, 1: False}
    netapp.remove_nic(0)
    (left,) = netapp.nics()
    assert (left.slot, left.up, left.default_route) == (1, True, True)
    netapp.remove_nic(1)
    netapp.add_nic(2, network="user")
    assert [n.default_route for n in netapp.nics()] == [True]


def test_bad_nic_requests_are_refused_and_change_nothing(netapp: Appliance) -> None:
    netapp.add_nic(2)
    before = netapp.nics()
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: netapp.add_nic(8), "NIC slots are 0 to 7"),
        (lambda: netapp.add_nic(2), "already has a NIC"),
        (lambda: netapp.add_nic(network="bridge"), "network 'bridge'"),
        (lambda: netapp.add_nic(mac="01:00:5e:00:00:01"), "unicast"),
        (lambda: netapp.add_nic(address="10.1.1.1/24"), "fixed addresses"),
        (lambda: netapp.add_nic(network="tap", tap="tap0"), "needs address="),
        (lambda: netapp.add_nic(network="tap", tap="tap0", address="10.1.1.0/24"),
         "network's own address"),
        (lambda: netapp.add_nic(network="tap", tap="x" * 16, address="10.1.1.2/24"),
         "host interface name"),
        (lambda: netapp.remove_nic(3), "has no NIC"),
    ]
    for call, match in calls:
        with pytest.raises(NicError, match=match):
            call()
        assert netapp.nics() == before


def test_a_nic_in_the_definition_is_plugged_at_launch() -> None:
    app = Appliance()
    try:
        assert app.add_nic() == 0  # not running: CURRENT is CONFIG
        assert [n.slot for n in app.nics()] == [0] and app.nics()[0].interface is None
        app.launch()
        (nic,) = app.nics()
        assert nic.up and nic.address == "10.0.2.15/24"
        app.remove_nic(0)  # LIVE only: the definition keeps it
        assert app.nics() == []
        app.shutdown()
        assert [n.slot for n in app.nics()] == [0]
        app.remove_nic(0, flags=CONFIG)
        assert app.nics() == []
    finally:
        app.shutdown()


_TAP_CHILD = textwrap.dedent("""
    import http.server, subprocess, sys, threading
    import guestslots
    for cmd in ("ip link set lo up", "ip tuntap add dev gstap0 mode tap",
                "ip addr add 192.168.77.1/24 dev gstap0", "ip link set gstap0 up"):
        subprocess.run(cmd.split(), check=True)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("served to " + self.client_address[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(("192.168.77.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with guestslots.Appliance() as app:
        app.add_drive(sys.argv[1], format=sys.argv[2], overlay=True)
        app.launch()
        slot = app.add_nic(network="tap", tap="gstap0", address="192.168.77.2/24")
        nic, = app.nics()
        print(slot, nic.network, nic.tap, nic.address, nic.up)
        app.mount("/dev/sda", "/")
        app.fetch(f"http://192.168.77.1:{httpd.server_address[1]}/", "/got")
        print(app.cat("/got"))
        app.remove_nic(slot)
        print(len(app.nics()))
""")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None
                    or shutil.which("ip") is None,
                    reason="a network namespace and a tap device need root, unshare and ip")
def test_a_tap_nic_in_a_private_network_namespace(corpus: dict[str, Image],
                                                  tmp_path: Path) -> None:
    image = corpus["whole-qcow2-ext4"]
    # the whole appliance runs in a network namespace of its own: no traffic leaves it
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", _TAP_CHILD,
                           str(image.path), image.format],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "0 tap gstap0 192.168.77.2/24 True", "served to 192.168.77.2", "0"]
