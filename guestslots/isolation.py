"""One appliance per trust domain.

One appliance that sees the disks of several guests mixes their trust
domains: a hostile filesystem that compromises the appliance's kernel could
read or change every other disk attached to it (one reason libguestfs dropped
hotplug).  A launch restored from the saved appliance costs about a fifth of a
second here, so the safe pattern is affordable: give each untrusted image, or
each group of images that trust each other, an appliance of its own.

A program that calls :func:`isolated` again and again (one appliance per image
of a list) gets the next appliance restored ahead of need: from the second call
with the same options on, a *standby* appliance is launched in a background
thread while the caller works with the current one, and the next call plugs its
images into it.  A standby has never held an image, serves one call and is shut
down at its end, as any other; one left over when the program ends is shut down
then.  (It is not warmed up as well: taking the warm-up disk through it costs
0.5-0.6 s of the guest's time under TCG, more than the 0.3 s it saves the first
hotplug, and a loop then waits for it.)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Hashable, Iterator
from concurrent.futures import Future
from typing import Any

from .appliance import Appliance, ApplianceState
from .errors import GuestslotsError
from .model.flags import CONFIG, LIVE
from .opening import open_appliance


@contextlib.contextmanager
def isolated(
    *images: str | os.PathLike[str],
    format: str | None = None,
    readonly: bool = True,
    slots: int = 0,
    **options: Any,
) -> Iterator[Appliance]:
    """A launched appliance of its own holding *images* (slots 0...), shut down afterwards.

    *format* and *readonly* apply to every image; *slots* reserves that many
    more empty slots after them; *options* go to :class:`Appliance`.  Use one
    per trust domain::

        for image in untrusted_images:
            with guestslots.isolated(image) as app:
                print(image, app.list_filesystems())

    From the second call with the same options and number of slots on, the next
    call's appliance is restored in the background meanwhile (a standby: it has
    held no image before), so that a loop like this one does not wait for a
    launch at every image.
    """
    key = _standby_key(len(images) + slots, options)
    app = _STANDBY.take(key) if key is not None else None
    if app is not None:
        try:
            for index, image in enumerate(images):
                app.hotplug(index, image, format=format, readonly=readonly,
                            flags=LIVE | CONFIG)
        except GuestslotsError:
            died = app.state is not ApplianceState.RUNNING
            app.shutdown()
            if not died:
                raise  # the image's fault: as the launch would have said
            app = None  # it died while it waited: launch as if there were none
        except BaseException:
            app.shutdown()
            raise
    if app is None:
        app = open_appliance([(image, format) for image in images], readonly=readonly,
                             slots=slots, launch=True, **options)
    if key is not None:
        _STANDBY.prepare(key, len(images) + slots, options)
    try:
        yield app
    finally:
        app.shutdown()


def drop_standby() -> None:
    """Shut down the standby appliance :func:`isolated` keeps for a loop, if there is
    one (it is otherwise shut down when the program ends): at the end of a loop that
    the program outlives, to give its memory back.  The next calls count as a new
    loop (a standby again from the second one on)."""
    _STANDBY.close()


def _standby_key(slots: int, options: dict[str, Any]) -> Hashable | None:
    """What a standby must match to serve a call: the Appliance options and the number
    of slots; None where no standby is kept (a detached appliance outlives this
    process; options that are not plain values cannot be compared)."""
    if options.get("detached"):
        return None
    if not all(isinstance(v, str | int | float | bool | None) for v in options.values()):
        return None
    return slots, tuple(sorted(options.items()))


def _launch_standby(future: Future[Appliance], slots: int, options: dict[str, Any]) -> None:
    try:
        app = Appliance(**options)
        for _ in range(slots):
            app.add_drive("/dev/null")
        app.launch()
    except BaseException as e:
        future.set_exception(e)
    else:
        future.set_result(app)


def _discard(future: Future[Appliance]) -> None:
    """Shut down a standby once its launch ended (waiting for it: a few seconds at
    most, as its launch is bounded by the appliance's own timeouts)."""
    with contextlib.suppress(Exception):
        future.result().shutdown()


class _Standby:
    """At most one appliance launched ahead of need, and how often each key was asked
    for (a standby is made from a key's second call on)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[Hashable, Future[Appliance]] | None = None
        self._calls: dict[Hashable, int] = {}
        self._pid = os.getpid()
        self._exit_hook = False

    def take(self, key: Hashable) -> Appliance | None:
        """The standby for *key* once it is up (None: none, another key's, or its launch
        failed: the caller launches as usual and sees the failure itself)."""
        with self._lock:
            self._check_pid()
            self._calls[key] = self._calls.get(key, 0) + 1
            pending, self._pending = self._pending, None
        if pending is None:
            return None
        pending_key, future = pending
        if pending_key != key:
            threading.Thread(target=_discard, args=(future,), daemon=True).start()
            return None
        try:
            return future.result()
        except Exception:
            return None

    def prepare(self, key: Hashable, slots: int, options: dict[str, Any]) -> None:
        """Launch the standby for *key* in the background, if *key* was asked for
        more than once and no standby is pending."""
        with self._lock:
            self._check_pid()
            if self._pending is not None or self._calls.get(key, 0) < 2:
                return
            future: Future[Appliance] = Future()
            self._pending = (key, future)
            if not self._exit_hook:
                atexit.register(self.close)
                self._exit_hook = True
        threading.Thread(target=_launch_standby, args=(future, slots, dict(options)),
                         name="guestslots-standby", daemon=True).start()

    def close(self) -> None:
        """Shut down the standby, if any, and forget the calls counted (the loop
        ended: at exit, or by :func:`drop_standby`)."""
        with self._lock:
            pending, self._pending = self._pending, None
            self._calls.clear()
        if pending is not None and self._pid == os.getpid():
            _discard(pending[1])

    def _check_pid(self) -> None:
        """A child process (fork) never takes its parent's standby: forget it here."""
        if self._pid != os.getpid():
            self._pending = None
            self._calls.clear()
            self._pid = os.getpid()


_STANDBY = _Standby()
