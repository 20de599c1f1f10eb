"""One real appliance for the whole test session, and the images the tests use."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import guestslots
from guestslots import Appliance, SlotState
from guestslots.appliance import BACKEND_ENV, QEMU_ENV
from guestslots.testing import peer
from guestslots.testing import testimages as images


def pytest_configure(config: pytest.Config) -> None:
    """``GUESTSLOTS_TEST_QEMU=/path`` runs the tests on that QEMU (tools/test's pass on
    the second QEMU): every appliance they make takes it, in this process and in the
    command-line processes they start (``$GUESTSLOTS_QEMU``)."""
    qemu = os.environ.get("GUESTSLOTS_TEST_QEMU")
    if qemu:
        os.environ[QEMU_ENV] = qemu


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``single_pass`` tests run in the QEMU pass only (tools/test runs the integration
    tests once per backend): they test QEMU itself, or both backends by themselves."""
    backend = (config.getoption("--guestslots-backend") or os.environ.get(BACKEND_ENV)
               or "qemu")
    if backend == "qemu":
        return
    for item in items:
        marker = item.get_closest_marker("single_pass")
        if marker is not None:
            reason = marker.args[0] if marker.args else "runs in the QEMU pass only"
            item.add_marker(pytest.mark.skip(reason=f"single pass ({backend}): {reason}"))


#: Slots reserved in the shared appliance (the 64-slot test needs 64); pyproject.toml
#: passes it to the plugin as --guestslots-slots.
RESERVED = 70


@dataclass(frozen=True)
class Image:
    """A test image: its path, format, and the device (relative to the disk) holding /whoami."""

    name: str
    path: Path
    format: str
    fs_partition: int  # 0: the filesystem is the whole disk
    fstype: str


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def corpus(image_dir: Path) -> dict[str, Image]:
    """MBR and GPT, raw and qcow2, ext4 and xfs; each image names itself in /whoami."""
    d = image_dir
    out: dict[str, Image] = {}

    def who(name: str) -> dict[str, bytes | str]:
        return {"whoami": f"{name}\n"}

    fs = images.ext4(d / "mbr.fs", who("mbr-raw-ext4"))
    out["mbr-raw-ext4"] = Image("mbr-raw-ext4", images.partitioned(d / "mbr.img", "dos", fs),
                                "raw", 1, "ext4")
    fs = images.ext4(d / "gpt.fs", who("gpt-qcow2-ext4"))
    raw = images.partitioned(d / "gpt.raw", "gpt", fs)
    out["gpt-qcow2-ext4"] = Image("gpt-qcow2-ext4", images.qcow2(raw, d / "gpt.qcow2"), "qcow2",
                                  1, "ext4")
    out["whole-raw-xfs"] = Image("whole-raw-xfs", images.xfs(d / "xfs.img", {"whoami":
                                 "whole-raw-xfs\n"}), "raw", 0, "xfs")
    raw = images.ext4(d / "whole.raw", who("whole-qcow2-ext4"))
    out["whole-qcow2-ext4"] = Image("whole-qcow2-ext4", images.qcow2(raw, d / "whole.qcow2"),
                                    "qcow2", 0, "ext4")
    return out


@pytest.fixture(scope="session")
def volumes(tmp_path_factory: pytest.TempPathFactory, shared_appliance: Appliance
            ) -> dict[str, list[Path]]:
    """LVM and md RAID layouts (see :func:`guestslots.testing.peer.build_layouts`), made once
    per session with libguestfs: name -> image files (raw)."""
    missing = peer.available()
    if missing:
        pytest.skip(f"the LVM and md layouts are made with libguestfs: {missing}")
    accel = shared_appliance.accel
    built = peer.build_layouts(tmp_path_factory.mktemp("volumes"),
                               force_tcg=accel is not None and accel.accel == "tcg")
    return {name: [Path(p) for p in paths] for name, paths in built.items()}


@pytest.fixture(scope="session")
def shared_appliance(appliance: Appliance) -> Appliance:
    """The session appliance of guestslots' own pytest plugin (``--guestslots-slots``)."""
    assert len(appliance.slots()) == RESERVED, "run with --guestslots-slots=70 (pyproject)"
    return appliance


@pytest.fixture
def app(shared_appliance: Appliance) -> Iterator[Appliance]:
    """The shared appliance, left with nothing mounted and every slot empty after each test."""
    yield shared_appliance
    shared_appliance.auto_activate = True
    if shared_appliance.state is not guestslots.ApplianceState.RUNNING:
        return
    with contextlib.suppress(guestslots.GuestslotsError):
        shared_appliance.umount_all()
    shared_appliance.diskset_remove_all()
    for slot in shared_appliance.slots():
        if slot.state is SlotState.FILLED:
            shared_appliance.unplug(slot.index, force=True)


def fs_device(app: Appliance, index: int, image: Image) -> str:
    """The API name of the device holding *image*'s filesystem in slot *index*."""
    dev = app.slots()[index].device
    return dev + (str(image.fs_partition) if image.fs_partition else "")


def whoami(app: Appliance, device: str) -> str:
    """Mount *device* read-only, read /whoami, unmount."""
    with app.mounted(device, "/", readonly=True):
        return app.cat("/whoami").strip()


@pytest.fixture(scope="module")
def tcg(shared_appliance: Appliance) -> bool:
    """Whether libguestfs, the peer a test compares with, must be forced to TCG (as the
    appliance found KVM unusable); the test is skipped where libguestfs is missing."""
    from guestslots.testing import peer

    missing = peer.available()
    if missing:
        pytest.skip(f"compared with libguestfs: {missing}")
    return shared_appliance.accel is not None and shared_appliance.accel.accel == "tcg"


def _private_libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from guestslots.backends.libvirt.connection import capabilities_cache
    from guestslots.testing.libvirtd import private_libvirtd, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    with private_libvirtd(tmp_path_factory.mktemp("libvirtd"), capabilities_cache()) as uri:
        yield uri


@pytest.fixture(scope="session")
def libvirtd_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a private libvirtd on this host (:mod:`guestslots.testing.libvirtd`),
    for the libvirt backend to migrate appliances to, or to run detached ones; started
    on first use."""
    yield from _private_libvirtd(tmp_path_factory)


@pytest.fixture(scope="session")
def other_libvirtd_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second private libvirtd (see :func:`libvirtd_uri`): for a domain that runs at
    one daemon to migrate to another."""
    yield from _private_libvirtd(tmp_path_factory)
