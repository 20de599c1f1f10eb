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
    assert ds.remove(2, RESERVED) == 0
    assert ds.remove(2, RESERVED) == 1  # already absent
    assert ds.remove(1, RESERVED) == 1  # an empty slot: absent too, not an error
    assert ds.list() == [0]


def test_all_at_once() -> None:
    ds = DiskSet([3])
    assert ds.add_all(FILLED) == 0
    assert ds.list() == [0, 2, 3]
    assert ds.remove_all() == 0
    assert (ds.size(), ds.list()) == (0, [])


@pytest.mark.parametrize(("index", "why"), [
    (5, "slot 5 does not exist"), (-1, "does not exist"),
    (True, "not a slot index"), ("2", "not a slot index"),
])
def test_a_bad_index_is_an_error_and_changes_nothing(index: object, why: str) -> None:
    ds = DiskSet([0])
    with pytest.raises(DiskSetError, match=why):
        ds.add(index, FILLED, RESERVED)  # type: ignore[arg-type]
    with pytest.raises(DiskSetError, match=why):
        ds.remove(index, RESERVED)  # type: ignore[arg-type]
    assert ds.list() == [0]


def test_only_a_full_slot_is_added() -> None:
    ds = DiskSet([0])
    with pytest.raises(DiskSetError, match="slot 1 is empty"):
        ds.add(1, FILLED, RESERVED)
    assert ds.list() == [0]


def test_list_returns_at_most_n_as_the_seeds_list_does() -> None:
    ds = DiskSet([3, 0, 2])
    assert (ds.list(), ds.list(2), ds.list(0), ds.list(9)) == ([0, 2, 3], [0, 2], [],
                                                                [0, 2, 3])
    for n in (-1, True, 1.5):
        with pytest.raises(DiskSetError, match="n is the most slots"):
            ds.list(n)  # type: ignore[arg-type]


def test_slots_the_definition_lost_leave_at_launch() -> None:
    ds = DiskSet([0, 2, 3])
    assert ds.keep_only([0, 3]) == [2]
    assert ds.list() == [0, 3]


def test_an_unplugged_slot_leaves_the_set() -> None:
    ds = DiskSet([0, 2])
    assert ds.unplugged(2) is True
    assert ds.unplugged(3) is False
    assert ds.list() == [0] and 2 not in ds and 0 in ds
