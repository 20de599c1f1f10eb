#!/usr/bin/env python3
"""Measure, on each QEMU, what guestslots' version rules are about (issue 34): under
TCG, what a vCPU hotplug sequence does to QEMU and its guest, with guestslots' own
refusals set aside; and the facts that differ by version (machine type, the
DEVICE_DELETED delay of an unplug).

Each scenario runs in a fresh appliance (``max_vcpus=4``) and ends in one verdict:
``ok`` (QEMU runs and the guest answers), ``QEMU died`` (and how), or ``guest locked
up`` (no answer within the call timeout).  Prints one table row per scenario and
QEMU.  The system's QEMU and tools/second-qemu's are measured unless QEMUs are named:

    .venv/bin/python tools/bench/qemu_rules.py [--timeout S] [QEMU...]

Under KVM the vCPU rules do not apply; this forces TCG.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import guestslots
from guestslots import AgentError, Appliance, ApplianceState, GuestslotsError, QemuError
from guestslots.appliance import cpus as appliance_cpus
from guestslots.appliance import lifecycle
from guestslots.host.qemuversion import reported_version, second_qemu

Scenario = Callable[[Appliance], None]


def plug(app: Appliance, vcpu: int) -> None:
    app.add_vcpu(vcpu)


def unplug(app: Appliance, vcpu: int) -> None:
    app.remove_vcpu(vcpu)
    app._vcpu_unplugged = False  # the save and NIC refusals set aside as well


def gap_then_change(app: Appliance) -> None:
    """Plug 3 before 1 and 2 (a gap), then another CPU change."""
    plug(app, 3)
    plug(app, 1)
    plug(app, 2)


def gap_then_unplug(app: Appliance) -> None:
    """Plug 2 (a gap: 1 absent), then unplug it."""
    plug(app, 2)
    unplug(app, 2)


def gap_then_plug(app: Appliance) -> None:
    """Plug 2 (a gap: 1 absent), then plug 3."""
    plug(app, 2)
    plug(app, 3)


def replug_after_unplug(app: Appliance) -> None:
    """Plug 1, unplug it, plug it again."""
    plug(app, 1)
    unplug(app, 1)
    plug(app, 1)


def replug_five_times(app: Appliance) -> None:
    """Plug and unplug vCPU 1 five times."""
    for _ in range(5):
        plug(app, 1)
        unplug(app, 1)


def save_after_three_unplugs(app: Appliance) -> None:
    """Plug vCPUs 1, 2 and 3, unplug them (3, 2, 1), then save."""
    for vcpu in (1, 2, 3):
        plug(app, vcpu)
    for vcpu in (3, 2, 1):
        unplug(app, vcpu)
    save(app)


def save(app: Appliance) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        app.save(Path(tmp) / "saved", live=True)


def unplug_lower_then_plug(app: Appliance) -> None:
    """Plug 1 and 2, unplug 1 (a gap), plug 3."""
    plug(app, 1)
    plug(app, 2)
    unplug(app, 1)
    plug(app, 3)


def save_after_unplug(app: Appliance) -> None:
    """Plug 1, unplug it, save the appliance (live: it runs on)."""
    plug(app, 1)
    unplug(app, 1)
    save(app)


def nic_after_unplug(app: Appliance) -> None:
    """Plug 1, unplug it, hotplug a NIC (a PCI hotplug)."""
    plug(app, 1)
    unplug(app, 1)
    app.add_nic()


def nic_after_three_unplugs(app: Appliance) -> None:
    """Plug vCPUs 1, 2 and 3, unplug them (3, 2, 1), hotplug a NIC."""
    for vcpu in (1, 2, 3):
        plug(app, vcpu)
    for vcpu in (3, 2, 1):
        unplug(app, vcpu)
    app.add_nic()


def answers(app: Appliance) -> None:
    """The guest answers."""
    app.list_devices()
    app.sync()


def gap_then_migrate(app: Appliance) -> None:
    """Plug 2 (a gap), migrate into a new QEMU process (which starts with 0 and 2)."""
    plug(app, 2)
    app.migrate()
    answers(app)
    plug(app, 1)


def gap_then_save_restore(app: Appliance) -> None:
    """Plug 2 (a gap), save, restore (a new QEMU starts with 0 and 2), plug 1 there."""
    import tempfile

    plug(app, 2)
    with tempfile.TemporaryDirectory() as tmp:
        back = guestslots.restore(app.save(Path(tmp) / "saved"), qemu=app.qemu_binary)
        try:
            answers(back)
            plug(back, 1)
            answers(back)
        finally:
            back.shutdown()


def gap_then_relaunch(app: Appliance) -> None:
    """Plug 2 (a gap), kill QEMU, relaunch from the record (a launch plugs 2 alone)."""
    plug(app, 2)
    app.kill()
    with contextlib.suppress(GuestslotsError):
        app.sync()  # finds it dead: the appliance closes
    app.relaunch()
    answers(app)
    plug(app, 1)


SCENARIOS: dict[str, Scenario] = {
    "plug 3 before 1 and 2 (a gap)": gap_then_change,
    "plug 2 (a gap), unplug it": gap_then_unplug,
    "plug 2 (a gap), plug 3": gap_then_plug,
    "plug, unplug, plug again": replug_after_unplug,
    "plug and unplug five times": replug_five_times,
    "unplug a lower id, then plug": unplug_lower_then_plug,
    "save after an unplug": save_after_unplug,
    "save after three unplugs": save_after_three_unplugs,
    "NIC hotplug after an unplug": nic_after_unplug,
    "NIC hotplug after three unplugs": nic_after_three_unplugs,
    "plug 2 (a gap), migrate, plug 1": gap_then_migrate,
    "plug 2 (a gap), save, restore, plug 1": gap_then_save_restore,
    "plug 2 (a gap), relaunch, plug 1": gap_then_relaunch,
}


def verdict(qemu: str, scenario: Scenario, timeout: float) -> str:
    app = Appliance("qemu", qemu=qemu, accel="tcg", max_vcpus=4, call_timeout=timeout)
    try:
        app.add_drive("/dev/null")
        app.launch()
        pid = app.pid
        try:
            scenario(app)
            if app.state is ApplianceState.RUNNING:  # (not after a save)
                answers(app)  # the guest still answers
        except GuestslotsError as e:
            if not isinstance(e, (QemuError, AgentError)):  # refused: nothing broke
                return f"error: {str(e).splitlines()[0][:80]}"
            pid = app.pid or pid  # a scenario may have moved it to a new process
            alive = pid is not None and Path(f"/proc/{pid}").exists() and \
                Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
            if not alive:
                return f"QEMU died ({_why_dead(app)})"
            if "timed out" in str(e) or "timeout" in str(e).lower():
                return "guest locked up"
            return f"error: {str(e).splitlines()[0][:80]}"
        return "ok"
    finally:
        with contextlib.suppress(Exception):
            app.kill()
        with contextlib.suppress(Exception):
            app.shutdown()


def _counted(verdicts: list[str]) -> str:
    if len(verdicts) == 1:
        return verdicts[0]
    return ", ".join(f"{v} {verdicts.count(v)}/{len(verdicts)}" for v in dict.fromkeys(verdicts))


def _why_dead(app: Appliance) -> str:
    try:
        backend: Any = app._backend
        log = Path(str(backend.workdir), "console.log")
        said = log.read_text(errors="replace")[-200:] if log.exists() else ""
    except (OSError, AttributeError):
        said = ""
    return "signal or exit" + (f": {said.strip().splitlines()[-1]}" if said.strip() else "")


def facts(qemu: str) -> dict[str, str]:
    """The machine type ``pc`` is, and the median DEVICE_DELETED delay of a disk
    unplug (device_del to the event)."""
    out = {}
    with Appliance("qemu", qemu=qemu, accel="tcg") as app:
        app.add_drive("/dev/null")
        app.launch()
        backend: Any = app._backend
        machines = backend.machine.execute("query-machines")
        pc: dict[str, Any] = next((m for m in machines if m.get("alias") == "pc"), {})
        out["machine type pc"] = str(pc.get("name", "?"))
        image = Path(str(backend.workdir)) / "rules.img"
        subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
        took = []
        for _ in range(10):
            app.hotplug(0, image)
            started = time.perf_counter()
            app.unplug(0)
            took.append((time.perf_counter() - started) * 1000)
        out["unplug (ms, median of 10)"] = f"{statistics.median(took):.0f}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("qemus", nargs="*", help="QEMU binaries (default: the system's and "
                        "tools/second-qemu's)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each scenario (the verdicts are counted)")
    parser.add_argument("--only", default="", help="scenarios whose name has this")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds a guest may take to answer before it counts as locked up")
    args = parser.parse_args()
    qemus = args.qemus or [q for q in ("/usr/bin/qemu-system-x86_64", second_qemu())
                           if Path(q).exists()]
    # guestslots' own TCG vCPU refusals are what is being measured: set aside
    setattr(appliance_cpus, "check_tcg_change", lambda *a, **k: None)  # noqa: B010
    setattr(appliance_cpus, "check_tcg_definition", lambda *a, **k: None)  # noqa: B010
    setattr(lifecycle, "check_tcg_definition", lambda *a, **k: None)  # noqa: B010
    versions = {q: reported_version(q) for q in qemus}
    print(f"guestslots {guestslots.__version__}; TCG; "
          + ", ".join(f"QEMU {v} ({q})" for q, v in versions.items()))
    rows: list[tuple[str, dict[str, str]]] = []
    for name, scenario in SCENARIOS.items():
        if args.only not in name:
            continue
        rows.append((name, {q: _counted([verdict(q, scenario, args.timeout)
                                         for _ in range(args.repeat)]) for q in qemus}))
        print(f"| {name} | " + " | ".join(rows[-1][1].values()) + " |", flush=True)
    per_qemu = {q: facts(q) for q in qemus}
    for key in next(iter(per_qemu.values())):
        print(f"| {key} | " + " | ".join(per_qemu[q][key] for q in qemus) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
