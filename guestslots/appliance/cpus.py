"""vCPUs by id, with LIVE / CONFIG / CURRENT, and TCG's rules."""

from __future__ import annotations

from ..guest.base import serialised
from ..model.cpus import Vcpu, check_tcg_change
from ..model.flags import CONFIG, CURRENT, LIVE
from .core import ApplianceState
from .slots import SlotsArea


class CpusArea(SlotsArea):
    """vCPUs by id, with LIVE / CONFIG / CURRENT, and TCG's rules."""

    def max_vcpus(self) -> int:
        """The number of vCPU ids (``Appliance(max_vcpus=N)``: ids 0 to N-1)."""
        return self._vcpus.max_vcpus

    @serialised
    def vcpus(self) -> list[Vcpu]:
        """Every vCPU id with its state: absent, present (plugged, offline in the guest)
        or online; not running, what the next launch plugs."""
        running = self._state is ApplianceState.RUNNING
        online = set(self._call("vcpus_online")) if running else None
        return self._vcpus.list(running, online)

    def add_vcpu(self, id: int = -1, flags: int = CURRENT) -> int:
        """Plug the vCPU with id *id* (``-1``: the first free id); return the id.

        Ids are 0 to ``max_vcpus - 1`` (``Appliance(max_vcpus=N)``).  ``LIVE``
        plugs it into the running appliance and returns once the guest has it
        online; ``CONFIG`` adds it to what the next launch plugs; ``CURRENT`` is
        ``LIVE`` when running and ``CONFIG`` otherwise.  An id out of range or
        already plugged: :class:`VcpuError`, and nothing changes.
        """
        with self._lock:
            affect = self._affect("add_vcpu", flags)
            vcpu = self._vcpus.add_id(id, bool(affect & LIVE), bool(affect & CONFIG))
            if affect & LIVE:
                self._plug_vcpu(vcpu)
            if affect & CONFIG:
                self._vcpus.config.add(vcpu)
            return vcpu

    def remove_vcpu(self, id: int = -1, flags: int = CURRENT) -> int:
        """Unplug the vCPU with id *id* (``-1``: the highest plugged); return the id.

        The guest offlines it first (its work moves to the other vCPUs), then it
        is unplugged and its removal confirmed by QEMU.  vCPU 0, the boot CPU,
        cannot be removed.  *flags* as for :meth:`add_vcpu`.

        Under TCG, QEMU 7.2 limits this (measured): the plugged ids must stay 0 to
        k-1 (add the lowest free id, remove the highest), and after a ``LIVE``
        removal no vCPU can be plugged until the next launch; anything else is
        refused with :class:`VcpuError`, nothing changed.
        """
        with self._lock:
            affect = self._affect("remove_vcpu", flags)
            vcpu = self._vcpus.remove_id(id, bool(affect & LIVE), bool(affect & CONFIG))
            if affect & LIVE:
                backend, agent = self._running("remove_vcpu")
                self._tcg_vcpu_limits(vcpu, adding=False)
                with self._watch():
                    agent.call("vcpu_unplugging", vcpu=vcpu)
                    self._vcpu_unplugged = True
                    backend.detach_vcpu(vcpu, timeout=self.call_timeout)
                self._vcpus.live.discard(vcpu)
                self._update_runtime()
            if affect & CONFIG:
                self._vcpus.config.discard(vcpu)
            return vcpu

    def _tcg_vcpu_limits(self, vcpu: int, adding: bool) -> None:
        """Under TCG, refuse what QEMU cannot do with vCPUs (see
        :func:`~guestslots.model.cpus.check_tcg_change`)."""
        if self.accel is not None and self.accel.accel == "tcg":
            check_tcg_change(vcpu, adding, self._vcpus.live, self._vcpus.max_vcpus,
                             self._vcpu_unplugged)

    def _plug_vcpu(self, vcpu: int) -> None:
        backend, agent = self._running("add_vcpu")
        self._tcg_vcpu_limits(vcpu, adding=True)
        with self._watch():
            backend.attach_vcpu(vcpu, timeout=self.call_timeout)
            agent.call("vcpu_plugged", vcpu=vcpu, timeout=60, wait_for=70)
        self._vcpus.live.add(vcpu)
        self._update_runtime()
