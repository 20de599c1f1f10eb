"""vCPU slots: the appliance's vCPU ids, which are plugged, and the rules for changing them.

Pure (seed 000): ``Appliance(vcpus=K, max_vcpus=N)`` reserves ids ``0..N-1``
at launch, ids ``0..K-1`` plugged.  ``add`` plugs a given id (``-1``: the first
free one) and ``remove`` unplugs one (``-1``: the highest plugged); id 0 is the
boot CPU and never leaves.  As for drive slots, there are two sets: what the
running appliance has (live) and what its next launch starts with (config),
changed by the ``LIVE`` / ``CONFIG`` / ``CURRENT`` flags.  A refused change
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GuestslotsError

#: The most vCPUs QEMU's ``pc`` machine takes (``query-machines``: cpu-max 255).
MAX_VCPUS = 255

#: Why the libvirt backend refuses a LIVE vCPU removal under TCG (measured here: libvirt
#: 9.0, QEMU 7.2): QEMU removes the vCPU about a second after the guest offlined it, but
#: sends no DEVICE_DELETED for it, and libvirt waits for exactly that event; its setVcpu
#: times out and its domain keeps the vCPU enabled, so a later plug of that id fails.
LIBVIRT_TCG_REMOVAL = (
    "the libvirt backend cannot unplug a vCPU under TCG: QEMU 7.2 removes it but sends "
    "no DEVICE_DELETED for it, and libvirt 9.0 waits for exactly that event (its setVcpu "
    "times out and its domain keeps the vCPU for good); plug vCPUs with CONFIG and "
    "launch again, or use backend='qemu'")


class VcpuError(GuestslotsError):
    """A vCPU id, or the vCPU counts asked for, do not allow the change; nothing was
    changed."""

    def __init__(self, vcpu: int | None, message: str) -> None:
        self.vcpu = vcpu
        super().__init__(message)


@dataclass(frozen=True)
class Vcpu:
    """One vCPU id: whether it is plugged, and (running appliance) whether the guest
    has it online."""

    id: int
    #: Plugged into the running appliance (or, not running, in its definition).
    present: bool
    #: Online in the guest; None when the appliance does not run.
    online: bool | None = None

    @property
    def state(self) -> str:
        """``absent``, ``present`` (plugged, offline in the guest) or ``online``."""
        if not self.present:
            return "absent"
        return "online" if self.online else "present"


def check_counts(vcpus: int, max_vcpus: int) -> None:
    """Refuse vCPU counts the appliance cannot have."""
    for name, value in (("vcpus", vcpus), ("max_vcpus", max_vcpus)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise VcpuError(None, f"{name} must be a whole number, not {value!r}")
    if max_vcpus < 1 or max_vcpus > MAX_VCPUS:
        raise VcpuError(None, f"max_vcpus={max_vcpus}: the machine allows 1 to {MAX_VCPUS}")
    if not 1 <= vcpus <= max_vcpus:
        raise VcpuError(None, f"vcpus={vcpus}: must be 1 to max_vcpus ({max_vcpus})")


class VcpuTable:
    """The ids 0..max_vcpus-1, and which of them are plugged: live and in the config."""

    def __init__(self, vcpus: int = 1, max_vcpus: int = 1) -> None:
        check_counts(vcpus, max_vcpus)
        self.max_vcpus = max_vcpus
        self.config: set[int] = set(range(vcpus))
        self.live: set[int] = set()

    def _check_id(self, vcpu: int) -> int:
        if not isinstance(vcpu, int) or isinstance(vcpu, bool):
            raise VcpuError(None, f"a vCPU id is a whole number, not {vcpu!r}")
        if not 0 <= vcpu < self.max_vcpus:
            raise VcpuError(vcpu, f"vCPU {vcpu} does not exist: this appliance has ids 0 to "
                            f"{self.max_vcpus - 1} (max_vcpus={self.max_vcpus})")
        return vcpu

    def add_id(self, vcpu: int, live: bool, config: bool) -> int:
        """The id that ``add_vcpu(vcpu)`` plugs into the chosen sets (``-1``: the
        first id free in each of them); refuses an id already plugged there."""
        sets = [s for s, chosen in ((self.live, live), (self.config, config)) if chosen]
        if vcpu == -1:
            for candidate in range(self.max_vcpus):
                if all(candidate not in s for s in sets):
                    return candidate
            raise VcpuError(None, f"every vCPU id is plugged (max_vcpus={self.max_vcpus})")
        self._check_id(vcpu)
        if any(vcpu in s for s in sets):
            where = "running appliance" if live and vcpu in self.live else "definition"
            raise VcpuError(vcpu, f"vCPU {vcpu} is already plugged (in the {where})")
        return vcpu

    def remove_id(self, vcpu: int, live: bool, config: bool) -> int:
        """The id that ``remove_vcpu(vcpu)`` unplugs from the chosen sets (``-1``:
        the highest plugged in the first of them); refuses id 0 (the boot CPU) and
        an id that is not plugged there."""
        sets = [s for s, chosen in ((self.live, live), (self.config, config)) if chosen]
        if vcpu == -1:
            plugged = max(sets[0]) if sets and sets[0] else 0
            if plugged == 0:
                raise VcpuError(0, "only vCPU 0, the boot CPU, is plugged: nothing to remove")
            vcpu = plugged
        self._check_id(vcpu)
        if vcpu == 0:
            raise VcpuError(0, "vCPU 0 is the boot CPU: it cannot be removed")
        if not all(vcpu in s for s in sets):
            raise VcpuError(vcpu, f"vCPU {vcpu} is not plugged")
        return vcpu

    def list(self, running: bool, online: set[int] | None = None) -> list[Vcpu]:
        """Every id with its state: the live set when *running* (with *online*, the
        ids the guest has online), else the config."""
        plugged = self.live if running else self.config
        return [Vcpu(i, i in plugged, (i in (online or set())) if running else None)
                for i in range(self.max_vcpus)]


@dataclass(frozen=True)
class TcgVcpuRules:
    """What one QEMU version under TCG survives of vCPU hotplug, as measured here
    (``tools/bench/qemu_rules.py``: each case in fresh appliances, on each QEMU)."""

    #: The QEMU version (``major.minor``) the rules are for, as QEMU reports it.
    qemu: str
    #: Plugged ids may leave a gap, in the running VM and in the definition (else:
    #: they stay 0..k-1).  A launch plugs the definition's vCPUs one by one once the
    #: VM runs, as hotplugs; a relaunch, a migration and a save and restore with a
    #: gap, each then plugging the missing id, were measured too.
    gaps: bool
    #: A vCPU may be plugged after one was unplugged (else QEMU crashes on it).
    plug_after_unplug: bool
    #: The state may be saved (save, migration) after a vCPU was unplugged.
    save_after_unplug: bool
    #: A PCI device (a NIC) may be hotplugged after a vCPU was unplugged.
    pci_after_unplug: bool
    #: False: a version not measured here, given every limit.
    measured: bool = True

    def because(self, what: str) -> str:
        """``QEMU 7.2 under TCG`` + *what* (and that it was not measured, if so)."""
        return f"QEMU {self.qemu} under TCG {what}" + (
            "" if self.measured else " (as measured on QEMU 7.2; this version was not)")


#: The rules measured here, by QEMU major.minor (tools/bench/qemu_rules.py; the table
#: in the README).
MEASURED_TCG_RULES = {
    (7, 2): TcgVcpuRules("7.2", gaps=False, plug_after_unplug=False,
                         save_after_unplug=False, pci_after_unplug=False),
    # 10.0: a live gap in 19 of 19 runs (7.2's guest locked up in 1 of 3 unplugs
    # with a gap), and a gap carried over a migration (3 of 3), a save and restore
    # (5 of 5) and a relaunch (3 of 3), the missing id plugged after each; a plug
    # after an unplug crashed it within five cycles (3 of 3); a save after one
    # unplug worked, after three it hung (3 of 3); a NIC hotplug after one or three
    # unplugs worked (6 of 6)
    (10, 0): TcgVcpuRules("10.0", gaps=True, plug_after_unplug=False,
                          save_after_unplug=False, pci_after_unplug=True),
}


def tcg_vcpu_rules(version: str) -> TcgVcpuRules:
    """The rules for QEMU *version* (``"10.0.2"``): as measured for its major.minor;
    for a version not measured, every limit (the strictest measured)."""
    parts = version.split(".")
    key = (int(parts[0]), int(parts[1])) if len(parts) > 1 and parts[0].isdigit() \
        and parts[1].isdigit() else (0, 0)
    if key in MEASURED_TCG_RULES:
        return MEASURED_TCG_RULES[key]
    return TcgVcpuRules(".".join(parts[:2]), gaps=False, plug_after_unplug=False,
                        save_after_unplug=False, pci_after_unplug=False, measured=False)


def check_tcg_definition(vcpu: int, config: set[int], rules: TcgVcpuRules) -> None:
    """Refuse (:class:`VcpuError`) a change to the definition that leaves its vCPU ids
    *config* (after the change to *vcpu*) with a gap, which a launch under TCG cannot
    plug unless *rules* allow gaps (see :func:`check_tcg_change` and
    :attr:`TcgVcpuRules.gaps`): then the definition's ids stay 0..k-1."""
    if rules.gaps:
        return
    gap = min(set(range(max(config) + 1)) - config, default=None)
    if gap is not None:
        raise VcpuError(vcpu, f"the definition's vCPUs would be {sorted(config)}: under TCG "
                        f"a launch cannot plug them with vCPU {gap} absent (the guest of "
                        f"{rules.because('locks up with a gap')}); keep the ids 0 to k-1")


