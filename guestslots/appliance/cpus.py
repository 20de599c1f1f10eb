"""vCPUs by id, with LIVE / CONFIG / CURRENT, and TCG's rules."""

from __future__ import annotations

import warnings

from ..guest.base import serialised
from ..host.accel import expected_accel
from ..model.cpus import Vcpu, VcpuError, check_tcg_change, check_tcg_definition
from ..model.flags import CONFIG, CURRENT, LIVE
from .core import ApplianceState
from .domains import DomainsArea


def _vcpu_argument(call: str, vcpu: int, old: int | None) -> int:
    """The vCPU id a call was given: *vcpu*, or the deprecated keyword ``id=``."""
    if old is None:
        return vcpu
    if vcpu != -1:
        raise TypeError(f"{call}() got both vcpu and id (id is vcpu's old name)")
    warnings.warn(f"{call}(id=...) is deprecated: the argument is vcpu", DeprecationWarning,
                  stacklevel=3)
    return old


class CpusArea(DomainsArea):
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

    def add_vcpu(self, vcpu: int = -1, flags: int = CURRENT, *,
                 id: int | None = None) -> int:  # id: vcpu's old name
        """Plug the vCPU with id *vcpu* (``-1``: the first free id); return the id.

        Ids are 0 to ``max_vcpus - 1`` (``Appliance(max_vcpus=N)``).  ``LIVE``
        plugs it into the running appliance and returns once the guest has it
        online; ``CONFIG`` adds it to what the next launch plugs; both may be
        given; ``CURRENT`` is ``LIVE`` when running and ``CONFIG`` otherwise.  An
        id out of range or already plugged: :class:`VcpuError`; flags that are not
        a combination of these: :class:`FlagError`; nothing changes.  (The keyword
        ``id=`` still works, with a DeprecationWarning: the seed's name is
        ``vcpu``.)
        """
        vcpu = _vcpu_argument("add_vcpu", vcpu, id)
        with self._lock:
            affect = self._affect("add_vcpu", flags)
            vcpu = self._vcpus.add_id(vcpu, bool(affect & LIVE), bool(affect & CONFIG))
            if affect & CONFIG:
                self._tcg_definition(vcpu, self._vcpus.config | {vcpu})
            if affect & LIVE:
                self._plug_vcpu(vcpu)
            if affect & CONFIG:
                self._vcpus.config.add(vcpu)
            return vcpu

    def remove_vcpu(self, vcpu: int = -1, flags: int = CURRENT, *,
                    id: int | None = None) -> int:  # id: vcpu's old name
        """Unplug the vCPU with id *vcpu* (``-1``: the highest plugged); return the id.

        The guest offlines it first (its work moves to the other vCPUs), then it
        is unplugged and its removal confirmed by QEMU.  vCPU 0, the boot CPU,
        cannot be removed.  *flags* as for :meth:`add_vcpu`.

        Under TCG, QEMU limits this (measured on 7.2 and 10.0, the rules chosen by
        the version QEMU reports): on 7.2 the plugged ids must stay 0 to k-1 (add
        the lowest free id, remove the highest); on both, after a ``LIVE`` removal
        no vCPU can be plugged until the next launch; on the libvirt
        backend a ``LIVE`` removal cannot be done at all under TCG (libvirt waits
        for an event QEMU does not send: remove with ``CONFIG`` and launch again).
        Anything else is refused with :class:`VcpuError`, nothing changed.
        """
        vcpu = _vcpu_argument("remove_vcpu", vcpu, id)
        with self._lock:
            affect = self._affect("remove_vcpu", flags)
            vcpu = self._vcpus.remove_id(vcpu, bool(affect & LIVE), bool(affect & CONFIG))
            if affect & CONFIG:
                self._tcg_definition(vcpu, self._vcpus.config - {vcpu})
            if affect & LIVE:
                backend, agent = self._running("remove_vcpu")
                refused = backend.vcpu_removal_refused()
                if refused:  # before the guest offlines it
                    raise VcpuError(vcpu, refused)
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

    def _tcg_definition(self, vcpu: int, config: set[int]) -> None:
        """Under TCG (as launched, or as the next launch will be when that is known
        without a probe), refuse a definition a launch could not plug (see
        :func:`~guestslots.model.cpus.check_tcg_definition`)."""
        accel = self.accel.accel if self.accel is not None else \
            expected_accel(self.qemu_binary, self._accel_request)
        if accel == "tcg":
            check_tcg_definition(vcpu, config, self._tcg_rules())

    def _tcg_vcpu_limits(self, vcpu: int, adding: bool) -> None:
        """Under TCG, refuse what QEMU cannot do with vCPUs (see
        :func:`~guestslots.model.cpus.check_tcg_change`)."""
        if self.accel is not None and self.accel.accel == "tcg":
            check_tcg_change(vcpu, adding, self._vcpus.live, self._vcpus.max_vcpus,
                             self._vcpu_unplugged, self._tcg_rules())

    def _plug_vcpu(self, vcpu: int) -> None:
        backend, agent = self._running("add_vcpu")
        self._tcg_vcpu_limits(vcpu, adding=True)
        with self._watch():
            backend.attach_vcpu(vcpu, timeout=self.call_timeout)
            agent.call("vcpu_plugged", vcpu=vcpu, timeout=60, wait_for=70)
        self._vcpus.live.add(vcpu)
        self._update_runtime()
