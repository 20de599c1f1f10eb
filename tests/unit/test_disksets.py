"""The disk set's rules (seed 004): return codes 0/1, errors, unplug."""

from __future__ import annotations

import pytest

from guestslots.model.disksets import DiskSet, DiskSetError

FILLED = [0, 2, 3]
RESERVED = 5


def test_add_and_remove_answer_0_or_1_as_the_seed_says() -> None:
    ds = DiskSet()
    assert ds.add(2, FILLED, RESERVED) == 0
    assert ds.add(2, FILLED, RESERVED) == 1  # already in the set
    assert ds.add(0, FILLED, RESERVED) == 0
    assert (ds.size(), ds.list()) == (2, [0, 2])
    assert ds.remove(2, FILLED, RESERVED) == 0
    assert ds.remove(2, FILLED, RESERVED) == 1  # already absent
    assert ds.list() == [0]


def test_all_at_once() -> None:
    ds = DiskSet([3])
    assert ds.add_all(FILLED) == 0
    assert ds.list() == [0, 2, 3]
    assert ds.remove_all() == 0
    assert (ds.size(), ds.list()) == (0, [])


@pytest.mark.parametrize(("index", "why"), [
    (1, "slot 1 is empty"), (5, "slot 5 does not exist"), (-1, "does not exist"),
    (True, "not a slot index"), ("2", "not a slot index"),
])
def test_an_empty_slot_or_a_bad_index_is_an_error_and_changes_nothing(index: object,
                                                                      why: str) -> None:
    ds = DiskSet([0])
    for change in (ds.add, ds.remove):
        with pytest.raises(DiskSetError, match=why):
            change(index, FILLED, RESERVED)  # type: ignore[arg-type]
    assert ds.list() == [0]


def test_an_unplugged_slot_leaves_the_set() -> None:
    ds = DiskSet([0, 2])
    assert ds.unplugged(2) is True
    assert ds.unplugged(3) is False
    assert ds.list() == [0] and 2 not in ds and 0 in ds
