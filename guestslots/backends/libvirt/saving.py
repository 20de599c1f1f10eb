"""Saving a libvirt domain with its slots (saveFlags), and restoring it under its name."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import libvirt

from ...errors import GuestslotsError, LaunchError
from ...host.savedstate import ROOT_FILE, STATE_FILE
from .. import Layout, NotResumed
from ..workfiles import keep_overlays
from . import bounded, connection
from .jobs import DomainJobs

log = logging.getLogger(__name__)


class DomainSaving(DomainJobs):
    """Saving a libvirt domain with its slots (saveFlags), and restoring it under its name."""

    def save(self, directory: Path, timeout: float) -> None:
        """Save the domain's state (libvirt's save stops it) and its root overlay into
        *directory*.  The domain is gone afterwards: :meth:`start` from the state."""
        self.save_appliance(directory, Layout(), timeout)

    def save_appliance(self, directory: Path, layout: Layout, timeout: float,
                       exports: Sequence[tuple[int, str, str]] = (),
                       live: bool = False) -> socket.socket | None:
        """:meth:`save`, plus the throwaway overlay of each slot of *layout* that has
        one (the saved XML names its path here: :meth:`start` moves it).  With
        *exports* (slot, target file made by the caller, its format), the domain is
        paused first and those slots' disks are copied into the targets (a backup
        job), so the copies match the saved memory.

        libvirt's save always stops the domain; with *live* the domain is restored
        from the state just saved, at once, on the images it ran on (not on the
        copies), with a root disk of its own (it needs nothing of *directory*
        afterwards): the new agent channel is returned.  If it cannot be, the save
        is whole and :class:`~guestslots.backends.NotResumed` says why."""
        domain = self._running()
        assert self._workdir is not None
        state = str(directory / STATE_FILE)
        if exports:
            try:
                bounded.call(domain.suspend, 30, "pausing the appliance", self._log_tail())
                self.export_disks(list(exports), lambda: None, None, timeout)
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError, GuestslotsError):
                    bounded.call(domain.resume, 30, "resuming the appliance")
                raise
        try:
            bounded.call(lambda: domain.saveFlags(state, None, 0), timeout,
                         "saving the appliance state", self._log_tail())
        except libvirt.libvirtError as e:
            raise self.error(f"libvirt cannot save the appliance: {e.get_error_message()}"
                             ) from None
        finally:
            self.domain = None
            self._qemu_pid = None
            self._forget_process()
        keep_overlays(self._workdir.path, layout, directory, ROOT_FILE,
                      str(self.spec.image.root))
        self._workdir.remove()
        self._workdir = None
        if not live:
            return None
        self.restore_layout(layout, directory)
        self._own_root = True
        try:
            return self.start(directory, timeout)
        except Exception as e:
            raise NotResumed(e) from e
        finally:
            self._own_root = False

    def claim_domain_name(self, name: str) -> None:
        """Run under *name* (a saved appliance's own): it restores under no other."""
        if self._domain_name == name:
            return
        if not connection.claim_name(self._connect(), name):
            raise LaunchError(f"the saved appliance's domain {name} is running: stop it "
                              "first")
        if self._domain_name:
            connection.release_name(self._domain_name)
        self._domain_name = name

    def restore_layout(self, layout: Layout, directory: Path) -> None:
        """Make the next :meth:`start` (from *directory*, saved by
        :meth:`save_appliance`) bring *layout*'s overlays along and know its disks."""
        self._pending = (layout, directory)
