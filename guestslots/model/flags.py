"""What a hotplug call affects: the running appliance, its definition, or both.

libvirt's ``virDomainModificationImpact``, as the vCPU seed spells it out:
``LIVE`` changes the running appliance, ``CONFIG`` the definition that the next
launch of the same Appliance starts from, both may be given, and ``CURRENT``
(neither) means ``LIVE`` when the appliance runs and ``CONFIG`` when it does not.
``LIVE`` on an appliance that does not run is an error.  The values are
libvirt's, so they pass through to it unchanged.
"""

from __future__ import annotations

import enum


class Affect(enum.IntFlag):
    """Where a change takes effect (``guestslots.LIVE``, ``CONFIG``, ``CURRENT``)."""

    CURRENT = 0
    LIVE = 1
    CONFIG = 2


CURRENT = Affect.CURRENT
LIVE = Affect.LIVE
CONFIG = Affect.CONFIG

_NAMES = {"current": CURRENT, "live": LIVE, "config": CONFIG}


class NotRunning(ValueError):
    """``LIVE`` was asked of an appliance that does not run."""


def resolve(flags: int, running: bool) -> Affect:
    """The concrete effect of *flags* on an appliance that is (or is not) *running*.

    Raises :class:`ValueError` for anything but a combination of the flags, and
    :class:`NotRunning` for ``LIVE`` when the appliance does not run (the caller
    says which call and state).
    """
    if not isinstance(flags, int) or isinstance(flags, bool) or int(flags) & ~int(LIVE | CONFIG):
        raise ValueError(f"flags must be a combination of LIVE and CONFIG (or CURRENT), "
                         f"not {flags!r}")
    affect = Affect(flags)
    if affect == CURRENT:
        return LIVE if running else CONFIG
    if affect & LIVE and not running:
        raise NotRunning("LIVE needs a running appliance (use CONFIG, or CURRENT, to change "
                         "what the next launch attaches)")
    return affect


def parse(text: str) -> Affect:
    """Flags as the shell takes them: ``live``, ``config``, ``current``, or
    ``live|config`` (``,`` or ``+`` separate too)."""
    affect = CURRENT
    for word in text.replace(",", "|").replace("+", "|").split("|"):
        name = word.strip().lower()
        if name not in _NAMES:
            raise ValueError(f"unknown flag {word!r}: use live, config, current or "
                             "live|config")
        affect |= _NAMES[name]
    return affect
