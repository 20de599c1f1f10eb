"""A libvirt domain's slots, vCPUs and NICs: attachDeviceFlags / detachDeviceFlags,
the removal confirmed by libvirt's device-removed event."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import libvirt

from ...errors import DriveError, QemuError, QemuTimeout
from ...model.cpus import LIBVIRT_TCG_REMOVAL, VcpuError
from ...model.drives import DriveSpec
from ...model.nics import NicError, NicSpec
from ...model.sources import shown
from ..overlays import make_overlay
from . import bounded, connection
from .domain import LIVE
from .domxml import (
    disk_xml,
    interface_xml,
    live_disk,
    live_interface,
    nic_alias,
    nic_slots_in_use,
    slot_alias,
)
from .lifecycle import DomainLifecycle

log = logging.getLogger(__name__)


def remote_refused(drive: DriveSpec) -> str:
    """Why the libvirt backend cannot carry *drive*'s remote source ("" if it can):
    libvirt takes an NBD client's TLS certificates from its own qemu.conf
    (``nbd_tls_x509_cert_dir``), not from the disk, and its ssh network disk names
    neither a user (without a secret) nor a host key fingerprint."""
    remote = drive.remote
    if remote is not None and remote.tls:
        return ("the libvirt backend cannot take nbds:// sources: libvirt reads an NBD "
                "client's certificates from its qemu.conf, not per disk (use the QEMU "
                "backend)")
    if remote is not None and remote.protocol == "ssh" and (remote.user or
                                                             remote.host_key != "yes"):
        return ("the libvirt backend takes ssh:// sources without a user name or "
                "host_key_check= only (libvirt's network disk has neither): its QEMU "
                "logs in as its own user, checking its known_hosts (use the QEMU backend)")
    return ""


class DomainDevices(DomainLifecycle):
    """A libvirt domain's slots, vCPUs and NICs: attachDeviceFlags / detachDeviceFlags,"""

    # ---- slots

    def attach_disk(self, index: int, drive: DriveSpec, timeout: float) -> None:
        """Plug *drive* at SCSI target *index*.  Past *timeout* (QEMU stopped or stuck;
        libvirt itself would wait forever) :class:`QemuTimeout`, and the slot is
        cleaned before its next use, whatever libvirt did meanwhile."""
        domain = self._running()
        refused = remote_refused(drive)
        if refused:
            raise DriveError(drive.path, f"slot {index}: {refused}")
        what = f"hotplug of slot {index} ({shown(drive.path)})"
        if index in self._unsure:
            self._clean_slot(index, timeout, what)
        overlay = None
        if drive.throwaway:
            overlay = self._overlay_path(index)
            make_overlay(drive, overlay)
        xml = disk_xml(index, drive, overlay, owner=self.spec.appliance_id)
        try:
            self._guarded(index, lambda: domain.attachDeviceFlags(xml, LIVE), timeout, what)
            self._attached[index] = xml
        except BaseException as e:
            if overlay is not None and index not in self._unsure:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
            if not isinstance(e, libvirt.libvirtError):
                raise
            if self._lost(e):
                raise self.error(f"the appliance died during the hotplug of slot {index}: "
                                 f"{e.get_error_message()}") from None
            raise DriveError(drive.path, f"libvirt cannot attach it to slot {index}: "
                             f"{e.get_error_message()}") from None

    def _set_vcpu(self, vcpu: int, enabled: bool, timeout: float) -> None:
        """libvirt's ``setVcpu`` of vCPU *vcpu*, LIVE."""
        domain = self._running()
        what = "plugging" if enabled else "unplugging"
        try:
            bounded.call(lambda: domain.setVcpu(str(vcpu), int(enabled), LIVE), timeout,
                         f"{what} vCPU {vcpu}", self._log_tail())
        except libvirt.libvirtError as e:
            if self._lost(e):
                raise self.error(f"the appliance died {what} vCPU {vcpu}: "
                                 f"{e.get_error_message()}") from None
            raise VcpuError(vcpu, f"libvirt cannot {what.removesuffix('ging')} vCPU "
                            f"{vcpu}: {e.get_error_message()}") from None

    def attach_vcpu(self, vcpu: int, timeout: float) -> None:
        """Enable hotpluggable vCPU *vcpu* (libvirt's ``setVcpu``, LIVE)."""
        self._set_vcpu(vcpu, True, timeout)

    def vcpu_removal_refused(self) -> str:
        """Under TCG, why a LIVE vCPU removal cannot be done (see
        :data:`~guestslots.model.cpus.LIBVIRT_TCG_REMOVAL`); "" under KVM, where QEMU
        sends the DEVICE_DELETED that libvirt waits for."""
        return LIBVIRT_TCG_REMOVAL if self.spec.accel == "tcg" else ""

    def detach_vcpu(self, vcpu: int, timeout: float) -> None:
        """Disable vCPU *vcpu* (libvirt's ``setVcpu``, LIVE: it returns once QEMU
        confirmed the removal)."""
        refused = self.vcpu_removal_refused()
        if refused:
            raise VcpuError(vcpu, refused)
        self._set_vcpu(vcpu, False, timeout)

    # ---- NICs

    def _live_xml(self, timeout: float, what: str) -> str:
        domain = self._running()
        return str(bounded.call(lambda: domain.XMLDesc(0), timeout, what, self._log_tail()))

    def nic_slots_in_use(self, timeout: float) -> frozenset[int]:
        return nic_slots_in_use(self._live_xml(timeout, "reading the domain XML"),
                                self.spec.appliance_id)

    def attach_nic(self, slot: int, nic: NicSpec, timeout: float) -> None:
        """Plug NIC slot *slot* as an ``<interface>`` (see :func:`.domxml.interface_xml`)."""
        domain = self._running()
        xml = interface_xml(slot, nic, owner=self.spec.appliance_id)
        what = f"hotplug of NIC slot {slot}"
        try:
            bounded.call(lambda: domain.attachDeviceFlags(xml, LIVE), timeout, what,
                         self._log_tail())
        except libvirt.libvirtError as e:
            raise NicError(slot, f"libvirt cannot plug it: {e.get_error_message()}") from None

    def detach_nic(self, slot: int, timeout: float) -> None:
        """Unplug NIC slot *slot*, confirmed by libvirt's device-removed event."""
        domain = self._running()
        what = f"unplug of NIC slot {slot}"
        alias = nic_alias(slot, self.spec.appliance_id)
        xml = live_interface(self._live_xml(timeout, what), alias)
        if xml is None:
            raise QemuError(f"NIC slot {slot}: the domain has no interface {alias}")
        removed = connection.removal(self.domain_name, alias)
        try:
            bounded.call(lambda: domain.detachDeviceFlags(xml, LIVE), timeout, what,
                         self._log_tail())
        except libvirt.libvirtError as e:
            raise QemuError(f"libvirt cannot unplug NIC slot {slot}: "
                            f"{e.get_error_message()}") from None
        if not removed.wait(timeout):
            raise QemuTimeout(f"{what}: libvirt did not report the device removed in "
                              f"{timeout:g} s", log_tail=self._log_tail())

    def clean_slot(self, index: int, timeout: float) -> bool:
        if index not in self._unsure:
            return False
        self._clean_slot(index, timeout, f"cleaning slot {index}")
        return True

    def detach_disk(self, index: int, timeout: float) -> None:
        """Unplug slot *index*, confirmed by libvirt's device-removed event."""
        self._running()
        what = f"unplug of slot {index}"
        if index in self._unsure:
            self._clean_slot(index, timeout, what)
            return
        # the whole <disk> as attached: libvirt 9.0 crashes on a <disk> without its
        # <source> and <target>
        xml = self._attached.get(index)
        if xml is None:
            raise QemuError(f"slot {index} has no disk attached by this backend")
        self._detach(index, xml, timeout, what)

    def _detach(self, index: int, xml: str, timeout: float, what: str) -> None:
        domain = self._running()
        removed = connection.removal(self.domain_name, slot_alias(index, self.spec.appliance_id))
        try:
            self._guarded(index, lambda: domain.detachDeviceFlags(xml, LIVE), timeout, what)
        except libvirt.libvirtError as e:
            raise QemuError(f"libvirt cannot detach slot {index}: "
                            f"{e.get_error_message()}") from None
        if not removed.wait(timeout):
            self._unsure[index] = None
            raise QemuTimeout(f"{what}: libvirt did not report the device removed in "
                              f"{timeout:g} s", log_tail=self._log_tail())
        self._attached.pop(index, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._overlay_path(index))

    def _guarded(self, index: int, fn: Callable[[], object], timeout: float,
                 what: str) -> None:
        """Run a slot operation with a deadline; if it is abandoned, remember that the
        slot is unsure (libvirt may still carry it out when QEMU answers)."""
        future = bounded.start(fn, what)
        try:
            bounded.wait(future, timeout, what, self._log_tail())
        except QemuTimeout:
            self._unsure[index] = future
            raise

    def _clean_slot(self, index: int, timeout: float, what: str) -> None:
        """Remove whatever an abandoned attach or detach of slot *index* left: wait for
        that call to end (QEMU may still be stuck: then QemuTimeout again), then
        detach the disk libvirt shows at the slot's alias, if any."""
        domain = self._running()
        abandoned = self._unsure.get(index)
        if abandoned is not None:
            with contextlib.suppress(libvirt.libvirtError):
                bounded.wait(abandoned, timeout, what, self._log_tail())
        live = bounded.call(lambda: domain.XMLDesc(0), timeout, what, self._log_tail())
        xml = live_disk(live, slot_alias(index, self.spec.appliance_id))
        self._unsure.pop(index, None)
        if xml is not None:
            self._detach(index, xml, timeout, what)
        else:
            self._attached.pop(index, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._overlay_path(index))
