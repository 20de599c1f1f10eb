"""Launch (restored or cold) and shutdown."""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import weakref
from typing import Self

from .. import backends
from ..agent_client import AgentClient
from ..backends import (
    Backend,
    VMSpec,
)
from ..errors import (
    AgentError,
    GuestslotsError,
    LabelError,
    LaunchError,
    QemuError,
    StateError,
)
from ..host import runtime, savedstate, warmup
from ..host.accel import AccelChoice, choose_accel
from ..host.build import ApplianceImage, ensure_appliance
from ..host.proc import signal_process
from ..host.sources import make_drive
from ..model.cpus import check_tcg_definition
from ..model.drives import NULL_DRIVE
from ..model.runtime import RuntimeRecordError
from ..model.slots import SlotState
from .core import ApplianceState, log, reap, warn
from .disksets import DiskSetArea


class LifecycleArea(DiskSetArea):
    """Launch (restored or cold) and shutdown."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def add_drive(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        readonly: bool = True,
        label: str | None = None,
        overlay: bool = False,
        sslverify: bool = True,
    ) -> int:
        """Reserve the next slot before launch; return its index.

        ``/dev/null`` reserves an empty slot, to be filled later by
        :meth:`hotplug`.  Any other path is checked now and attached at launch.
        ``format`` is ``raw`` (the default) or ``qcow2``, never guessed;
        drives are read-only unless ``readonly=False``; ``label`` (1-20
        letters, digits, ``_``) names the slot as ``/dev/disk/guestslots/LABEL``;
        with ``overlay=True`` the guest may write, but to a throwaway overlay:
        the image itself is only read, and the writes are gone at unplug.

        *path* may also be a URL: ``nbd://HOST[:PORT][/EXPORT]``,
        ``nbd+unix:///EXPORT?socket=PATH``, ``nbds://`` (TLS, with
        ``?tls-certificates=DIR``), ``http(s)://`` (read-only; the certificate is
        checked unless ``sslverify=False``) or ``ssh://[USER@]HOST[:PORT]/PATH``
        (the host key checked against known_hosts).  A remote source is opened once
        now to check it, as a file is.

        A read-only drive is also seen through a throwaway overlay (as libguestfs
        does), so that md arrays assemble and dirty journals replay; only
        read-only mounts are allowed, and the image is never written.
        """
        with self._lock:
            if self._state is ApplianceState.RUNNING:
                raise StateError(
                    "add_drive",
                    ApplianceState.CONFIG.value,
                    self._state.value + " (reserve every slot before launch; then use hotplug)",
                )
            if os.fspath(path) == NULL_DRIVE:
                if label is not None:
                    raise LabelError("an empty slot has no label: give the label to hotplug")
                return self._table.reserve(None)
            drive = make_drive(path, format, readonly, label, overlay, sslverify,
                               self._probe_timeout())
            self._check_shared_image(None, drive, config=True)
            return self._table.reserve(drive)

    def launch(self, fresh: bool = False) -> None:
        """Start the appliance and attach the drives added so far.

        The first launch of a given configuration builds the appliance if
        needed, boots it cold, and saves the booted state; later launches
        restore that state (under a second).  ``fresh=True`` forces a cold
        boot.  A restore that fails for any reason falls back to a cold boot
        with a :class:`RuntimeWarning`, and the bad state is rebuilt.

        An appliance that was shut down may be launched again: it starts from its
        definition (the drives of :meth:`add_drive` and of hotplug and unplug with
        ``CONFIG``), not from what was plugged when it stopped.

        Raises :class:`LaunchError` with QEMU's exit status, command line and
        log tail if the appliance does not come up; nothing is left running.
        """
        with self._lock:
            if self._state is ApplianceState.RUNNING:
                raise StateError("launch", ApplianceState.CONFIG.value, self._state.value)
            self._refuse_running_twin()
            self._table.show_config()
            gone = self._diskset.keep_only(self._filled())
            if gone:  # unplugged from the definition (CONFIG) while it ran
                warn(f"appliance {self.id}: slots {gone} are empty in the definition and "
                     f"left the disk set (now {self._diskset.list()})", stacklevel=3)
            started = time.monotonic()
            self.image = ensure_appliance(self._say)
            self.accel = choose_accel(self.qemu_binary, str(self.image.kernel), self._accel_request)
            self._say(f"accelerator: {self.accel.accel} ({self.accel.reason})")
            if self.accel.accel == "tcg" and self._vcpus.config:
                # defined before the accelerator was known: refused before QEMU starts
                check_tcg_definition(max(self._vcpus.config), self._vcpus.config,
                                     self._tcg_rules())
            self._start_vm(self.image, fresh)
            try:
                for slot in self._table:
                    if slot.drive is not None:
                        self._plug(slot.index, slot.drive)
                self._vcpus.live = {0}
                for vcpu in sorted(self._vcpus.config - {0}):
                    self._plug_vcpu(vcpu)
                self._nics.live = {}
                for nic_slot, nic in sorted(self._nics.config.items()):
                    self._plug_nic(nic_slot, nic)
            except BaseException:
                self._teardown()
                self._state = ApplianceState.CLOSED
                self._table.show_config()
                raise
            took = time.monotonic() - started
            self._started = time.time()
            self._update_runtime()
            self._say(f"appliance ready in {took:.2f} s ({self.launched_from})")

    def _refuse_running_twin(self) -> None:
        """Refuse to launch while this appliance id runs elsewhere (a detached appliance
        this object disconnected from, or another process attached to)."""
        try:
            record = runtime.read(runtime.record_path(self.id))
        except (OSError, RuntimeRecordError):
            return
        if runtime.vm_alive(record):
            raise StateError("launch", "not running anywhere",
                             f"running detached as pid {record.pid} "
                             f"(guestslots.attach('{self.id}'), or shut it down)")

    def _new_backend(self, image: ApplianceImage, accel: str) -> Backend:
        spec = VMSpec(image=image, accel=accel, qemu=self.qemu_binary,
                      memory_mb=self.memory_mb, tcg_cache_mib=self.tcg_cache_mib,
                      max_vcpus=self._vcpus.max_vcpus, appliance_id=self.id,
                      detached=self.detached)
        return backends.create(self.backend, self.uri, spec)

    def _start_vm(self, image: ApplianceImage, fresh: bool) -> None:
        assert self.accel is not None
        backend = self._new_backend(image, self.accel.accel)
        use_saved = self.saved_state and not fresh and backend.saves_state
        key = savedstate.state_key(backend.layout_key(), image.key)
        self._layout_key = key
        saved = savedstate.find(key) if use_saved else None
        unusable = savedstate.check(saved) if saved is not None else ""
        if saved is not None and unusable:
            message = f"the saved appliance is not usable ({unusable}): booting cold to rebuild it"
            warn(message, stacklevel=4)
            savedstate.discard(key)
            saved = None
        if saved is not None:
            try:
                self._boot(backend, saved)
                self.launched_from = "restored"
                return
            except GuestslotsError as e:
                message = f"restoring the saved appliance failed, booting cold instead: {e}"
                warn(message, stacklevel=4)
                savedstate.discard(key)
                backend = self._new_backend(image, self.accel.accel)
        try:
            self._boot(backend)
        except LaunchError:
            if self.accel.accel != "kvm" or self.accel.requested:
                raise
            self._say("the appliance did not boot under KVM: retrying with TCG")
            self.accel = AccelChoice("tcg", "KVM passed its probe but the boot failed")
            backend = self._new_backend(image, "tcg")
            key = self._layout_key = savedstate.state_key(backend.layout_key(), image.key)
            self._boot(backend)
        self.launched_from = "cold boot"
        if use_saved:
            try:
                self._save_state(key)
            except (GuestslotsError, OSError) as e:
                message = f"could not save the booted appliance (launches stay cold): {e}"
                warn(message, stacklevel=4)
                if self._backend is None or not self._backend.is_running():
                    raise

    def _save_state(self, key: str) -> None:
        backend, agent = self._running("launch")
        self._say("saving the booted appliance, so that later launches restore it")
        started = time.monotonic()

        # what the guest cached while booting is of no use: drop it, then take a first
        # hotplug as a real image would, so that every restored appliance starts warm
        agent.call("prepare_save", wait_for=60)
        self._warm_up(backend, agent)
        staged = savedstate.staging(key)
        try:
            backend.save(staged, timeout=120)
            savedstate.publish(key, staged, backend.name)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self._say(f"saved in {time.monotonic() - started:.1f} s")
        if backend.save_stops:
            # the VM is gone: carry on from the state just saved (which proves it)
            saved = savedstate.find(key)
            agent.close()
            if self._finalizer is not None:
                self._finalizer.detach()
            self._backend = self._agent = None
            if saved is None:
                backend.kill()
                raise LaunchError("the state just saved is not in the cache")
            self._boot(backend, saved)

    def _warm_up(self, backend: Backend, agent: AgentClient) -> None:
        """Use the warm-up disk once in slot 0 (see :mod:`guestslots.host.warmup`): plug,
        scan, list, mount, read, unmount, unplug.  No slot is filled yet."""
        drive = make_drive(warmup.image(), "raw", True, None, False)
        backend.attach_disk(0, drive, timeout=self.call_timeout)
        found = agent.call("disk_plugged", target=0, readonly=True,
                           activate=self.auto_activate, timeout=60)
        disk = f"/dev/{found['name']}"
        try:
            agent.call("list_filesystems", disks=[disk])
            agent.call("mount", device=disk + "1", mountpoint="/", readonly=True)
            agent.download("download", io.BytesIO(), path=warmup.FILE)
        finally:
            agent.call("umount_all")
            agent.call("prepare_unplug", device=disk)
            backend.detach_disk(0, timeout=self.call_timeout)
            agent.call("wait_disk", target=0, plugged=False, timeout=60)
        agent.call("net_prepare")  # the NIC driver, loaded once here, not per appliance
        # No vCPU is plugged and unplugged here: QEMU 7.2 under TCG keeps an unplugged
        # vCPU's address space after freeing it, and the save's first memory transaction
        # then aborts QEMU (free(): invalid pointer in qemu_savevm_state_setup), about
        # one save in two (measured).  A restored appliance's first vCPU plug takes
        # 0.4 s without this warm-up.

    def _boot(self, backend: Backend, saved: savedstate.SavedState | None = None) -> None:
        """Start *backend*'s VM (restoring *saved*) and wait until its agent answers."""
        self._vcpu_unplugged = False  # a new VM
        finalizer = weakref.finalize(self, reap, backend)
        accel = self.accel.accel if self.accel else "?"
        self._say(f"restoring the saved appliance ({accel})" if saved
                  else f"booting the appliance ({accel})")
        try:
            sock = backend.start(saved.directory if saved else None, timeout=60)
            agent = AgentClient(sock, backend.death_report, self.call_timeout)
            try:
                if saved is not None:
                    agent.call("ping", wait_for=30)
                else:
                    agent.wait_hello(self.boot_timeout)
            except (AgentError, QemuError) as e:
                what = "restored" if saved else "came up"
                raise backend.error(f"the appliance never {what}: {e}", LaunchError) from None
        except BaseException:
            finalizer()
            raise
        self._backend, self._agent = backend, agent
        if self.detached:
            finalizer.detach()  # it outlives this object and this process
        else:
            self._finalizer = finalizer
        self._state = ApplianceState.RUNNING

    def shutdown(self) -> None:
        """Unmount everything, sync, power the appliance off and clean up.

        An appliance whose every slot is read-only or ``overlay=True`` has nothing
        to write back: it is stopped at once.  Safe to call more than once.  A later
        :meth:`launch` starts the appliance again from its definition.
        """
        with self._lock:
            graceful = False
            if self._state is ApplianceState.RUNNING and self._agent is not None \
                    and not self._nothing_to_lose():
                try:
                    self._agent.call("shutdown", wait_for=min(self.call_timeout, 30))
                    graceful = True
                except GuestslotsError as e:  # stuck or gone: nothing to wait for
                    log.warning("the appliance did not power off by itself (%s): killing it",
                                str(e).splitlines()[0])
            self._teardown(graceful)
            self._state = ApplianceState.CLOSED
            self._table.show_config()

    close = shutdown

    def kill(self) -> None:
        """Kill the appliance's VM at once, from any thread, even during a call.

        For a Ctrl-C handler or a watchdog: a call in progress fails with
        :class:`ChannelClosed` and the appliance closes (what was written since the
        last sync is lost, as after a power cut).  A no-op when not running.
        """
        pid = self.pid
        if pid is not None:
            signal_process(pid, signal.SIGKILL)

    def _nothing_to_lose(self) -> bool:
        """Whether no image would keep anything of a graceful shutdown: every full
        slot's writes go to a throwaway overlay (read-only or ``overlay=True``), so
        the VM is stopped at once (no unmount, sync and power-off to wait for)."""
        return all(slot.drive is None or slot.drive.throwaway for slot in self._table
                   if slot.state is SlotState.FILLED)
