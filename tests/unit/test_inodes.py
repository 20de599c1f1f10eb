"""The FUSE mount's inode table: numbers for paths, lookup counts, renames."""

from __future__ import annotations

import pytest

from guestslots.fuse.inodes import ROOT, InodeTable, StaleInode


def test_paths_get_stable_numbers_until_forgotten() -> None:
    t = InodeTable()
    a = t.looked_up("/a")
    assert t.looked_up("/a") == a and t.path(a) == "/a" and a != ROOT
    t.forget(a, 1)
    assert t.path(a) == "/a"  # one lookup still held
    t.forget(a, 1)
    with pytest.raises(StaleInode):
        t.path(a)
    assert t.inode("/a") is None
    assert t.looked_up("/a") != a  # numbers are never reused
    t.forget(ROOT, 10)
    assert t.path(ROOT) == "/"


def test_child_names_are_single_components() -> None:
    t = InodeTable()
    d = t.looked_up("/d")
    assert t.child(d, "f") == "/d/f" and t.child(ROOT, "d") == "/d"
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(ValueError):
            t.child(d, bad)


def test_a_rename_moves_the_subtree_and_drops_the_target() -> None:
    t = InodeTable()
    d, f, g = t.looked_up("/d"), t.looked_up("/d/f"), t.looked_up("/d/sub/g")
    other = t.looked_up("/dx")  # a sibling whose name starts the same
    old_target = t.looked_up("/e")
    t.renamed("/d", "/e")
    assert (t.path(d), t.path(f), t.path(g), t.path(other)) == ("/e", "/e/f", "/e/sub/g", "/dx")
    assert t.inode("/d") is None and t.inode("/e") == d
    assert t.path(old_target) == ""  # reachable no more, until the kernel forgets it
    t.forget(old_target, 1)
    assert t.inode("/e") == d


def test_removed_paths_are_new_files_when_looked_up_again() -> None:
    t = InodeTable()
    a = t.looked_up("/a")
    t.removed("/a")
    b = t.looked_up("/a")
    assert b != a and t.path(b) == "/a"
    t.forget(a, 1)
    assert t.inode("/a") == b
