"""The same scan beyond one machine: on a Dask cluster (``pip install guestslots[dask]``).

A worker plugin (:class:`AppliancePlugin`) makes each worker ready before the
first image arrives (the appliance built and its state saved on that machine,
so every task restores in a fraction of a second) and, without isolation,
keeps one appliance per worker thread with images hotplugged in turn.  Tasks
carry image paths, so every worker must be able to read them (shared
storage); each returns the image's :class:`~guestslots.pool.ImageResult`, as
the local :class:`~guestslots.pool.Pool` does::

    from distributed import Client
    import guestslots.dask

    client = Client("tcp://scheduler:8786")      # or Client(LocalCluster(...))
    for r in guestslots.dask.scan(client, lambda app: app.inspect_os(), images):
        print(r.image, r.value if r.ok else r.error)

One image's failure is that image's error, as in the pool; errors that cannot
travel back (not picklable) arrive as a :class:`GuestslotsError` that says what
they were.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

try:
    from distributed import Client, WorkerPlugin, as_completed, get_worker
except ImportError as e:  # an optional extra
    raise ImportError(f"guestslots.dask needs Dask's distributed ({e}): "
                      "pip install 'guestslots[dask]'") from e

from .appliance import Appliance
from .errors import GuestslotsError
from .pool import ImageItem, ImageResult, Runner, ensure_saved_state, split_item

T = TypeVar("T")

#: The plugin's name on every worker.
PLUGIN = "guestslots"


class AppliancePlugin(WorkerPlugin):
    """Keeps a Dask worker's appliances warm: it launches one at set-up (building the
    appliance and saving its state on a machine that has none), and hands each
    task a :class:`~guestslots.pool.Runner` of its own; the runners (and, without
    *isolate*, their appliances) are kept for the next task and shut down at
    teardown."""

    name = PLUGIN

    def __init__(self, isolate: bool = True, readonly: bool = True,
                 **options: Any) -> None:
        self.isolate = isolate
        self.readonly = readonly
        self.options = options
        self._setup_state()

    def __getstate__(self) -> dict[str, Any]:
        # the plugin travels to the workers: its settings, not its runners
        return {"isolate": self.isolate, "readonly": self.readonly, "options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup_state()

    def _setup_state(self) -> None:
        self._runners: queue.SimpleQueue[Runner] = queue.SimpleQueue()
        self._all: list[Runner] = []
        self._lock = threading.Lock()

    def setup(self, worker: Any = None) -> None:
        ensure_saved_state(self.options)

    def teardown(self, worker: Any = None) -> None:
        with self._lock:
            runners, self._all = self._all, []
        for runner in runners:
            runner.close()

    def run(self, func: Callable[[Appliance], T], image: str, format: str | None,
            position: int) -> ImageResult[T]:
        """*func*'s result for *image*, with a runner no other task uses meanwhile."""
        try:
            runner = self._runners.get_nowait()
        except queue.Empty:
            runner = Runner(self.isolate, self.readonly, self.options)
            with self._lock:
                self._all.append(runner)
        try:
            return _portable(runner.run(func, image, format, position))
        finally:
            self._runners.put(runner)


def _portable(result: ImageResult[T]) -> ImageResult[T]:
    """*result*, with an error that pickling would lose replaced by one that says it."""
    if result.error is not None:
        try:
            pickle.loads(pickle.dumps(result.error))
        except Exception:
            error = result.error
            result.error = GuestslotsError(f"{type(error).__name__}: {error}")
    return result


def _task(func: Callable[[Appliance], T], image: str, format: str | None,
          position: int) -> ImageResult[T]:
    plugin = get_worker().plugins[PLUGIN]
    assert isinstance(plugin, AppliancePlugin)
    return plugin.run(func, image, format, position)


def scan(client: Client, func: Callable[[Appliance], T], images: Iterable[ImageItem], *,
         isolate: bool = True, format: str | None = None, readonly: bool = True,
         **options: Any) -> Iterator[ImageResult[T]]:
    """Each image's :class:`~guestslots.pool.ImageResult`, as soon as a worker of
    *client*'s cluster has it.  Arguments as for :class:`~guestslots.pool.Pool`
    (*func* must be picklable by cloudpickle: a lambda or a module's function).
    Leaving the loop early (Ctrl-C) cancels the images not yet done."""
    client.register_plugin(AppliancePlugin(isolate, readonly, **options), name=PLUGIN)
    futures = [
        client.submit(_task, func, path, fmt, position, pure=False)
        for position, (path, fmt) in enumerate(split_item(item, format) for item in images)
    ]
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            result = future.result()
            assert isinstance(result, ImageResult)
            yield result
    finally:
        with contextlib.suppress(Exception):
            client.cancel(futures)  # type: ignore[no-untyped-call]


def map(client: Client, func: Callable[[Appliance], T], images: Iterable[ImageItem],
        **options: Any) -> list[ImageResult[T]]:
    """Every image's result, in the order of *images* (see :func:`scan`)."""
    return sorted(scan(client, func, images, **options), key=lambda r: r.position)


__all__ = ["AppliancePlugin", "map", "scan"]
