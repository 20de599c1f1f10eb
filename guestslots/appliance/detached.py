"""Detached appliances: relaunch, disconnect, attach."""

from __future__ import annotations

import time

from ..agent_client import AgentClient
from ..backends import (
    Detachable,
)
from ..errors import (
    StateError,
)
from ..host.accel import AccelChoice
from ..host.build import ensure_appliance
from ..model.runtime import RuntimeRecord
from .core import ApplianceState
from .lifecycle import LifecycleArea


class DetachedArea(LifecycleArea):
    """Detached appliances: relaunch, disconnect, attach."""

    def relaunch(self) -> None:
        """Boot a new appliance with the layout this one had when it last ran.

        Every slot (empty ones too) with the image it held, at the same index, with
        the same label and access; the vCPUs and NICs that were plugged; the same
        appliance id, so every device id is the same.  For an appliance whose QEMU
        died or was killed (the call that found it dead raised an error and closed
        it), or one that was shut down.  That layout becomes the definition.  Each
        image is checked first: the same file, and unchanged if the guest could not
        write it; otherwise :class:`RuntimeRecordError` names the slot and nothing
        is launched.  What went to throwaway overlays is gone, as after any restart.
        """
        with self._lock:
            if self._state is ApplianceState.RUNNING:
                if self._backend is not None and self._backend.is_running():
                    raise StateError("relaunch", "shut down or dead", self._state.value)
                self._teardown()
                self._state = ApplianceState.CLOSED
            if self._record is None:
                raise StateError("relaunch", "launched before", self._state.value)
            self._adopt(self._record)
            self.launch()

    def disconnect(self) -> None:
        """Leave this detached appliance running, and let go of it.

        Only for ``Appliance(detached=True)`` (or one from :func:`attach`): the
        connections to it close, its runtime record says nobody holds it, and
        :func:`guestslots.attach` (in this process or another) takes it over, mounts
        and all.  This object is closed then.  Exiting the process does the same
        (without the record saying so: ``attach`` sees that its holder died)."""
        with self._lock:
            backend, agent = self._running("disconnect")
            if not self.detached or not isinstance(backend, Detachable):
                raise StateError("disconnect", "detached (Appliance(detached=True))",
                                 "attached to this process only")
            self._update_runtime(held=False)
            agent.close()
            backend.release()
            self._backend = self._agent = None
            self._started = 0.0
            self._state = ApplianceState.DISCONNECTED
            self._table.show_config()
            self._say(f"appliance {self.id} left running (guestslots.attach('{self.id}'))")

    def _attach(self, record: RuntimeRecord, timeout: float) -> None:
        """Become the holder of *record*'s running detached appliance (see
        :func:`attach`)."""
        with self._lock:
            self._adopt(record)
            started = time.monotonic()
            self.image = ensure_appliance(self._say)
            backend = self._new_backend(self.image, "tcg")  # adopt says which it is
            assert isinstance(backend, Detachable)
            sock, accel = backend.adopt(record, timeout)
            try:
                self.accel = AccelChoice(accel, "the running appliance's")
                agent = AgentClient(sock, backend.death_report, self.call_timeout)
                agent.call("ping", wait_for=timeout)  # the agent says hello to a new host
                names = {slot.index: agent.call("wait_disk", target=slot.index, timeout=5)
                         for slot in self._table if slot.drive is not None}
            except BaseException:
                backend.release()
                raise
            self._backend, self._agent = backend, agent
            self._state = ApplianceState.RUNNING
            for slot in list(self._table):
                if slot.drive is not None:
                    self._table.fill(slot.index, slot.drive, names[slot.index])
            self._identities = {s.index: s.identity for s in record.slots if s.path}
            self._vcpus.live = set(record.vcpus_plugged) | {0}
            self._vcpu_unplugged = record.vcpu_unplugged
            self._nics.live = dict(self._nics.config)
            self._layout_key = record.layout_key
            self._started = record.started
            self.launched_from = "attached"
            self._update_runtime()
            self._say(f"attached to appliance {self.id} (pid {record.pid}) in "
                      f"{time.monotonic() - started:.2f} s")
