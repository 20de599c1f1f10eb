"""libguestfs's event flags and their names."""

from __future__ import annotations

EVENT_CLOSE = 0x1
EVENT_SUBPROCESS_QUIT = 0x2
EVENT_LAUNCH_DONE = 0x4
EVENT_PROGRESS = 0x8
EVENT_APPLIANCE = 0x10
EVENT_LIBRARY = 0x20
EVENT_TRACE = 0x40
EVENT_ENTER = 0x80
EVENT_LIBVIRT_AUTH = 0x100
EVENT_WARNING = 0x200
EVENT_ALL = 0x3FF

_NAMES = {
    EVENT_CLOSE: "close", EVENT_SUBPROCESS_QUIT: "subprocess_quit",
    EVENT_LAUNCH_DONE: "launch_done", EVENT_PROGRESS: "progress",
    EVENT_APPLIANCE: "appliance", EVENT_LIBRARY: "library", EVENT_TRACE: "trace",
    EVENT_ENTER: "enter", EVENT_LIBVIRT_AUTH: "libvirt_auth", EVENT_WARNING: "warning",
}


def event_to_string(events: int) -> str:
    """The names of the events in bitmask *events*, sorted and comma-separated, as
    libguestfs prints them (``close,launch_done``)."""
    return ",".join(sorted(name for flag, name in _NAMES.items() if events & flag))
