"""What a wheel holds: every Python package of the source tree is listed in setup.cfg
(a package left out installs nowhere, and only an installed wheel would show it;
tests/integration/test_installed.py builds one)."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_every_package_is_in_the_wheel() -> None:
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "guestslots").rglob("__init__.py")}
    assert found - listed_packages() == set()


def test_every_console_script_names_a_function_that_exists() -> None:
    """(Found: guestslots-build-appliance named guestslots.build:main, a module that had
    moved to guestslots.host.build: the installed command failed with an ImportError.)"""
    import importlib

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = [line.split("=", 1) for line in
               config["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    assert scripts
    for name, target in scripts:
        module, _, function = target.strip().partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name.strip()
