"""Many images at once: a pool of appliances on this machine.

Each worker is a thread that drives appliances of its own (QEMU does the work
in its own process, so threads are enough to use every core).  With
``isolate=True`` (the default) every image gets a fresh appliance of its own,
restored from the saved state in a fraction of a second: a hostile image
never shares a kernel with another image.  With ``isolate=False`` each worker
keeps one appliance and hotplugs the images into its slot 0 one after the
other (faster, but images scanned by one worker share an appliance).

One image's failure (missing, corrupt or hostile image, an appliance that died,
an exception in the caller's function) is that image's :class:`ImageResult`
error, never the whole run's.  Ctrl-C stops every appliance at once and raises
:class:`KeyboardInterrupt` with no QEMU left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .appliance import Appliance, ApplianceState
from .errors import GuestslotsError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often the thread waiting for results wakes to let Python act on a signal (s).
SIGNAL_CHECK_S = 0.2

#: Host memory one appliance needs beyond its guest RAM (QEMU itself, TCG's
#: translation cache, page tables), MiB: what sizes the default pool.
APPLIANCE_OVERHEAD_MIB = 160


@dataclass
class ImageResult(Generic[T]):
    """What one image gave: the function's *value*, or the *error* that stopped it."""

    #: The image, as given.
    image: str
    #: The function's return value (None if it failed).
    value: T | None = None
    #: Why it failed (None if it did not): a :class:`GuestslotsError` for the
    #: appliance's and the image's failures, or whatever the function raised.
    error: BaseException | None = None
    #: Seconds spent on this image (launch or hotplug, the function, shutdown or unplug).
    seconds: float = 0.0
    #: Position of the image in the input.
    position: int = field(default=0, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the function returned for this image."""
        return self.error is None

    def get(self) -> T:
        """The value; raises the image's error if it failed."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def default_workers(memory_mb: int = 512, cores: int | None = None,
                    available_mib: int | None = None) -> int:
    """How many appliances this machine runs at once: one per core the process may
    use (*cores*), fewer if the available memory (*available_mib*, default: the
    kernel's MemAvailable) cannot hold that many appliances of *memory_mb*."""
    cores = cores or len(os.sched_getaffinity(0))
    if available_mib is None:
        try:
            with open("/proc/meminfo") as f:
                info = dict(line.split(":", 1) for line in f)
            available_mib = int(info["MemAvailable"].split()[0]) // 1024
        except (OSError, KeyError, ValueError):
            return cores
    return max(1, min(cores, available_mib // (memory_mb + APPLIANCE_OVERHEAD_MIB)))


#: An image to scan: its path, or (path, format).
ImageItem = str | os.PathLike[str] | tuple[str | os.PathLike[str], str | None]


def ensure_saved_state(options: dict[str, Any],
                       track: Callable[[Appliance], None] = lambda app: None,
                       untrack: Callable[[Appliance], None] = lambda app: None) -> None:
    """Launch (and shut down) one appliance made with *options*, so that its saved
    state exists before many workers want it: otherwise each of them would boot cold
    to make it.  Fast when it exists (a restore)."""
    app = Appliance(**options)
    app.add_drive("/dev/null")
    track(app)
    try:
        app.launch()
    finally:
        app.shutdown()
        untrack(app)


class Runner:
    """Runs a function on one image at a time, as one pool worker (or one Dask worker
    thread) does: each image in a fresh appliance of its own (*isolate*), or all of
    them in turn in slot 0 of one appliance that is kept (and relaunched if it dies).

    *track* and *untrack* are told of every appliance started and stopped (so that
    it can be killed from another thread).
    """

    def __init__(self, isolate: bool, readonly: bool, options: dict[str, Any],
                 track: Callable[[Appliance], None] = lambda app: None,
                 untrack: Callable[[Appliance], None] = lambda app: None) -> None:
        self.isolate = isolate
        self.readonly = readonly
        self.options = options
        self._track = track
        self._untrack = untrack
        self._app: Appliance | None = None

    def run(self, func: Callable[[Appliance], T], image: str, format: str | None,
            position: int = 0) -> ImageResult[T]:
        """*func*'s result for *image*: its value, or the error that stopped it."""
        started = time.monotonic()
        result: ImageResult[T] = ImageResult(image, position=position)
        try:
            if self.isolate:
                result.value = self._run_isolated(func, image, format)
            else:
                result.value = self._run_shared(func, image, format)
        except Exception as e:  # the image's error, not the run's
            result.error = e
        result.seconds = time.monotonic() - started
        return result

    def _run_isolated(self, func: Callable[[Appliance], T], image: str,
                      format: str | None) -> T:
        app = Appliance(**self.options)
        self._track(app)
        try:
            app.add_drive(image, format=format, readonly=self.readonly)
            app.launch()
            return func(app)
        finally:
            with contextlib.suppress(GuestslotsError):
                app.shutdown()
            self._untrack(app)

    def _run_shared(self, func: Callable[[Appliance], T], image: str,
                    format: str | None) -> T:
        app = self._app
        if app is None or app.state is not ApplianceState.RUNNING:
            self.close()
            app = self._app = Appliance(**self.options)
            app.add_drive("/dev/null")
            self._track(app)
            app.launch()
        app.hotplug(0, image, format=format, readonly=self.readonly)
        try:
            return func(app)
        finally:
            if app.state is ApplianceState.RUNNING:
                try:
                    app.unplug(0, force=True)
                except GuestslotsError:
                    # the slot could not be emptied: the next image gets a fresh appliance
                    self.close()
                    raise

    def close(self) -> None:
        """Shut down the appliance kept for the next image, if any."""
        app, self._app = self._app, None
        if app is not None:
            with contextlib.suppress(GuestslotsError):
                app.shutdown()
            self._untrack(app)


def split_item(item: ImageItem, format: str | None) -> tuple[str, str | None]:
    """(path, format) of an image to scan; *format* unless the item names its own."""
    if isinstance(item, tuple):
        path, fmt = item
        return os.fspath(path), fmt
    return os.fspath(item), format


class Pool:
    """N appliances in parallel over many images.

    ``func(app)`` is called once per image with a launched :class:`Appliance`
    whose slot 0 (``/dev/sda``) holds the image; its return value is the
    image's result.  An image is a path, or a (path, format) pair; *format*
    (raw unless given; never guessed) and *readonly* apply to every image.
    With *isolate* (the default) each image has an appliance of its own; without
    it each worker hotplugs its images into one appliance in turn.  *options*
    go to :class:`Appliance` (``backend``, ``accel``, ``memory_mb``...).
    *workers* defaults to :func:`default_workers`.  *progress* shows a progress
    bar on standard error (default: when it is a terminal).  Use it as a context
    manager::

        with guestslots.Pool() as pool:
            for r in pool.imap_unordered(lambda app: app.inspect_os(), images):
                print(r.image, r.value if r.ok else r.error)
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        isolate: bool = True,
        format: str | None = None,
        readonly: bool = True,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers or default_workers(int(options.get("memory_mb", 512)))
        self.isolate = isolate
        self.format = format
        self.readonly = readonly
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.options = options
        self._lock = threading.Lock()
        self._live: set[Appliance] = set()
        self._stop = threading.Event()
        self._warm = False

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every appliance still running (a finished run leaves none anyway)."""
        self._stop.set()
        self._kill_all()

    def map(self, func: Callable[[Appliance], T],
            images: Iterable[ImageItem]) -> list[ImageResult[T]]:
        """Every image's :class:`ImageResult`, in the order of *images*."""
        results = list(self.imap_unordered(func, images))
        return sorted(results, key=lambda r: r.position)

    def imap_unordered(self, func: Callable[[Appliance], T],
                       images: Iterable[ImageItem]) -> Iterator[ImageResult[T]]:
        """Each image's :class:`ImageResult` as soon as it is done (any order).

        Ctrl-C (or leaving the loop early) kills every appliance at once: the
        images in progress and those not started get no result.
        """
        todo = [split_item(item, self.format) for item in images]
        if not todo:
            return
        self._stop.clear()
        work: queue.SimpleQueue[tuple[int, str, str | None]] = queue.SimpleQueue()
        for position, (path, fmt) in enumerate(todo):
            work.put((position, path, fmt))
        done: queue.SimpleQueue[ImageResult[T] | None] = queue.SimpleQueue()
        from tqdm import tqdm  # here: importing it costs every command-line call 25 ms

        bar = tqdm(total=len(todo), unit="image", disable=not self.progress, file=sys.stderr)
        threads: list[threading.Thread] = []
        try:
            self._prepare()
            threads = [
                threading.Thread(target=self._worker, args=(func, work, done),
                                 name=f"guestslots-pool-{n}", daemon=True)
                for n in range(min(self.workers, len(todo)))
            ]
            for thread in threads:
                thread.start()
            running = len(threads)
            while running:
                try:
                    # bounded, so that a Ctrl-C caught by another thread (libvirt's do
                    # catch it) is acted on: an unbounded wait would not wake for it
                    result = done.get(timeout=SIGNAL_CHECK_S)
                except queue.Empty:
                    continue
                if result is None:  # a worker ran out of images
                    running -= 1
                    continue
                bar.update(1)
                yield result
        finally:
            bar.close()
            # normal end: nothing to do.  Ctrl-C or an abandoned loop: stop everything now.
            self._stop.set()
            self._kill_all()
            for thread in threads:
                thread.join()

    # ---- workers

    def _prepare(self) -> None:
        if not self._warm:
            ensure_saved_state(self.options, self._track, self._untrack)
            self._warm = True

    def _track(self, app: Appliance) -> None:
        with self._lock:
            self._live.add(app)
            stopped = self._stop.is_set()
        if stopped:
            app.kill()

    def _untrack(self, app: Appliance) -> None:
        with self._lock:
            self._live.discard(app)

    def _kill_all(self) -> None:
        with self._lock:
            live = list(self._live)
        for app in live:
            app.kill()

    def _worker(self, func: Callable[[Appliance], T],
                work: queue.SimpleQueue[tuple[int, str, str | None]],
                done: queue.SimpleQueue[ImageResult[T] | None]) -> None:
        runner = Runner(self.isolate, self.readonly, self.options, self._track, self._untrack)
        try:
            while not self._stop.is_set():
                try:
                    position, image, fmt = work.get_nowait()
                except queue.Empty:
                    break
                result = runner.run(func, image, fmt, position)
                if not self._stop.is_set():
                    done.put(result)
        finally:
            runner.close()
            done.put(None)


__all__ = ["ImageItem", "ImageResult", "Pool", "Runner", "default_workers", "ensure_saved_state"]
