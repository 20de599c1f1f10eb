"""How libguestfs's trace shows arguments and results (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def quoted(value: object) -> str:
    """An argument as the trace shows it: strings quoted, booleans ``true``/``false``,
    numbers as they are, string lists bracketed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes):
        return f"<buffer of {len(value)} bytes>"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(quoted(v) for v in value) + "]"
    return f'"{value}"'


def plain(value: object) -> str:
    """An optional argument's value after its ``name:`` in the trace."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def shown_result(value: object) -> str:
    """A result as the trace shows it after ``=``: ``0`` for none, ``NULL`` for a
    missing string, structs and hashes by their fields."""
    if value is None:
        return "0"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Mapping):
        fields = ", ".join(f"{k}: {v}" for k, v in value.items())
        return f"<struct = {fields}, >"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return "[" + ", ".join(shown_result(v) if not isinstance(v, str) else f'"{v}"'
                               for v in value) + "]"
    return quoted(value)
