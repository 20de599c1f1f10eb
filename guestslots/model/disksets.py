"""An appliance's disk set: the slots selected for snapshots, export and migration.

Pure (seed 004): every appliance has a set of selected slots, possibly empty,
changed one slot at a time or all at once, and kept in its runtime record (so it
survives reattach, relaunch and restore).  The return codes are the seed's:
adding a slot already in the set, or removing one already out of it, is not an
error but answers 1 instead of 0 (an empty slot is never in the set: removing
it answers 1).  Only a full slot can be added; an index that is no reserved slot
is an error.  A slot that is unplugged from the running appliance leaves the set;
a slot the definition no longer has leaves it at the next launch.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable

from ..errors import GuestslotsError


class DiskSetError(GuestslotsError):
    """A disk-set change that cannot be made (no such slot, an empty slot)."""


class DiskSet:
    """The selected slots of one appliance, by index."""

    def __init__(self, members: Iterable[int] = ()) -> None:
        self._members: set[int] = set(members)

    @staticmethod
    def _check(index: int, reserved: int, what: str) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise DiskSetError(f"{what}: slot {index!r} is not a slot index")
        if not 0 <= index < reserved:
            raise DiskSetError(f"{what}: slot {index} does not exist "
                               f"(slots 0..{reserved - 1} are reserved)")
        return index

    def add(self, index: int, filled: Iterable[int], reserved: int) -> int:
        """Select full slot *index* (of *reserved* slots, *filled* the full ones): 0, or
        1 if it was already selected."""
        index = self._check(index, reserved, "diskset_add")
        if index not in set(filled):
            raise DiskSetError(f"diskset_add: slot {index} is empty; only a full slot is "
                               "selected")
        if index in self._members:
            return 1
        self._members.add(index)
        return 0

    def remove(self, index: int, reserved: int) -> int:
        """Unselect slot *index*: 0, or 1 if it was not selected (an empty slot never
        is: seed 004's "1 if already absent", not an error)."""
        index = self._check(index, reserved, "diskset_remove")
        if index not in self._members:
            return 1
        self._members.discard(index)
        return 0

    def add_all(self, filled: Iterable[int]) -> int:
        """Select every full slot: 0."""
        self._members |= set(filled)
        return 0

    def remove_all(self) -> int:
        """Select none: 0."""
        self._members.clear()
        return 0

    def size(self) -> int:
        """How many slots are selected."""
        return len(self._members)

    def list(self, n: int | None = None) -> list[int]:
        """The selected slots, in index order; at most *n* of them (seed 004's
        ``virDomainDiskSetList(dom, array, n, flags)``)."""
        if n is None:
            return sorted(self._members)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DiskSetError(f"diskset_list: n is the most slots to return, a whole "
                               f"number from 0, not {n!r}")
        return sorted(self._members)[:n]

    def keep_only(self, filled: Iterable[int]) -> builtins.list[int]:
        """Unselect the slots not in *filled*; the ones that left."""
        gone = sorted(self._members - set(filled))
        self._members -= set(gone)
        return gone

    def unplugged(self, index: int) -> bool:
        """Slot *index* was emptied: it leaves the set.  Whether it was in it."""
        was = index in self._members
        self._members.discard(index)
        return was

    def __contains__(self, index: object) -> bool:
        return index in self._members
