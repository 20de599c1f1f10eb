"""LIVE, CONFIG and CURRENT on both backends: what a hotplug or unplug changes now, and
what the next launch of the same Appliance starts from."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestslots import CONFIG, LIVE, Appliance, SlotState, StateError
from guestslots.testing import testimages as images

pytestmark = [
    pytest.mark.integration,
    pytest.mark.single_pass('tests both backends by itself'),
]

BACKENDS = ["qemu", pytest.param("libvirt", marks=pytest.mark.libvirt)]


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("flags")
    return {n: images.named_image(d, n, None) for n in ("aa", "bb", "cc", "dd")}


def _whoami(app: Appliance) -> dict[str, str]:
    """/whoami of every full slot, by device."""
    out = {}
    for slot in app.slots():
        if slot.state is SlotState.FILLED:
            with app.mounted(slot.device):
                out[slot.device] = app.cat("/whoami").strip()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_live_config_and_current(backend: str, appliance: Appliance,
                                 named: dict[str, Path]) -> None:
    if backend == "libvirt":
        pytest.importorskip("libvirt")
    app = Appliance(backend, accel=appliance.accel.accel if appliance.accel else None)
    try:
        for _ in range(3):
            app.add_drive("/dev/null")
        app.hotplug(0, named["aa"], flags=CONFIG)  # before launch: the definition
        with pytest.raises(StateError, match="running for LIVE"):
            app.hotplug(1, named["bb"], flags=LIVE)
        app.launch()
        assert _whoami(app) == {"/dev/sda": "aa"}
        app.hotplug(1, named["bb"], flags=LIVE)  # now only
        app.hotplug(2, named["cc"], flags=LIVE | CONFIG)  # now and later
        app.unplug(0, flags=CONFIG)  # later only: still plugged now
        app.hotplug(0, named["dd"], flags=CONFIG)  # the next launch's slot 0
        assert _whoami(app) == {"/dev/sda": "aa", "/dev/sdb": "bb", "/dev/sdc": "cc"}
        assert [s.config.path if s.config else None for s in app.slots()] == [
            str(named["dd"]), None, str(named["cc"])]
        app.shutdown()
        # not running: the slots show the definition, which the next launch starts from
        assert [s.state for s in app.slots()] == [SlotState.FILLED, SlotState.EMPTY,
                                                  SlotState.FILLED]
        app.launch()
        assert _whoami(app) == {"/dev/sda": "dd", "/dev/sdc": "cc"}
        app.hotplug(1, named["bb"])  # CURRENT while running: LIVE
        assert app.slots()[1].config is None
        app.unplug(2)  # CURRENT: LIVE; the definition keeps it
        assert app.slots()[2].config is not None
        app.shutdown()
        app.launch()
        assert _whoami(app) == {"/dev/sda": "dd", "/dev/sdc": "cc"}
    finally:
        app.shutdown()
