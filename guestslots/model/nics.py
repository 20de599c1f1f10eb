"""NIC slots: which network each slot's NIC is on, its addresses, and the rules.

Pure (seed 001).  An appliance has :data:`MAX_NICS` NIC slots; NIC slot *k* is
always the same virtio-net device: PCI slot ``0x10 + k`` on bus 0, device id
``nic-<appliance id>-<k>`` (:mod:`.ids`), MAC address ``52:54:00:AA:AA:kk`` (AA:
the appliance id) unless one is given.  So a NIC is found again, by another
process or a relaunched appliance, from its slot alone.

Networks:

``user``
    QEMU's user-mode network (slirp), one per NIC: NIC slot *k* is on
    ``10.0.(2+k).0/24``, the guest is ``.15``, the gateway ``.2`` (the host: a
    service on the host's 127.0.0.1 is reached at the gateway address), DNS ``.3``.
    Nothing from outside can reach the appliance.
``tap``
    A tap device of the host, by name (``tap=``); the guest's address is given
    (``address="192.168.100.2/24"``, ``gateway=`` optional).

As for drive slots and vCPUs, there are two sets: the running appliance's
(live) and the definition the next launch starts from (config).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from ..errors import GuestslotsError
from .ids import device_id

#: NIC slots per appliance (PCI slots 0x10-0x17 of bus 0).
MAX_NICS = 8
#: The PCI slot of NIC slot 0.
PCI_SLOT_BASE = 0x10
NETWORKS = ("user", "tap")
_MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}\Z")
_TAP_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}\Z")


class NicError(GuestslotsError):
    """A NIC slot, network or address does not allow the change; nothing was changed."""

    def __init__(self, slot: int | None, message: str) -> None:
        self.slot = slot
        super().__init__(f"NIC slot {slot}: {message}" if slot is not None else message)


@dataclass(frozen=True)
class NicSpec:
    """What a NIC slot holds: its network and the guest's side of it."""

    network: str
    mac: str
    #: The guest's address with its prefix (``10.0.2.15/24``).
    address: str
    gateway: str | None = None
    dns: str | None = None
    #: The host's tap device (network ``tap``).
    tap: str | None = None
    #: The user-mode network (``10.0.2.0/24``; network ``user``).
    net: str | None = None


@dataclass(frozen=True)
class Nic:
    """A plugged NIC as :meth:`Appliance.nics` reports it."""

    slot: int
    device_id: str
    network: str
    mac: str
    address: str
    gateway: str | None
    tap: str | None
    #: The guest's interface (``eth0``); None when the appliance does not run.
    interface: str | None = None
    #: Whether the guest has the link up; None when the appliance does not run.
    up: bool | None = None
    #: Whether the guest's default route goes through it; None when not running.
    default_route: bool | None = None

    @property
    def host(self) -> str | None:
        """Where the guest reaches the host (network ``user``: the host's 127.0.0.1)."""
        return self.gateway if self.network == "user" else None


def pci_slot(slot: int) -> int:
    """The PCI slot (bus 0) of NIC slot *slot*."""
    return PCI_SLOT_BASE + slot


def default_mac(appliance: str, slot: int) -> str:
    """NIC slot *slot*'s MAC address in appliance *appliance*: QEMU's locally
    administered prefix, two bytes of the appliance id, the slot."""
    tail = appliance.rjust(4, "0")[:4]
    return f"52:54:00:{tail[:2]}:{tail[2:4]}:{slot:02x}"


def user_network(slot: int) -> ipaddress.IPv4Network:
    """The user-mode network of NIC slot *slot*."""
    return ipaddress.IPv4Network(f"10.0.{2 + slot}.0/24")


def check_slot(slot: int) -> int:
    if not isinstance(slot, int) or isinstance(slot, bool):
        raise NicError(None, f"a NIC slot is a whole number, not {slot!r}")
    if not 0 <= slot < MAX_NICS:
        raise NicError(slot, f"does not exist: NIC slots are 0 to {MAX_NICS - 1}")
    return slot


