"""The appliance is built from (and keyed by) the files its MANIFEST lists, nothing else."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import pytest

from guestslots.errors import ApplianceBuildError
from guestslots.host import build

SOURCE = Path(__file__).resolve().parents[2] / "appliance"


def test_manifest_lists_every_guest_file() -> None:
    on_disk = {
        str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
        and str(p.relative_to(SOURCE)) not in ("MANIFEST", "__init__.py")
    }
    assert set(build.manifest()) == on_disk


def test_manifest_files_are_package_data() -> None:
    package = importlib.resources.files(build.APPLIANCE_PACKAGE)
    for name in build.manifest():
        assert package.joinpath(*name.split("/")).is_file(), name


def test_only_manifest_files_are_read() -> None:
    with pytest.raises(ApplianceBuildError, match="not in the appliance MANIFEST"):
        build.guest_file("__pycache__")


def test_packages_and_rules_come_from_the_manifest_files() -> None:
    assert "python3" in build.packages()
    rules = build.udev_rules()
    assert "@SLOT_RULES@" not in rules
    assert 'SYMLINK+="disk/guestslots/slot254"' in rules


def test_optional_packages_missing_on_the_host_are_left_out_not_fatal() -> None:
    """An installed guestslots on a host without python3-hivex (say) still builds its
    appliance (supermin fails on a package that is not installed); only the calls that
    need it say it is missing."""
    from guestslots.host import build

    listed = ["python3", "ntfs-3g?", "python3-hivex?"]
    assert build.choose_packages(listed, {"python3", "ntfs-3g"}) == (
        ["python3", "ntfs-3g"], ["python3-hivex"])
    assert build.choose_packages(listed, set()) == (["python3"], ["ntfs-3g", "python3-hivex"])
    assert "python3" in build.packages() and not any(p.endswith("?") for p in build.packages())


def test_a_build_removes_only_what_no_launch_used_for_a_day(tmp_path: Path) -> None:
    """Another guestslots in use on the machine (another checkout, virtual
    environment or CI run) keeps its appliance and states when this one builds: they
    go only once no launch used them for a day."""
    from guestslots.host.cache import last_used, mark_used, stale

    new, other, old = (tmp_path / n for n in ("appliance-new", "appliance-other", "state-old"))
    for entry in (new, other, old):
        entry.mkdir()
    now = 10 * 24 * 3600.0
    os.utime(old, (now - 2 * 24 * 3600, now - 2 * 24 * 3600))
    os.utime(other, (now - 3600, now - 3600))
    entries = [(e, last_used(e)) for e in (new, other, old)]
    assert stale(entries, new, now) == [old]
    mark_used(old)  # a launch used it: kept again
    assert stale([(old, last_used(old))], new, last_used(old) + 60) == []
    assert stale([(tmp_path / "gone", last_used(tmp_path / "gone"))], new, now) == \
        [tmp_path / "gone"]
