"""A front end imports only what its command needs (issue 32): counted in modules, not
timed.  ``guestslots --help`` took 132 ms here (238 modules, 77 of the library); it
takes about 40 ms (90 modules, 3 of the library): ``tools/bench/bench_cli.py``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What a one-shot command needs only once it runs: QMP, libvirt, lxml, progress bars,
#: Dask, FUSE (each optional or heavy).
HEAVY = {"qemu", "libvirt", "lxml", "tqdm", "dask", "distributed", "pyfuse3", "trio",
         "asyncio"}

PROBE = """
import contextlib, io, json, runpy, sys
sys.argv = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        runpy.run_module("guestslots.cli", run_name="__main__")
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def loaded(argv: list[str]) -> list[str]:
    """The modules a fresh interpreter holds after running ``guestslots`` with *argv*."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)],
                          capture_output=True, text=True, check=True, timeout=60)
    modules: list[str] = json.loads(done.stdout)
    return modules


@pytest.mark.parametrize("argv", [["guestslots", "--help"], ["guestslots", "cat", "--help"],
                                  ["guestslots"]])
def test_the_commands_help_imports_none_of_the_library(argv: list[str]) -> None:
    modules = loaded(argv)
    assert [m for m in modules if m.startswith("guestslots")] == [
        "guestslots", "guestslots.cli", "guestslots.errors"]
    assert not {m.split(".")[0] for m in modules} & HEAVY
    assert len(modules) <= 110, len(modules)  # (90 with Python 3.11 here)


def test_the_library_imports_no_optional_dependency_until_it_is_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys; import guestslots; from guestslots import "
         "Appliance; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=60)
    modules = json.loads(done.stdout)
    assert "guestslots.appliance" in modules
    assert not {m.split(".")[0] for m in modules} & HEAVY


def test_every_public_name_is_there_when_asked() -> None:
    import guestslots

    assert sorted(guestslots._EXPORTS) == sorted(guestslots.__all__)
    for name in guestslots.__all__:
        assert getattr(guestslots, name) is not None
    assert set(guestslots.__all__) <= set(dir(guestslots))
    with pytest.raises(AttributeError, match="no attribute 'Applianse'"):
        guestslots.Applianse  # noqa: B018
