"""Backends: what runs an appliance VM and carries out its device changes.

A backend only carries out.  Which slot, whether it is busy, what the names
are: the :class:`~guestslots.appliance.Appliance` and the model decide that
before a backend is asked.  Every backend takes the same :class:`VMSpec`, gives
the same agent channel, plugs a slot at the same SCSI target with the same
serial, so the appliance inside sees one layout whatever runs it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import QemuError
from ..host.build import ApplianceImage
from ..model.drives import DriveSpec
from ..model.migration import MigrationParams, MigrationProgress
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


class NotResumed(Exception):
    """A live save was made, but the VM could not run on after it (*cause* says why):
    the save is whole, the VM is gone."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(str(cause))


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


# ---- what a backend may be able to do beyond Backend: each a small protocol, which the
# Appliance checks with isinstance (never by attribute name) before it asks.


@runtime_checkable
class Saves(Protocol):
    """A backend that saves a running appliance with its slots, and restores one."""

    def save_appliance(self, directory: Path, layout: Layout, timeout: float,
                       exports: Sequence[tuple[int, str, str]] = (),
                       live: bool = False) -> socket.socket | None:
        """Save the VM's state and *layout* into *directory*; with *exports* (slot,
        a file the caller made, its format), each slot's disk is copied into its file
        at the same instant.  The VM is stopped after, or with *live* runs on: the
        new agent channel when it runs on in a new process, else None."""

    def restore_layout(self, layout: Layout, directory: Path) -> None:
        """Make the next :meth:`Backend.start` restore the appliance saved in
        *directory*, plugging *layout* first."""


@runtime_checkable
class RestoresUnderItsName(Protocol):
    """A backend whose saved VM can come back only under the name it was saved with
    (libvirt: the saved XML names the domain)."""

    def claim_domain_name(self, name: str) -> None:
        """Take *name* for the VM to restore (an error if another VM has it)."""


@runtime_checkable
class Migrates(Protocol):
    """A backend that moves a running appliance to another process (live
    migration), with copies of some slots' disks."""

    def check_migration(self, params: MigrationParams) -> object:
        """Refuse *params* this backend cannot carry out, before anything moves or is
        copied."""

    def migrate(self, layout: Layout, params: MigrationParams,
                progress: Callable[[MigrationProgress], None] | None,
                timeout: float, copies: Mapping[int, DriveSpec] | None = None,
                ) -> tuple[socket.socket, MigrationProgress]:
        """Move the VM as *params* say; return the new agent channel and the final
        progress."""


@runtime_checkable
class Snapshots(Protocol):
    """A backend that takes external snapshots of some slots' disks at one instant."""

    def snapshot_disks(self, overlays: list[tuple[int, str]], timeout: float) -> None:
        """Switch each slot of *overlays* (slot, a new overlay file the caller made)
        onto its overlay, all at one instant."""


@runtime_checkable
class KeepsDiskSetMetadata(Protocol):
    """A backend whose VM definition records the disk set too (libvirt: the
    domain's metadata), beside the runtime record."""

    def note_disk_set(self, indices: Sequence[int], timeout: float) -> None:
        """Record the disk set *indices* in the VM's definition."""


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

    def vcpu_removal_refused(self) -> str:
        """Why a LIVE vCPU removal cannot be done on this VM ("" if it can): asked
        before the guest offlines the vCPU."""

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


def check_options(name: str, uri: str | None, detached: bool, max_vcpus: int) -> None:
    """Refuse, before anything starts, what backend *name* cannot do with these
    options (each backend knows its own rules): ValueError, or VcpuError for vCPUs."""
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} is not available (this version has: "
                         f"{', '.join(repr(b) for b in BACKENDS)})")
    if name == "qemu":
        from .qemu.options import check
    else:
        from .libvirt.options import check
    check(uri, detached, max_vcpus)


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
