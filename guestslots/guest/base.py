"""What every group of guest calls stands on: one call path, one error path, one lock.

A guest call's host wrapper is written once, in the module of its area
(:mod:`.devices`, :mod:`.volumes`, :mod:`.mounts`, :mod:`.files`), which pairs
with the agent module of the same name inside the appliance.  Each wrapper
translates device names in (:meth:`GuestCalls._dev`), makes the call through
:meth:`GuestCalls._call` or :meth:`GuestCalls._agent_for` (which check the state,
watch the VM and translate errors), and translates names out
(:meth:`GuestCalls._out`), all under the appliance's lock (:func:`serialised`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import typing
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from ..agent_client import AgentClient
from ..errors import GuestslotsError, HostFileError

F = TypeVar("F", bound=Callable[..., Any])

#: Told the size of each chunk a transfer moves.
Progress = Callable[[int], None]
#: A host file: a path, or a binary file object the caller opened.
HostFile = str | os.PathLike[str] | IO[bytes]


def serialised(method: F) -> F:
    """Run *method* holding its appliance's lock.

    Every call on one Appliance is serialised: slot changes, the name
    translation around a guest call and the call itself happen as one step, so
    a call from one thread never sees another thread's half-done hotplug.  (The
    agent answers one call at a time anyway; for parallel work, use one
    appliance per thread.)
    """

    @functools.wraps(method)
    def wrapper(self: GuestCalls, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return typing.cast(F, wrapper)


@contextlib.contextmanager
def host_file(path: HostFile, mode: str) -> Iterator[IO[bytes]]:
    """Open host file *path* (a file object is used as it is, and left open); failing
    to open, read or write it is a :class:`HostFileError`."""
    if not isinstance(path, (str, os.PathLike)):
        yield path
        return
    try:
        f = open(path, mode)  # noqa: SIM115 (closed below)
    except OSError as e:
        raise HostFileError(os.fspath(path), e.strerror or str(e)) from None
    with f:
        try:
            yield typing.cast(IO[bytes], f)
        except OSError as e:
            if isinstance(e, GuestslotsError):
                raise
            raise HostFileError(os.fspath(path), e.strerror or str(e)) from None


class GuestCalls:
    """The plumbing the call groups use; :class:`~guestslots.appliance.Appliance`
    provides it."""

    _lock: threading.RLock

    def _agent_for(self, call: str) -> contextlib.AbstractContextManager[AgentClient]:
        """The agent, for one call named *call*: the appliance must be running; if the
        VM dies or the channel breaks meanwhile the appliance is closed; the agent's
        errors come out with API device names."""
        raise NotImplementedError

    def _call(self, call: str, wait_for: float | None = None, **args: Any) -> Any:
        """Run agent call *call* with *args*; wait *wait_for* seconds (default
        ``call_timeout``) for its answer."""
        with self._agent_for(call) as agent:
            return agent.call(call, wait_for=wait_for, **args)

    def _dev(self, name: str) -> str:
        """An API device name as the appliance's kernel names it."""
        raise NotImplementedError

    def _out(self, text: str) -> str:
        """*text* with the kernel's device names replaced by API names."""
        raise NotImplementedError

    def _forget_inspection(self) -> None:
        """Forget what inspection found (a slot's disk changed); see
        :class:`~guestslots.guest.inspect.InspectionCalls`, which remembers it."""

    def _filled_kernel_disks(self) -> list[str]:
        """The kernel names of every full slot's disk, in slot order."""
        raise NotImplementedError
