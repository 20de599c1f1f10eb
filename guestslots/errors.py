"""Every error guestslots raises: one root, subclasses that carry context.

Catch :class:`GuestslotsError` to catch them all.  Each subclass keeps the
facts a caller needs to act (the slot index, the image path, the QMP command,
QEMU's exit status and log tail) as attributes, and says them in its message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _rebuild(cls: type[GuestslotsError], args: tuple[Any, ...],
             state: dict[str, Any]) -> GuestslotsError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class GuestslotsError(Exception):
    """Root of every error raised by guestslots."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (a Dask worker's result): pickle the message
        # and the attributes, not the constructor's arguments (each subclass has its own).
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class StateError(GuestslotsError):
    """A call was made in a state that does not allow it (e.g. hotplug before launch)."""

    def __init__(self, call: str, expected: str, actual: str) -> None:
        self.call = call
        self.expected = expected
        self.actual = actual
        super().__init__(f"{call}: the appliance must be {expected}, but it is {actual}")


class FlagError(GuestslotsError, ValueError):
    """A call's *flags* are not a combination it takes (LIVE / CONFIG / CURRENT for
    the hotplug calls; 0 where the flags are reserved); nothing was changed."""

    def __init__(self, call: str, flags: object, message: str) -> None:
        self.call = call
        self.flags = flags
        super().__init__(f"{call}: {message}")


class SlotError(GuestslotsError):
    """A slot index or slot state does not allow the operation; nothing was changed."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(message)


class DriveError(GuestslotsError):
    """An image cannot be used as a drive (missing, unreadable, wrong format, unsafe)."""

    def __init__(self, path: str, message: str) -> None:
        from .model.sources import shown  # a URL's password and query are never shown

        self.path = path
        super().__init__(f"{shown(path)}: {message}")


class HostFileError(GuestslotsError):
    """A file on the host (a download's destination, an upload's source) cannot be used."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class LabelError(GuestslotsError):
    """A drive label is invalid or already used by another slot."""


class DeviceNameError(GuestslotsError):
    """A device name given as an argument does not name a usable slot device."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


class DeviceBusyError(GuestslotsError):
    """A slot cannot be unplugged because its device is in use: mounted, a member of a
    running md array, or a PV of an active volume group (the message names them)."""

    def __init__(self, index: int, device: str, users: Sequence[str]) -> None:
        self.index = index
        self.device = device
        self.users = list(users)
        super().__init__(
            f"slot {index} ({device}) is busy: {', '.join(self.users)}; "
            "unmount (deactivate, stop) first, or unplug with force=True to unmount, "
            "deactivate the volume groups, stop the arrays and sync"
        )


class QMPCommandError(GuestslotsError):
    """QEMU refused a QMP command."""

    def __init__(self, command: str, arguments: dict[str, Any], error_class: str, desc: str):
        self.command = command
        self.arguments = arguments
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"QMP {command} failed ({error_class}): {desc}")


class QemuError(GuestslotsError):
    """QEMU failed to start or died; holds its exit status, command line and log tail."""

    def __init__(
        self,
        message: str,
        *,
        exitcode: int | None = None,
        command: Sequence[str] = (),
        log_tail: str = "",
    ) -> None:
        self.exitcode = exitcode
        self.command = list(command)
        self.log_tail = log_tail
        parts = [message]
        if exitcode is not None:
            parts.append(f"exit status {exitcode}")
        text = "; ".join(parts)
        if command:
            text += "\ncommand: " + " ".join(command)
        if log_tail:
            text += "\nlog tail:\n" + log_tail
        super().__init__(text)


class QemuTimeout(QemuError):
    """QEMU did not answer a QMP command in time (stopped, stuck or overloaded); the
    message names what was awaited."""


class LaunchError(QemuError):
    """The appliance could not be launched."""


class ApplianceBuildError(GuestslotsError):
    """The appliance (kernel, initrd, root image) could not be built."""


class AgentError(GuestslotsError):
    """The agent inside the appliance reported an error, or the channel to it failed."""

    def __init__(self, call: str, message: str) -> None:
        self.call = call
        super().__init__(f"{call}: {message}")


class AgentTimeout(AgentError):
    """The agent did not answer in time."""


class ChannelClosed(AgentError):
    """The channel to the agent closed (the appliance died or was shut down)."""


class ChannelBroken(AgentError):
    """The channel to the agent is out of step (a frame could not be sent whole, or the
    agent sent something that is not a frame): the appliance must be relaunched."""


class GuestOSError(AgentError):
    """An operating-system error inside the appliance (errno set, e.g. ENOENT)."""

    def __init__(self, call: str, message: str, errno: int) -> None:
        self.errno = errno
        super().__init__(call, message)


class UsageError(Exception):
    """A command line cannot be turned into a call (unknown command, bad argument)."""
