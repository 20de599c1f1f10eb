"""A running QEMU's vCPUs and NICs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ...errors import QMPCommandError
from ...model.nics import NicError, NicSpec
from .disks import MachineDisks
from .qmpargs import (
    netdev_add_args,
    nic_device_args,
    nic_ids,
    nic_slots_in_use,
    vcpu_device_args,
    vcpu_positions,
    vcpu_qdev,
)

log = logging.getLogger(__name__)


class MachineDevices(MachineDisks):
    """A running QEMU's vCPUs and NICs."""

    # ---- vCPUs

    def attach_vcpu(self, vcpu: int, timeout: float = 30.0) -> None:
        """Plug vCPU *vcpu* (its position from ``query-hotpluggable-cpus``)."""

        async def attach() -> None:
            positions = vcpu_positions(await self._execute("query-hotpluggable-cpus"))
            if vcpu >= len(positions):
                raise self.error(f"QEMU has no vCPU position {vcpu} (it has {len(positions)})")
            if "qom-path" in positions[vcpu]:
                raise self.error(f"vCPU {vcpu} is already plugged in QEMU")
            await self._execute("device_add", vcpu_device_args(vcpu, positions[vcpu], self.owner))

        self._run(attach(), timeout, f"hotplug of vCPU {vcpu}")

    def detach_vcpu(self, vcpu: int, timeout: float = 30.0) -> None:
        """Unplug vCPU *vcpu* and wait until QEMU has really removed it: a CPU's unplug
        needs the guest's cooperation (its ACPI eject), so the end is confirmed by
        asking QEMU again after each event that may mean it, not by one event."""
        qdev = vcpu_qdev(vcpu, self.owner)

        async def gone() -> bool:
            positions = vcpu_positions(await self._execute("query-hotpluggable-cpus"))
            return vcpu < len(positions) and "qom-path" not in positions[vcpu]

        async def detach() -> None:
            with self._qmp.listener(("DEVICE_DELETED", "ACPI_DEVICE_OST")) as listener:
                await self._execute("device_del", {"id": qdev})
                while not await gone():
                    try:
                        await asyncio.wait_for(listener.get(), timeout)
                    except TimeoutError:
                        raise self.error(f"vCPU {vcpu} was not removed in {timeout:g} s "
                                         "(the guest did not eject it)") from None

        self._run(detach(), timeout + 5, f"unplug of vCPU {vcpu}")

    # ---- NICs

    def nic_slots_in_use(self, timeout: float = 30.0) -> frozenset[int]:
        """The NIC slots QEMU has taken (their PCI slot or device id is in use)."""

        async def query() -> frozenset[int]:
            buses = await self._execute("query-pci")
            devices = [d for bus in buses if bus.get("bus") == 0 for d in bus.get("devices", [])]
            peripherals = await self._execute("qom-list", {"path": "/machine/peripheral"})
            return nic_slots_in_use(devices, peripherals, self.owner)

        return self._run(query(), timeout, "query-pci")

    def attach_nic(self, slot: int, nic: NicSpec, tap_fd: int | None = None,
                   timeout: float = 30.0) -> None:
        """Plug NIC slot *slot*: its netdev (a tap NIC's open file descriptor *tap_fd*
        passed to QEMU over the QMP socket with SCM_RIGHTS, QEMU opens nothing), then
        its virtio-net device; on failure nothing is left."""
        qdev, netdev = nic_ids(slot, self.owner)
        fdname = f"{qdev}-fd" if tap_fd is not None else None

        async def attach() -> None:
            if fdname is not None:
                assert tap_fd is not None
                self._qmp.send_fd_scm(tap_fd)
                await self._execute("getfd", {"fdname": fdname})
            try:
                try:
                    await self._execute("netdev_add", netdev_add_args(slot, nic, self.owner,
                                                                      fdname))
                except QMPCommandError as e:
                    raise NicError(slot, f"QEMU cannot make its {nic.network} network: "
                                   f"{e.desc}") from None
                try:
                    await self._execute("device_add", nic_device_args(slot, nic, self.owner))
                except QMPCommandError as e:
                    with contextlib.suppress(Exception):
                        await self._execute("netdev_del", {"id": netdev})
                    raise NicError(slot, f"QEMU cannot plug its NIC: {e.desc}") from None
            finally:
                if fdname is not None:  # netdev_add took its own copy
                    with contextlib.suppress(Exception):
                        await self._execute("closefd", {"fdname": fdname})

        self._run(attach(), timeout, f"hotplug of NIC slot {slot}")

    def detach_nic(self, slot: int, timeout: float = 30.0) -> None:
        """Unplug NIC slot *slot*: device_del, wait for QEMU's DEVICE_DELETED (the guest
        ejects the PCI device), then remove its netdev."""
        qdev, netdev = nic_ids(slot, self.owner)

        async def detach() -> None:
            await self._device_del(qdev, timeout)
            await self._execute("netdev_del", {"id": netdev})

        self._run(detach(), timeout + 5, f"unplug of NIC slot {slot}")
