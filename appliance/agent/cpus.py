"""vCPUs: onlining a hotplugged CPU, offlining one before it is unplugged.

A vCPU is named by its id on the host (QEMU's CPU position, ``core-id`` on the
``pc`` machine, which is also its APIC id).  The kernel numbers CPUs in the
order it first sees them (``cpuN``: the first vCPU plugged is ``cpu1``, whatever
its id), so the two are matched through the CPU's ACPI processor object, which
QEMU names after the id (``firmware_node/path``).  The
kernel leaves a hotplugged CPU offline: the agent onlines it as soon as the
kernel's ``add`` uevent for it arrives.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import time

from .common import NETLINK_KOBJECT_UEVENT, Fail

CPU_DIR = "/sys/devices/system/cpu"
_CPU_RE = re.compile(r"cpu([0-9]+)\Z")
_ACPI_NAME_RE = re.compile(r"\.C([0-9A-Fa-f]{3})\Z")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def apic_id(cpu: int) -> int | None:
    """The host's vCPU id of kernel CPU *cpu*: QEMU names the ACPI processor object of
    vCPU *k* ``C<k in hex>`` (``\\_SB_.CPUS.C002``), plugged or not; an online CPU
    also tells its core id."""
    try:
        m = _ACPI_NAME_RE.search(_read(f"{CPU_DIR}/cpu{cpu}/firmware_node/path"))
        if m:
            return int(m.group(1), 16)
    except OSError:
        pass
    try:
        return int(_read(f"{CPU_DIR}/cpu{cpu}/topology/core_id"))
    except (OSError, ValueError):
        return None


def kernel_cpus() -> dict[int, int]:
    """vCPU id (APIC id) -> kernel CPU number, for every CPU the kernel has."""
    found = {}
    for name in os.listdir(CPU_DIR):
        m = _CPU_RE.match(name)
        if m:
            apic = apic_id(int(m.group(1)))
            if apic is not None:
                found[apic] = int(m.group(1))
    return found


def online_cpus() -> set[int]:
    """Kernel CPU numbers online now (``/sys/devices/system/cpu/online``: ``0-2,4``)."""
    out: set[int] = set()
    for part in _read(f"{CPU_DIR}/online").split(","):
        if part:
            first, _, last = part.partition("-")
            out.update(range(int(first), int(last or first) + 1))
    return out


def set_online(cpu: int, online: bool) -> None:
    with open(f"{CPU_DIR}/cpu{cpu}/online", "w") as f:
        f.write("1\n" if online else "0\n")


class CpuCalls:
    """vCPUs as the host names them (APIC ids)."""

    def call_vcpus_online(self) -> list[int]:
        """The vCPU ids the guest has online."""
        online = online_cpus()
        return sorted(apic for apic, cpu in kernel_cpus().items() if cpu in online)

    def call_vcpu_plugged(self, vcpu: int, timeout: float = 30.0) -> int:
        """Wait until the kernel has vCPU *vcpu* (just plugged), online it, and return
        its kernel CPU number."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        try:
            sock.bind((0, 1))
            deadline = time.monotonic() + float(timeout)
            while (cpu := kernel_cpus().get(int(vcpu))) is None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    seen = sorted(n for n in os.listdir(CPU_DIR) if _CPU_RE.match(n))
                    raise Fail(f"vCPU {vcpu} did not appear in the guest in {timeout:g} s "
                               f"(the kernel has {', '.join(seen)}; APIC ids "
                               f"{sorted(kernel_cpus())})", errno.ETIMEDOUT)
                sock.recv(65536)  # any event: look again
        finally:
            sock.close()
        if cpu not in online_cpus():
            set_online(cpu, True)
        return cpu

    def call_vcpu_unplugging(self, vcpu: int) -> None:
        """Offline vCPU *vcpu* before the host unplugs it (the kernel would otherwise
        do it in the ACPI eject, which it may refuse)."""
        cpu = kernel_cpus().get(int(vcpu))
        if cpu is None:
            raise Fail(f"vCPU {vcpu} is not in the guest", errno.ENODEV)
        if cpu == 0:
            raise Fail("vCPU 0 is the boot CPU", errno.EBUSY)
        if cpu in online_cpus():
            set_online(cpu, False)