def check_tcg_change(vcpu: int, adding: bool, live: set[int], max_vcpus: int,
                     unplugged_since_start: bool, rules: TcgVcpuRules) -> None:
    """Refuse (:class:`VcpuError`) plugging (*adding*) or unplugging vCPU *vcpu* of a VM
    that has the *live* ids, when its QEMU under TCG cannot do it (*rules*, measured
    here): on QEMU 7.2 and 10.0 a plug after an unplug crashes QEMU (7.2 at once, 10.0
    within a few cycles), and on 7.2 a guest whose plugged ids leave a gap locks up in
    its next CPU change (stop_machine never completes; 10.0's did not).  So under TCG
    the plugged ids stay 0..k-1 (add the lowest free id, remove the highest) unless the
    rules allow gaps, and nothing is plugged once a vCPU was unplugged
    (*unplugged_since_start*)."""
    if adding and unplugged_since_start and not rules.plug_after_unplug:
        raise VcpuError(vcpu, f"vCPU {vcpu} cannot be plugged: a vCPU was unplugged since "
                        f"this appliance started, and "
                        f"{rules.because('crashes on a vCPU plug after that')}; shut down "
                        "and launch again to plug vCPUs (the definition, CONFIG, is "
                        "unaffected)")
    if rules.gaps:
        return
    lowest_free = min(set(range(max_vcpus)) - live, default=None)
    if adding and vcpu != lowest_free:
        raise VcpuError(vcpu, f"vCPU {vcpu} cannot be plugged before vCPU {lowest_free}: "
                        "under TCG the plugged ids must stay 0 to k-1 (with a gap, the "
                        f"guest of {rules.because('locks up at its next CPU change')})")
    if not adding and vcpu != max(live):
        raise VcpuError(vcpu, f"vCPU {vcpu} cannot be removed before vCPU {max(live)}: "
                        "under TCG the plugged ids must stay 0 to k-1 (with a gap, the "
                        f"guest of {rules.because('locks up at its next CPU change')})")
