"""Which accelerator to run QEMU with: KVM only if it really runs a kernel.

``/dev/kvm`` existing proves nothing: under nested virtualisation it may hang in
the guest kernel or abort QEMU on an MSR.  The probe boots the appliance's own
kernel under KVM with no root disk, so it panics and QEMU exits; a working KVM
does that in about a second, a broken one hangs until the timeout.  The verdict
is cached per host boot and per QEMU binary and kernel, because a failing probe
costs its whole timeout.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_root, file_id
from .proc import CommandError, run

log = logging.getLogger(__name__)

ACCELS = ("auto", "kvm", "tcg")
ENV_VAR = "GUESTSLOTS_ACCEL"
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator chosen and why (shown by the demo and test-tool)."""

    accel: str
    reason: str
    #: True when the caller (argument or environment) chose, not the probe.
    requested: bool = False


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"



def probe_kvm(qemu: str, kernel: str, cpu: str = "max", timeout: float = PROBE_TIMEOUT) -> str:
    """Boot *kernel* under KVM until it panics; return "" if KVM works, else why not."""
    with tempfile.TemporaryDirectory(prefix="guestslots-kvm-probe-") as tmp:
        console = os.path.join(tmp, "console.log")
        command = [
            qemu,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-machine",
            "pc,accel=kvm",
            "-cpu",
            cpu,
            "-m",
            "128",
            "-kernel",
            kernel,
            "-append",
            "console=ttyS0 panic=-1 root=/dev/guestslots-probe loglevel=4",
            "-serial",
            f"file:{console}",
        ]
        try:
            run(command, timeout=timeout)
        except CommandError as e:
            return f"KVM probe failed ({e.reason})"
        text = Path(console).read_text(errors="replace")
        if "Kernel panic" not in text:
            return "KVM probe: the kernel did not run to its expected panic"
        return ""


def expected_accel(qemu: str, requested: str | None = None) -> str | None:
    """The accelerator :func:`choose_accel` will pick, when that is known without a
    probe (asked for, no usable ``/dev/kvm``, or a verdict cached for this host boot
    and *qemu*); None when only a probe can tell."""
    want = (requested or os.environ.get(ENV_VAR) or "auto").lower()
    if want in ("kvm", "tcg"):
        return want
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    try:
        prefix = f"{_boot_id()}|{file_id(qemu)}|"
    except OSError:
        return None
    for key, verdict in _verdicts().items():
        if key.startswith(prefix):
            return str(verdict["accel"])
    return None


def _verdicts() -> dict[str, dict[str, str]]:
    """The probes' cached verdicts, by host boot, QEMU binary and kernel: one per
    QEMU and kernel, so that two QEMUs used in turn do not probe again and again."""
    try:
        cached = json.loads((cache_root() / "accel.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cached, dict):
        return {}
    if "key" in cached:  # one verdict, as guestslots wrote it before
        cached = {str(cached["key"]): cached}
    boot = f"{_boot_id()}|"
    return {k: v for k, v in cached.items()  # this host boot's only
            if k.startswith(boot) and isinstance(v, dict) and "accel" in v}


def choose_accel(qemu: str, kernel: str, requested: str | None = None) -> AccelChoice:
    """Pick ``kvm`` or ``tcg``: *requested*, else $GUESTSLOTS_ACCEL, else a cached probe."""
    want = (requested or os.environ.get(ENV_VAR) or "auto").lower()
    if want not in ACCELS:
        raise ValueError(f"accel must be one of {ACCELS}, not {want!r}")
    if want != "auto":
        how = "accel=" if requested else f"${ENV_VAR}"
        return AccelChoice(want, f"requested by {how}", requested=True)
    if not os.path.exists("/dev/kvm"):
        return AccelChoice("tcg", "/dev/kvm does not exist: using TCG")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelChoice("tcg", "/dev/kvm is not accessible to this user: using TCG")
    key = f"{_boot_id()}|{file_id(qemu)}|{file_id(kernel)}"
    cache = cache_root() / "accel.json"
    cached = _verdicts().get(key)
    if cached is not None:
        return AccelChoice(cached["accel"], cached["reason"] + " (cached for this host boot)")
    failure = probe_kvm(qemu, kernel)
    if failure:
        choice = AccelChoice("tcg", f"/dev/kvm present but KVM does not run: {failure}; using TCG")
    else:
        choice = AccelChoice("kvm", "KVM probe booted a kernel: using KVM")
    log.info("%s", choice.reason)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    verdicts = {**_verdicts(), key: {"accel": choice.accel, "reason": choice.reason}}
    tmp.write_text(json.dumps(verdicts))
    tmp.replace(cache)
    return choice
