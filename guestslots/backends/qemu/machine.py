"""The QEMU backend's machine: one QEMU process and everything it is asked to do,
put together from the areas of :mod:`.process` (see there)."""

from __future__ import annotations

from .migration import MachineMigration


class QemuMachine(MachineMigration):
    """A running QEMU: its process, its QMP session, and the agent socket it connected."""
