"""libguestfs's Python API on guestslots: ``import guestslots.guestfs as guestfs``, or
run an unchanged program with ``python -m guestslots.guestfs PROGRAM [ARGS]`` (its
``import guestfs`` then gets this module).

``GuestFS`` behaves as libguestfs 1.48's binding (``guestfs-python(3)``): hashes are
lists of pairs unless ``python_return_dict=True``, structs are dicts, booleans 0 or
1, errors ``RuntimeError("CALL: what")``, a closed handle's calls ``ClosedHandle``;
``trace`` prints ``libguestfs: trace:`` lines.  Each handle is its own appliance,
restored from guestslots' saved state at ``launch``.  A libguestfs call that is not
answered here is no attribute (``AttributeError``): docs/guestfs-calls.md lists
which are.
"""

from __future__ import annotations

from .calls import Calls
from .events import (
    EVENT_ALL,
    EVENT_APPLIANCE,
    EVENT_CLOSE,
    EVENT_ENTER,
    EVENT_LAUNCH_DONE,
    EVENT_LIBRARY,
    EVENT_LIBVIRT_AUTH,
    EVENT_PROGRESS,
    EVENT_SUBPROCESS_QUIT,
    EVENT_TRACE,
    EVENT_WARNING,
    event_to_string,
)
from .handle import ClosedHandle

__all__ = [
    "EVENT_ALL", "EVENT_APPLIANCE", "EVENT_CLOSE", "EVENT_ENTER", "EVENT_LAUNCH_DONE",
    "EVENT_LIBRARY", "EVENT_LIBVIRT_AUTH", "EVENT_PROGRESS", "EVENT_SUBPROCESS_QUIT",
    "EVENT_TRACE", "EVENT_WARNING", "ClosedHandle", "GuestFS", "event_to_string",
]


class GuestFS(Calls):
    """A libguestfs handle: ``GuestFS(python_return_dict=False, environment=True,
    close_on_exit=True)``.  It may be subclassed."""
