"""guestslots as users install it: a wheel in a fresh virtual environment.

The suite itself runs from an editable checkout with ``PYTHONDONTWRITEBYTECODE``
set on the developers' machines, which hid two defects: an installed package
holds ``__pycache__`` folders (byte-compiled by pip), and the entry points were
never run as installed.  Here a wheel is built from the checkout, installed
with bytecode writing on and a cache directory of its own (so the appliance is
built from the installed package data), and used through its entry points.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from guestslots.pytest_plugin import cannot_run_reason
from guestslots.testing import testimages as images

pytestmark = [
    pytest.mark.integration,
    pytest.mark.single_pass('tests the installed package once'),
]

CHECKOUT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str | Path], env: dict[str, str], timeout: float = 600,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    # Run outside the checkout: from inside it, 'python -c' would import the checkout.
    proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=env["GUESTSLOTS_CACHE_DIR"])
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding the wheel built from this checkout, and the environment
    to run it in (bytecode writing on, a cache directory of its own)."""
    reason = cannot_run_reason()
    if reason:
        pytest.skip(f"this host cannot run an appliance: {reason}")
    work = tmp_path_factory.mktemp("installed")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PYTHONPATH")}
    env["GUESTSLOTS_CACHE_DIR"] = str(work / "cache")
    (work / "cache").mkdir()
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # built from a copy: pip builds in the source tree, and its build/ left in the
    # checkout made a second 'guestslots' package for mypy there
    source = work / "source"
    shutil.copytree(CHECKOUT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist",
          source], env)
    wheels = list((work / "dist").glob("guestslots-*.whl"))
    assert len(wheels) == 1, wheels
    _run(["/usr/bin/python3", "-m", "venv", work / "venv"], env)
    _run([work / "venv/bin/pip", "install", "-q", wheels[0]], env)
    # pip byte-compiles what it installs: the package data folder now has __pycache__,
    # as every user's installed copy does.
    site = _run([work / "venv/bin/python", "-c",
                 "import importlib.resources as r; print(r.files('guestslots._appliance'))"],
                env).stdout.strip()
    assert (Path(site) / "__pycache__").is_dir()
    assert not str(site).startswith(str(CHECKOUT)), site
    return work / "venv", env


@pytest.fixture(scope="module")
def osimg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return images.linux_image(tmp_path_factory.mktemp("installed-img"), "installedos")


def test_installed_package_launches_hotplugs_and_reads(
    venv: tuple[Path, dict[str, str]], osimg: Path
) -> None:
    path, env = venv
    script = textwrap.dedent(f"""
        import guestslots
        with guestslots.Appliance() as app:
            app.add_drive("/dev/null")
            app.launch()
            app.hotplug(0, {str(osimg)!r})
            app.mount_ro("/dev/sda1", "/")
            print(app.cat("/whoami").strip())
    """)
    proc = _run([path / "bin/python", "-c", script], env)
    assert proc.stdout.strip() == "installedos"


def test_installed_cli_entry_point(venv: tuple[Path, dict[str, str]], osimg: Path) -> None:
    path, env = venv
    proc = _run([path / "bin/guestslots", "cat", osimg, "/whoami"], env)
    assert proc.stdout == "installedos\n"
    # installed without the fuse extra: mount says what it needs, in one line
    mountpoint = Path(env["GUESTSLOTS_CACHE_DIR"]) / "mnt"
    mountpoint.mkdir(exist_ok=True)
    proc = _run([path / "bin/guestslots", "mount", "-i", osimg, mountpoint], env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("guestslots: mount: mounting needs pyfuse3")
    assert "guestslots[fuse]" in proc.stderr and "Traceback" not in proc.stderr


def test_installed_shell_opens_images_read_only_by_default(
    venv: tuple[Path, dict[str, str]], osimg: Path
) -> None:
    path, env = venv
    before = hashlib.sha256(osimg.read_bytes()).hexdigest()
    proc = _run([path / "bin/guestslots-fish", "-a", osimg, "-m", "/dev/sda1",
                 "slots", ":", "write", "/whoami", "changed"], env, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{osimg} raw ro " in proc.stdout  # the slot listing says how it was added
    assert "Read-only file system" in proc.stderr or "read-only" in proc.stderr.lower()
    # 'mount' (read-write) is refused too on a read-only slot
    proc = _run([path / "bin/guestslots-fish", "-a", osimg, "mount", "/dev/sda1", "/"], env,
                check=False)
    assert proc.returncode == 1
    assert hashlib.sha256(osimg.read_bytes()).hexdigest() == before