def make_nic(slot: int, network: str, appliance: str, mac: str | None = None,
             tap: str | None = None, address: str | None = None,
             gateway: str | None = None) -> NicSpec:
    """The NIC of slot *slot* on *network*, checked: a bad network, MAC, tap name or
    address is a :class:`NicError` naming it."""
    check_slot(slot)
    if network not in NETWORKS:
        raise NicError(slot, f"network {network!r}: one of {', '.join(NETWORKS)}")
    if mac is None:
        mac = default_mac(appliance, slot)
    mac = mac.lower()
    if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise NicError(slot, f"MAC address {mac!r}: six hex bytes (aa:bb:cc:dd:ee:ff), "
                       "unicast (the first byte even)")
    if network == "user":
        if tap is not None or address is not None or gateway is not None:
            raise NicError(slot, "network 'user' has fixed addresses: no tap, address or "
                           "gateway")
        net = user_network(slot)
        hosts = list(net.hosts())
        return NicSpec("user", mac, f"{hosts[14]}/{net.prefixlen}", gateway=str(hosts[1]),
                       dns=str(hosts[2]), net=str(net))
    if tap is None or not _TAP_RE.match(tap):
        raise NicError(slot, f"network 'tap' needs tap=NAME, a host interface name "
                       f"(1-15 letters, digits, . _ -), not {tap!r}")
    if address is None:
        raise NicError(slot, "network 'tap' needs address= (the guest's, like "
                       "192.168.100.2/24)")
    try:
        interface = ipaddress.IPv4Interface(address)
    except ValueError as e:
        raise NicError(slot, f"address {address!r}: {e}") from None
    if "/" not in address:
        raise NicError(slot, f"address {address!r}: give the prefix too (like /24)")
    if interface.ip in (interface.network.network_address,
                        interface.network.broadcast_address) and interface.network.prefixlen < 31:
        raise NicError(slot, f"address {address!r} is its network's own address")
    if gateway is not None:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError as e:
            raise NicError(slot, f"gateway {gateway!r}: {e}") from None
        if gw not in interface.network or gw == interface.ip:
            raise NicError(slot, f"gateway {gateway} is not another address of "
                           f"{interface.network}")
    return NicSpec("tap", mac, str(interface), gateway=gateway, tap=tap)


class NicTable:
    """NIC slots 0..MAX_NICS-1: what the running appliance has, what its definition has."""

    def __init__(self, appliance: str) -> None:
        self.appliance = appliance
        self.live: dict[int, NicSpec] = {}
        self.config: dict[int, NicSpec] = {}

    def add_slot(self, slot: int, live: bool, config: bool,
                 in_use: frozenset[int] = frozenset()) -> int:
        """The slot ``add_nic(slot)`` fills in the chosen sets (``-1``: the first slot
        free in each of them and not in *in_use*, what the backend reports used);
        refuses a slot that is full there."""
        sets = [s for s, chosen in ((self.live, live), (self.config, config)) if chosen]
        busy = set(in_use) if live else set()
        if slot == -1:
            for candidate in range(MAX_NICS):
                if candidate not in busy and all(candidate not in s for s in sets):
                    return candidate
            raise NicError(None, f"every NIC slot is in use ({MAX_NICS})")
        check_slot(slot)
        if any(slot in s for s in sets) or slot in busy:
            where = "running appliance" if live and (slot in self.live or slot in busy) \
                else "definition"
            raise NicError(slot, f"already has a NIC (in the {where}): remove it first")
        return slot

    def remove_slot(self, slot: int, live: bool, config: bool) -> int:
        """The slot ``remove_nic(slot)`` empties (``-1``: the highest full one in the
        first chosen set); refuses an empty slot."""
        sets = [s for s, chosen in ((self.live, live), (self.config, config)) if chosen]
        if slot == -1:
            if not sets or not sets[0]:
                raise NicError(None, "no NIC is plugged")
            slot = max(sets[0])
        check_slot(slot)
        if not all(slot in s for s in sets):
            raise NicError(slot, "has no NIC")
        return slot

    def listed(self, running: bool) -> list[Nic]:
        """The plugged NICs (live when *running*, else the definition's), by slot."""
        nics = self.live if running else self.config
        return [Nic(slot, device_id("nic", self.appliance, slot), spec.network, spec.mac,
                    spec.address, spec.gateway, spec.tap)
                for slot, spec in sorted(nics.items())]


def with_guest_view(nic: Nic, interface: str | None, up: bool | None,
                    default_route: bool | None = False) -> Nic:
    """*nic* with what the guest says of it."""
    return replace(nic, interface=interface, up=up, default_route=default_route)
