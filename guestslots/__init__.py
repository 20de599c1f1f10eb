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

from .appliance import Appliance, ApplianceState, attach, relaunch, restore
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
from .isolation import isolated
from .model.cpus import Vcpu, VcpuError
from .model.disksets import DiskSetError
from .model.drives import DriveSpec
from .model.flags import CONFIG, CURRENT, LIVE
from .model.migration import MigrationParamError, MigrationParams, MigrationProgress
from .model.nics import Nic, NicError
from .model.slots import MAX_SLOTS, Slot, SlotState
from .model.snapshots import SnapshotError
from .pool import ImageResult, Pool

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
    "isolated",
    "mounted",
    "relaunch",
    "restore",
]
__version__ = "0.1.0"
