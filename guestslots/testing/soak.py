"""Plug and unplug one slot many times and report what grows: the caller's file
descriptors and memory, QEMU's memory, QEMU's block nodes, and the cycle time.

Used by ``tools/bench/soak.py`` (1000 cycles) and, shorter, by the test suite.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ..appliance import Appliance
from ..backends.qemu import QemuBackend


def plug_times(app: Appliance, index: int, image: str | os.PathLike[str],
               rounds: int) -> tuple[list[float], list[float]]:
    """The seconds each of *rounds* hotplugs of *image* into slot *index* took, and each
    unplug after it."""
    plug: list[float] = []
    unplug: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        app.hotplug(index, image)
        plug.append(time.perf_counter() - started)
        started = time.perf_counter()
        app.unplug(index)
        unplug.append(time.perf_counter() - started)
    return plug, unplug


def _rss_kib(pid: int | str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Sample:
    """What is measured after one cycle."""

    cycle: int
    fds: int
    caller_rss_kib: int
    qemu_rss_kib: int
    block_nodes: int


@dataclass(frozen=True)
class Soak:
    """Every cycle's duration, and samples taken along the way."""

    seconds: list[float]
    samples: list[Sample]

    def median(self, first: bool, n: int = 50) -> float:
        """The median cycle time of the first (or last) *n* cycles."""
        part = self.seconds[:n] if first else self.seconds[-n:]
        return statistics.median(part)


def _block_nodes(app: Appliance) -> int:
    """How many block nodes QEMU has: its own view, below the API on purpose (on the
    libvirt backend through libvirt's QEMU monitor passthrough)."""
    backend = app._backend
    if isinstance(backend, QemuBackend):
        assert backend.machine is not None
        return len(backend.machine.execute("query-named-block-nodes", {"flat": True}))
    import libvirt_qemu  # libvirt-python's

    from ..backends.libvirt import LibvirtBackend

    assert isinstance(backend, LibvirtBackend) and backend.domain is not None, \
        "a running appliance on the QEMU or libvirt backend"
    domain = backend.domain
    query = {"execute": "query-named-block-nodes", "arguments": {"flat": True}}
    return len(json.loads(libvirt_qemu.qemuMonitorCommand(domain, json.dumps(query), 0))
               ["return"])


def sample(app: Appliance, cycle: int) -> Sample:
    """Measure *app* and its caller now."""
    assert app.pid is not None
    return Sample(cycle, len(os.listdir("/proc/self/fd")), _rss_kib("self"),
                  _rss_kib(app.pid), _block_nodes(app))


def soak(app: Appliance, image: Path, cycles: int, index: int = 0, every: int = 1) -> Soak:
    """Hotplug *image* into slot *index* and unplug it *cycles* times; a sample before
    the first cycle and after every *every* cycles (and the last)."""
    seconds: list[float] = []
    samples = [sample(app, 0)]
    for cycle in range(1, cycles + 1):
        started = time.perf_counter()
        app.hotplug(index, image)
        app.unplug(index)
        seconds.append(time.perf_counter() - started)
        if cycle % every == 0 or cycle == cycles:
            samples.append(sample(app, cycle))
    return Soak(seconds, samples)
