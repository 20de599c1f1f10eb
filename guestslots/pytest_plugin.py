"""pytest plugin (entry point ``pytest11``): test code against real disk images.

Fixtures:

- ``appliance``: one :class:`guestslots.Appliance` for the whole test
  session, launched the first time a test asks for it, with
  ``--guestslots-slots`` empty slots (default 16).
- ``disk``: a factory, ``disk(path, format=None, writable=False, label=None)``,
  that hotplugs an image into a free slot for one test and unplugs it
  afterwards (unmounting what is mounted).  With ``writable=True`` the guest
  writes to a throwaway overlay: the image on disk never changes.
- ``mounted_image``: a factory, ``mounted_image(path, format=None, rw=False,
  mounts=())``, that mounts an image's filesystems on the host (FUSE, an
  appliance of its own) and gives the directory, unmounted after the test.

Options ``--guestslots-accel`` and ``--guestslots-backend`` choose the
accelerator and backend.  Where this host cannot run an appliance at all (no
QEMU, no supermin, no kernel), the tests that use the fixtures are skipped,
with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from .appliance import Appliance, ApplianceState
from .errors import ApplianceBuildError, GuestslotsError
from .host.build import host_kernel
from .model.slots import SlotState
from .opening import open_appliance


@dataclass(frozen=True)
class Disk:
    """An image plugged for one test: its slot, API device and image path."""

    index: int
    device: str
    path: str


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("guestslots")
    group.addoption("--guestslots-accel", choices=("auto", "kvm", "tcg"), default=None,
                    help="accelerator of the guestslots appliance (default: probe)")
    group.addoption("--guestslots-backend", default=None, choices=("qemu", "libvirt"),
                    help="guestslots backend (default: $GUESTSLOTS_BACKEND, else qemu)")
    group.addoption("--guestslots-slots", type=int, default=16,
                    help="empty slots reserved in the session appliance")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guestslots: the test uses the guestslots appliance")


def cannot_run_reason() -> str:
    """Why this host cannot run an appliance at all, or ``""``."""
    for tool in ("qemu-system-x86_64", "qemu-img", "supermin"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run ./tools/setup)"
    try:
        host_kernel()
    except ApplianceBuildError as e:
        return str(e)
    return ""


@pytest.fixture(scope="session")
def appliance(pytestconfig: pytest.Config) -> Iterator[Appliance]:
    """The session's appliance, launched on first use, shut down at the end."""
    reason = cannot_run_reason()
    if reason:
        pytest.skip(f"guestslots: this host cannot run an appliance: {reason}")
    app = open_appliance(slots=pytestconfig.getoption("--guestslots-slots"), launch=True,
                         backend=pytestconfig.getoption("--guestslots-backend"),
                         accel=pytestconfig.getoption("--guestslots-accel"))
    yield app
    app.shutdown()


@pytest.fixture
def disk(appliance: Appliance) -> Iterator[Callable[..., Disk]]:
    """Factory: ``disk(path, format=None, writable=False, label=None) -> Disk``."""
    plugged: list[int] = []

    def plug(path: str | os.PathLike[str], format: str | None = None, writable: bool = False,
             label: str | None = None) -> Disk:
        index = appliance.hotplug(-1, path, format=format, label=label, overlay=writable)
        plugged.append(index)
        return Disk(index, appliance.slots()[index].device, os.fspath(path))

    yield plug
    if appliance.state is ApplianceState.RUNNING:
        with contextlib.suppress(GuestslotsError):
            appliance.umount_all()
        for index in sorted(set(plugged)):
            if appliance.slots()[index].state is SlotState.FILLED:  # the test may have unplugged
                appliance.unplug(index, force=True)


@pytest.fixture
def mounted_image() -> Iterator[Callable[..., Path]]:
    """Factory: ``mounted_image(path, format=None, rw=False, mounts=()) -> Path``, the
    host directory where the image's filesystems are mounted (FUSE, ``guestslots
    mount``): its operating system's as its fstab says, or its one filesystem, unless
    *mounts* (``DEV[:MOUNTPOINT]``) are given.  Unmounted after the test, every write
    on the image by then (``rw=True`` writes to the image itself)."""
    from .fuse import mounted

    with contextlib.ExitStack() as stack:
        def mount(path: str | os.PathLike[str], format: str | None = None, rw: bool = False,
                  mounts: Sequence[str] = ()) -> Path:
            return stack.enter_context(mounted(path, format=format, rw=rw, mounts=mounts))

        yield mount
