"""The layers, read from the imports (ast), so that they stay:

- the model (``guestslots.model``) is pure: it imports no backend, no Appliance, no
  host or guest side, and no module that does I/O;
- backends never import the Appliance;
- the library never imports a front end (the CLI, the shell, the command table, the
  pytest plugin) or ``guestslots.testing``;
- front ends never import ``guestslots.testing``.

Imports inside functions count as much as those at the top: a lazy import is still
a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "guestslots"

FRONT_ENDS = ("guestslots.cli", "guestslots.fish", "guestslots.commands",
              "guestslots.pytest_plugin")
#: What the pure model may not import, besides the rest of guestslots.
IO_MODULES = ("subprocess", "socket", "asyncio", "threading", "shutil", "tempfile",
              "fcntl", "select", "signal", "ctypes", "qemu", "libvirt", "lxml")
MODEL_MAY_IMPORT = ("guestslots.model", "guestslots.errors", "guestslots.wire")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module *path* imports (``from X import Y`` counts as X and X.Y)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))
            if "_appliance" not in p.parts}


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def broken(rule: str, table: dict[str, set[str]]) -> list[str]:
    """The imports of *table* (module -> its imports) that break *rule*."""
    out = []
    for module, imported in table.items():
        for target in sorted(imported):
            bad = False
            if rule == "model":
                bad = within(module, "guestslots.model") and (
                    (within(target, "guestslots") and not within(target, MODEL_MAY_IMPORT))
                    or within(target, IO_MODULES))
            elif rule == "backends":
                bad = within(module, "guestslots.backends") and within(
                    target, "guestslots.appliance")
            elif rule == "library":
                bad = (within(module, "guestslots")
                       and not within(module, (*FRONT_ENDS, "guestslots.testing"))
                       and within(target, (*FRONT_ENDS, "guestslots.testing")))
            elif rule == "front ends":
                bad = within(module, FRONT_ENDS) and within(target, "guestslots.testing")
            if bad:
                out.append(f"{module} imports {target}")
    return out


@pytest.mark.parametrize("rule", ["model", "backends", "library", "front ends"])
def test_layers_hold(rule: str) -> None:
    assert broken(rule, modules()) == []


@pytest.mark.parametrize(("rule", "module", "target"), [
    ("model", "guestslots.model.slots", "guestslots.backends.qemu"),
    ("model", "guestslots.model.slots", "subprocess"),
    ("backends", "guestslots.backends.qemu.machine", "guestslots.appliance"),
    ("library", "guestslots.pool", "guestslots.cli"),
    ("library", "guestslots.appliance", "guestslots.testing.testimages"),
    ("front ends", "guestslots.cli", "guestslots.testing.testimages"),
])
def test_a_broken_rule_is_found(rule: str, module: str, target: str) -> None:
    assert broken(rule, {module: {target}}) == [f"{module} imports {target}"]


def test_relative_imports_are_resolved() -> None:
    # commands.py: "from .appliance import Appliance"; fuse/serve.py: "from .. import ..."
    assert "guestslots.appliance.Appliance" in imports_of(PACKAGE / "commands.py")
    assert any(within(t, "guestslots.fuse") for t in imports_of(PACKAGE / "fuse" / "serve.py"))


AGENT = PACKAGE.parent / "appliance" / "agent"


def agent_imports() -> dict[str, set[str]]:
    """Each agent module -> the agent modules it imports (``from .x import``, ``from .
    import x``), TYPE_CHECKING imports included."""
    table: dict[str, set[str]] = {}
    for path in sorted(AGENT.glob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
        table[path.stem] = found
    return table


def cycle(table: dict[str, set[str]]) -> list[str]:
    """An import cycle of *table*, as the modules along it (empty: none)."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return []
        for target in sorted(table.get(module, ())):
            found = visit(target, [*path, module])
            if found:
                return found
        done.add(module)
        return []

    for module in sorted(table):
        found = visit(module, [])
        if found:
            return found
    return []


def test_the_agent_imports_without_a_circle() -> None:
    table = agent_imports()
    assert {"state", "common", "mounts"} <= set(table)
    assert cycle(table) == []


def test_a_circle_is_found() -> None:
    assert cycle({"common": {"disks"}, "disks": {"state"}, "state": {"common"}}) == [
        "common", "disks", "state", "common"]
    assert cycle({"a": {"b"}, "b": set()}) == []
