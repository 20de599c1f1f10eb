"""guestslots: inspect and change disk images through a small appliance VM.

Reserve drive slots before launch, hotplug images into them by index after,
and call into the appliance with stable ``/dev/sdX`` names::

    import guestslots

    with guestslots.Appliance() as app:
        app.add_drive("/dev/null")          # slot 0: /dev/sda, empty
        app.launch()
        app.hotplug(0, "disk.img", format="raw")
        print(app.list_filesystems())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .appliance import Appliance, ApplianceState, attach, relaunch, restore
    from .domains import DomainDisk, domain_disks
    from .errors import (
        AgentError,
        AgentTimeout,
        ApplianceBuildError,
        ChannelBroken,
        ChannelClosed,
        DeviceBusyError,
        DeviceNameError,
        DriveError,
        FlagError,
        GuestOSError,
        GuestslotsError,
        HostFileError,
        LabelError,
        LaunchError,
        QemuError,
        QemuTimeout,
        QMPCommandError,
        SlotError,
        StateError,
    )
    from .fuse import MountError, mounted
    from .isolation import drop_standby, isolated
    from .model.cpus import Vcpu, VcpuError
    from .model.disksets import DiskSetError
    from .model.drives import DriveSpec
    from .model.flags import CONFIG, CURRENT, LIVE
    from .model.migration import MigrationParamError, MigrationParams, MigrationProgress
    from .model.nics import Nic, NicError
    from .model.slots import MAX_SLOTS, Slot, SlotState
    from .model.snapshots import SnapshotError
    from .pool import ImageResult, Pool

#: Where each public name lives: imported on first use (PEP 562), so that a front end
#: that needs little (``guestslots --help``) does not import the whole library.
_EXPORTS: dict[str, str] = {
    "Appliance": ".appliance",
    "ApplianceState": ".appliance",
    "attach": ".appliance",
    "relaunch": ".appliance",
    "restore": ".appliance",
    "DomainDisk": ".domains",
    "domain_disks": ".domains",
    "AgentError": ".errors",
    "AgentTimeout": ".errors",
    "ApplianceBuildError": ".errors",
    "ChannelBroken": ".errors",
    "ChannelClosed": ".errors",
    "DeviceBusyError": ".errors",
    "DeviceNameError": ".errors",
    "DriveError": ".errors",
    "FlagError": ".errors",
    "GuestOSError": ".errors",
    "GuestslotsError": ".errors",
    "HostFileError": ".errors",
    "LabelError": ".errors",
    "LaunchError": ".errors",
    "QMPCommandError": ".errors",
    "QemuError": ".errors",
    "QemuTimeout": ".errors",
    "SlotError": ".errors",
    "StateError": ".errors",
    "MountError": ".fuse",
    "mounted": ".fuse",
    "isolated": ".isolation",
    "drop_standby": ".isolation",
    "Vcpu": ".model.cpus",
    "VcpuError": ".model.cpus",
    "DiskSetError": ".model.disksets",
    "DriveSpec": ".model.drives",
    "CONFIG": ".model.flags",
    "CURRENT": ".model.flags",
    "LIVE": ".model.flags",
    "MigrationParamError": ".model.migration",
    "MigrationParams": ".model.migration",
    "MigrationProgress": ".model.migration",
    "Nic": ".model.nics",
    "NicError": ".model.nics",
    "MAX_SLOTS": ".model.slots",
    "Slot": ".model.slots",
    "SlotState": ".model.slots",
    "SnapshotError": ".model.snapshots",
    "ImageResult": ".pool",
    "Pool": ".pool",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guestslots' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "CONFIG",
    "CURRENT",
    "LIVE",
    "MAX_SLOTS",
    "AgentError",
    "AgentTimeout",
    "Appliance",
    "ApplianceBuildError",
    "ApplianceState",
    "ChannelBroken",
    "ChannelClosed",
    "DeviceBusyError",
    "DeviceNameError",
    "DiskSetError",
    "DomainDisk",
    "DriveError",
    "DriveSpec",
    "FlagError",
    "GuestOSError",
    "GuestslotsError",
    "HostFileError",
    "ImageResult",
    "LabelError",
    "LaunchError",
    "MigrationParamError",
    "MigrationParams",
    "MigrationProgress",
    "MountError",
    "Nic",
    "NicError",
    "Pool",
    "QMPCommandError",
    "QemuError",
    "QemuTimeout",
    "Slot",
    "SlotError",
    "SlotState",
    "SnapshotError",
    "StateError",
    "Vcpu",
    "VcpuError",
    "attach",
    "domain_disks",
    "drop_standby",
    "isolated",
    "mounted",
    "relaunch",
    "restore",
]
__version__ = "0.1.0"
