"""Backends: what runs an appliance VM and carries out its device changes.

A backend only carries out.  Which slot, whether it is busy, what the names
are: the :class:`~guestslots.appliance.Appliance` and the model decide that
before a backend is asked.  Every backend takes the same :class:`VMSpec`, gives
the same agent channel, plugs a slot at the same SCSI target with the same
serial, so the appliance inside sees one layout whatever runs it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import QemuError
from ..host.build import ApplianceImage
from ..model.drives import DriveSpec
from ..model.nics import NicSpec
from ..model.runtime import RuntimeRecord

#: The appliance kernel's command line, whichever backend boots it: the root disk is
#: virtio-blk (``/dev/vda``), a panic powers off, nothing slow is probed, and freed
#: pages are zeroed (a saved state skips zero pages: see the agent's prepare_save).
KERNEL_CMDLINE = (
    "console=ttyS0 root=/dev/vda rw quiet loglevel=3 panic=-1 init_on_free=1 "
    "8250.nr_uarts=1 no_timer_check tsc=reliable edd=off cryptomgr.notests "
    "usbcore.nousb selinux=0 mitigations=off random.trust_cpu=on"
)

@dataclass(frozen=True)
class Layout:
    """What is plugged into a running appliance beyond its command line: the slots'
    drives by index, the vCPU ids beyond 0, the NICs by slot.  Another process that
    takes the appliance over (a migration, a restore) plugs the same first."""

    disks: tuple[tuple[int, DriveSpec], ...] = ()
    vcpus: tuple[int, ...] = ()
    nics: tuple[tuple[int, NicSpec], ...] = ()


@dataclass(frozen=True)
class VMSpec:
    """What an appliance VM is made of, whichever backend runs it."""

    image: ApplianceImage
    accel: str
    qemu: str = "/usr/bin/qemu-system-x86_64"
    memory_mb: int = 512
    #: TCG's translation cache (MiB), under TCG only.
    tcg_cache_mib: int = 64
    #: vCPU ids 0..max_vcpus-1 can be plugged; the VM starts with vCPU 0 only.
    max_vcpus: int = 1
    #: The appliance's id, in every device id (:mod:`guestslots.model.ids`).
    appliance_id: str = "0"
    #: The VM outlives its caller, who may leave it to another process.
    detached: bool = False


@runtime_checkable
class Detachable(Protocol):
    """A backend whose VM can outlive its caller (``VMSpec.detached``) and be taken
    over by another process."""

    def adopt(self, record: RuntimeRecord, timeout: float) -> tuple[socket.socket, str]:
        """Take over the running detached VM that runtime record *record* describes;
        return the agent channel and the accelerator it uses."""

    def release(self) -> None:
        """Close this process's connections to the VM and leave it running."""


class Backend(Protocol):
    """One appliance VM: started once, then changed slot by slot, then stopped."""

    #: The backend's name, as ``Appliance(backend=...)`` takes it.
    name: str
    #: Whether launches may restore a saved state (see :meth:`save`).
    saves_state: bool
    #: Whether :meth:`save` leaves the VM stopped (then :meth:`start` it again from
    #: the state just saved).
    save_stops: bool

    @property
    def pid(self) -> int | None:
        """The VM process's id while it runs."""

    @property
    def workdir(self) -> str | None:
        """The VM's private directory (sockets, overlays, logs) while it exists."""

    def runtime_info(self) -> dict[str, str]:
        """What another process needs to reach the running VM, for its runtime record:
        some of ``qmp_socket``, ``agent_socket``, ``uri``, ``domain``."""

    def layout_key(self) -> str:
        """What a saved state restored into this VM must have been saved with: its
        devices, binary and settings (never per-instance paths)."""

    def start(self, restore_from: Path | None, timeout: float) -> socket.socket:
        """Start the VM (booting, or restoring the state saved in directory
        *restore_from*: only if :attr:`saves_state`) and return the agent channel,
        connected.  Called once, or again after a :meth:`save` that stopped the VM."""

    def attach_disk(self, index: int, drive: DriveSpec, timeout: float) -> None:
        """Plug *drive* into slot *index*; on failure nothing is left attached."""

    def detach_disk(self, index: int, timeout: float) -> None:
        """Unplug slot *index*, confirmed by the hypervisor (never assumed)."""

    def clean_slot(self, index: int, timeout: float) -> bool:
        """Remove what an abandoned attach or detach of slot *index* (past its timeout)
        left, if anything may be left; True if so: the guest may still see a disk
        there, and its removal lags."""

    def attach_vcpu(self, vcpu: int, timeout: float) -> None:
        """Plug vCPU *vcpu* (an id below ``VMSpec.max_vcpus``, not plugged)."""

    def detach_vcpu(self, vcpu: int, timeout: float) -> None:
        """Unplug vCPU *vcpu*, confirmed by the hypervisor (the guest has offlined it)."""

    def nic_slots_in_use(self, timeout: float) -> frozenset[int]:
        """The NIC slots the hypervisor reports taken (a device at the slot's PCI
        address or with its device id), whoever plugged it."""

    def attach_nic(self, slot: int, nic: NicSpec, timeout: float) -> None:
        """Plug NIC slot *slot* (its PCI slot, device id and MAC from the model); on
        failure nothing is left attached."""

    def detach_nic(self, slot: int, timeout: float) -> None:
        """Unplug NIC slot *slot*, confirmed by the hypervisor (the guest ejected it)."""

    def export_disks(self, exports: list[tuple[int, str, str]], started: Callable[[], None],
                     progress: Callable[[int, int], None] | None, timeout: float) -> None:
        """Copy what the disks of slots (index, target file, format) show the guest into
        the (existing, sized) target files, all as of one instant, while the guest runs;
        *started* is called once the copies began (or failed to)."""

    def disk_size(self, index: int, timeout: float) -> int:
        """The virtual size in bytes of slot *index*'s disk."""

    def save(self, directory: Path, timeout: float) -> None:
        """Write the VM's state and its root disk into *directory*; the VM runs on,
        unless :attr:`save_stops`.  Only for a backend whose :attr:`saves_state` is
        true."""

    def is_running(self) -> bool:
        """Whether the VM process is alive."""

    def death_report(self) -> str:
        """Why the VM stopped answering: its exit status and log tail."""

    def error(self, message: str, cls: type[QemuError] = QemuError) -> QemuError:
        """An error about this VM, carrying its exit status, command and log tail."""

    def shutdown(self, timeout: float) -> None:
        """Wait up to *timeout* for the guest to power off, then stop the VM; clean up."""

    def kill(self) -> None:
        """Stop the VM now and clean up (idempotent)."""


#: The backends this version has.
BACKENDS = ("qemu", "libvirt")


def create(name: str, uri: str | None, spec: VMSpec) -> Backend:
    """A new, not yet started, backend *name* for *spec* (*uri*: libvirt's connection
    URI, for the libvirt backend only)."""
    if name == "qemu":
        if uri:
            raise ValueError("uri= is for the libvirt backend")
        from .qemu import QemuBackend

        return QemuBackend(spec)
    if name == "libvirt":
        try:
            from .libvirt import LibvirtBackend
        except ImportError as e:
            raise ValueError(f"backend 'libvirt' needs libvirt-python and lxml ({e}); "
                             "./tools/setup installs them") from None
        return LibvirtBackend(spec, uri or "")
    raise ValueError(f"backend {name!r} is not available (this version has: "
                     f"{', '.join(repr(b) for b in BACKENDS)})")
