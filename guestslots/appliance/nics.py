"""NICs by slot, with LIVE / CONFIG / CURRENT."""

from __future__ import annotations

import contextlib

from ..errors import (
    GuestslotsError,
)
from ..guest.base import serialised
from ..model.flags import CONFIG, CURRENT, LIVE
from ..model.nics import Nic, NicError, NicSpec, make_nic, with_guest_view
from .core import ApplianceState
from .cpus import CpusArea


class NicsArea(CpusArea):
    """NICs by slot, with LIVE / CONFIG / CURRENT."""

    @serialised
    def nics(self) -> list[Nic]:
        """Every plugged NIC: slot, device id, network, MAC, address, gateway (for
        ``user``, where the host's 127.0.0.1 is reached), and the guest's interface,
        link state and whether its default route goes through it (it moves to another
        NIC with a gateway when its NIC is removed); not running, the NICs the next
        launch plugs."""
        running = self._state is ApplianceState.RUNNING
        listed = self._nics.listed(running)
        if not running:
            return listed
        state = self._call("nics_state")
        return [with_guest_view(n, *(state.get(n.mac) or (None, False, False)))
                for n in listed]

    def add_nic(self, slot: int = -1, network: str = "user", mac: str | None = None,
                tap: str | None = None, address: str | None = None,
                gateway: str | None = None, flags: int = CURRENT) -> int:
        """Plug a NIC into NIC slot *slot* (``-1``: the first free one); return the slot.

        *network* ``user`` is QEMU's user-mode network, one per NIC: NIC slot *k* is on
        ``10.0.(2+k).0/24``, the guest is ``.15`` and reaches the host's 127.0.0.1 at the
        gateway ``.2`` (see :meth:`nics`); nothing outside reaches the guest.  *network*
        ``tap`` is the host's tap device *tap* (guestslots opens it and hands QEMU the
        descriptor; it is made if missing, which needs CAP_NET_ADMIN), with the guest's
        *address* (``192.168.100.2/24``) and an optional *gateway*.  *mac* defaults to
        ``52:54:00:`` + the appliance id + the slot.  The guest's interface is up with
        its address when this returns; the first NIC with a gateway carries the
        default route.  *flags* as for :meth:`hotplug`.  A bad slot, network or
        address: :class:`NicError`, nothing changed.
        """
        with self._lock:
            affect = self._affect("add_nic", flags)
            live, config = bool(affect & LIVE), bool(affect & CONFIG)
            in_use = self._backend.nic_slots_in_use(self.call_timeout) \
                if live and self._backend is not None else frozenset()
            slot = self._nics.add_slot(slot, live, config, in_use)
            nic = make_nic(slot, network, self.id, mac, tap, address, gateway)
            if live:
                self._plug_nic(slot, nic)
            if config:
                self._nics.config[slot] = nic
            return slot

    def _plug_nic(self, slot: int, nic: NicSpec) -> None:
        backend, agent = self._running("add_nic")
        rules = self._tcg_limits_after_unplug()
        if rules is not None and not rules.pci_after_unplug:
            raise NicError(slot, "cannot be plugged: a vCPU was unplugged since this appliance "
                           "started, and " + rules.because(
                               "then crashes on a PCI hotplug, in the unplugged vCPU's freed "
                               "address space") + "; shut down and launch again (the "
                           "definition, CONFIG, is unaffected)")
        with self._watch():
            backend.attach_nic(slot, nic, timeout=self.call_timeout)
            try:
                agent.call("nic_plugged", mac=nic.mac, address=nic.address,
                           gateway=nic.gateway, dns=nic.dns, timeout=60, wait_for=70)
            except BaseException:
                with contextlib.suppress(GuestslotsError):
                    backend.detach_nic(slot, timeout=self.call_timeout)
                raise
        self._nics.live[slot] = nic
        self._update_runtime()

    def remove_nic(self, slot: int = -1, flags: int = CURRENT) -> int:
        """Unplug the NIC of NIC slot *slot* (``-1``: the highest full one); return the
        slot.  The guest takes it down first, and its removal is confirmed by the
        hypervisor.  *flags* as for :meth:`unplug`."""
        with self._lock:
            affect = self._affect("remove_nic", flags)
            live, config = bool(affect & LIVE), bool(affect & CONFIG)
            slot = self._nics.remove_slot(slot, live, config)
            if live:
                backend, agent = self._running("remove_nic")
                with self._watch():
                    agent.call("nic_unplugging", mac=self._nics.live[slot].mac)
                    backend.detach_nic(slot, timeout=self.call_timeout)
                del self._nics.live[slot]
                self._update_runtime()
            if config:
                del self._nics.config[slot]
            return slot
