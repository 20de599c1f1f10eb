"""libvirt domain XML for an appliance, built with lxml from the same model as QEMU's
command line.

Pure functions.  The domain has what the QEMU backend's command line has: the
hidden virtio-blk root (``/dev/vda``) over the appliance image, the virtio-scsi
controller the slots hang on, the agent's virtio-serial port (QEMU connects to a
socket the host listens on; for a detached appliance QEMU listens, so that any
process can take it over), a console file, virtio-rng; and nothing else
(no USB, balloon, video, network).  A slot's disk sits at SCSI target = slot
index with the same serial as on the QEMU backend (libvirt derives the
``device_id`` from it), so the appliance sees identical disks either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

from ...host.owner import Owner
from ...model.drives import DriveSpec
from ...model.ids import device_id
from ...model.names import index_to_letters
from ...model.nics import MAX_NICS, NicSpec, pci_slot
from ...model.slots import slot_serial
from ...model.sources import Remote
from ...wire import AGENT_PORT
from .. import KERNEL_CMDLINE

#: libvirt's prefix for user-chosen device aliases.
ALIAS_PREFIX = "ua-"
#: The namespace of guestslots's own ``<metadata>`` in a domain.
METADATA_NS = "urn:guestslots:1"
#: The namespace of the disk set's element in a domain's ``<metadata>`` (libvirt keeps
#: one element per namespace, and the owner's is written once at creation).
DISKSET_NS = "urn:guestslots:diskset:1"


@dataclass(frozen=True)
class DomainConfig:
    """Everything that decides an appliance's domain XML."""

    name: str
    accel: str
    emulator: str
    kernel: str
    initrd: str
    #: The root overlay's backing chain below it: (path, format) pairs, nearest first.
    root_backing: tuple[tuple[str, str], ...]
    root_overlay: str
    agent_socket: str
    console_log: str
    memory_mb: int = 512
    tcg_cache_mib: int = 64
    #: The process that owns the domain (``guestslots gc`` destroys it once that died).
    owner: Owner | None = None
    #: The domain outlives its owner (``guestslots gc`` leaves it), and QEMU listens on
    #: the agent socket (a detached appliance, taken over by whichever process comes).
    detached: bool = False
    #: vCPU ids 0..max_vcpus-1 can be plugged (0 at boot; the rest hotpluggable).
    max_vcpus: int = 1
    #: ``UID:GID`` QEMU runs as, with nothing relabelled (a daemon that would run QEMU
    #: as its own user and chown the images to it, for a root caller: as libguestfs
    #: does); "" leaves it to the daemon.
    dac_label: str = ""


def slot_alias(index: int, owner: str) -> str:
    """The device alias of slot *index*'s disk in appliance *owner* (what the
    device-removed event names): ``ua-`` and its device id."""
    return ALIAS_PREFIX + device_id("disk", owner, index)


def el(tag: str, *children: etree._Element | str, **attrs: str) -> etree._Element:
    """An element *tag* with *attrs* (``_`` in a name stands for ``-``), child
    elements, and text (a ``str`` child)."""
    element = etree.Element(tag, {k.replace("_", "-"): v for k, v in attrs.items()})
    for child in children:
        if isinstance(child, str):
            element.text = child
        else:
            element.append(child)
    return element


def _backing_chain(chain: tuple[tuple[str, str], ...],
                   remote: Remote | None = None) -> etree._Element:
    """``<backingStore>`` elements for *chain*, ending in an empty one: libvirt opens
    exactly these files, never what an image's header names.  *remote*: the last
    is that remote source."""
    if not chain:
        return el("backingStore")
    (path, fmt), rest = chain[0], chain[1:]
    kind, source = source_xml(path, remote if not rest else None)
    return el("backingStore", el("format", type=fmt), source, _backing_chain(rest, remote),
              type=kind)


def source_xml(path: str, remote: Remote | None) -> tuple[str, etree._Element]:
    """The ``<disk>`` type and ``<source>`` of a file, or of a remote source (a
    network disk: NBD over TCP or a Unix socket, HTTP(S), SSH)."""
    if remote is None:
        return "file", el("source", file=path)
    if remote.protocol == "nbd":
        host = (el("host", transport="unix", socket=remote.socket) if remote.socket else
                el("host", name=remote.host, port=str(remote.port)))
        source = el("source", host, protocol="nbd")
        if remote.export:
            source.set("name", remote.export)
        if remote.tls:
            source.set("tls", "yes")
        return "network", source
    parts = urlsplit(remote.url)
    source = el("source", el("host", name=remote.host, port=str(remote.port)),
                protocol=remote.protocol,
                name=parts.path if remote.protocol != "ssh" else remote.path)
    if remote.protocol in ("http", "https") and parts.query:
        source.set("query", parts.query)
    if remote.protocol == "https" and not remote.sslverify:
        source.append(el("ssl", verify="no"))
    return "network", source


def _metadata(owner: Owner | None, detached: bool) -> etree._Element:
    metadata = el("metadata")
    if owner is not None:
        mine = etree.SubElement(metadata, f"{{{METADATA_NS}}}owner",
                                nsmap={"guestslots": METADATA_NS})
        for name, value in (("host", owner.host), ("boot-id", owner.boot_id),
                            ("pid", str(owner.pid)), ("start", str(owner.start))):
            mine.set(name, value)
        if detached:
            mine.set("detached", "yes")
    return metadata


def is_detached(domain: str) -> bool:
    """Whether a domain's XML *domain* is a detached appliance's (it outlives its
    owner: see :class:`DomainConfig`)."""
    found = etree.fromstring(domain.encode()).find(f"metadata/{{{METADATA_NS}}}owner")
    return found is not None and found.get("detached") == "yes"


def diskset_metadata(indices: Sequence[int]) -> str:
    """The disk set's element for a domain's ``<metadata>``, in :data:`DISKSET_NS`
    (libvirt's ``setMetadata`` puts it there): ``<diskset><slot index="0"/>...
    </diskset>``, the slots of *indices*."""
    return etree.tostring(el("diskset", *(el("slot", index=str(i)) for i in indices))
                          ).decode()


def diskset_of(domain: str) -> list[int] | None:
    """The disk set in a domain's XML *domain* (None: none recorded there)."""
    found = etree.fromstring(domain.encode()).find(f"metadata/{{{DISKSET_NS}}}diskset")
    if found is None:
        return None
    try:
        # libvirt puts only the element itself in the namespace, not its children
        return sorted(int(slot.get("index", "")) for slot in found
                      if isinstance(slot.tag, str) and etree.QName(slot).localname == "slot")
    except ValueError:
        return None


def owner_of(domain: str) -> Owner | None:
    """The owner recorded in a domain's XML *domain* (None: not an appliance of ours,
    or one from before owners were recorded)."""
    found = etree.fromstring(domain.encode()).find(f"metadata/{{{METADATA_NS}}}owner")
    if found is None:
        return None
    try:
        return Owner(found.get("host", ""), found.get("boot-id", ""),
                     int(found.get("pid", "")), int(found.get("start", "")))
    except ValueError:
        return None


def _vcpus(max_vcpus: int) -> etree._Element:
    """``<vcpus>``: vCPU 0 at boot, every other id hotpluggable (libvirt's setVcpu
    enables them one by one, by id)."""
    return el("vcpus", el("vcpu", id="0", enabled="yes", hotpluggable="no", order="1"),
              *(el("vcpu", id=str(i), enabled="no", hotpluggable="yes")
                for i in range(1, max_vcpus)))


def domain_xml(cfg: DomainConfig) -> str:
    """The XML of a transient appliance domain: no slot disks (they are hotplugged)."""
    features = el("features", el("acpi"))
    if cfg.accel == "tcg":
        features.append(el("tcg", el("tb-cache", str(cfg.tcg_cache_mib), unit="MiB")))
    domain = el("domain",
        el("name", cfg.name),
        _metadata(cfg.owner, cfg.detached),
        el("memory", str(cfg.memory_mb), unit="MiB"),
        *([el("vcpu", str(cfg.max_vcpus), placement="static", current="1"),
           _vcpus(cfg.max_vcpus)] if cfg.max_vcpus > 1 else [el("vcpu", "1")]),
        el("os",
            el("type", "hvm", arch="x86_64", machine="pc"),
            el("kernel", cfg.kernel),
            el("initrd", cfg.initrd),
            el("cmdline", KERNEL_CMDLINE),
        ),
        features,
        # one socket of max_vcpus cores: a vCPU's id is its core id, as on the QEMU
        # backend (and the guest's ACPI processor object names it)
        el("cpu", *([el("topology", sockets="1", dies="1", cores=str(cfg.max_vcpus),
                        threads="1")] if cfg.max_vcpus > 1 else []),
           mode="maximum" if cfg.accel == "tcg" else "host-passthrough"),
        el("on_poweroff", "destroy"),
        el("on_reboot", "destroy"),
        el("on_crash", "destroy"),
        el("devices",
            el("emulator", cfg.emulator),
            el("disk",
                el("driver", name="qemu", type="qcow2"),
                el("source", file=cfg.root_overlay),
                _backing_chain(cfg.root_backing),
                el("target", dev="vda", bus="virtio"),
                el("alias", name=f"{ALIAS_PREFIX}approot"),
                type="file", device="disk",
            ),
            el("controller", el("alias", name=f"{ALIAS_PREFIX}scsi0"), type="scsi", index="0",
                         model="virtio-scsi"),
            el("controller", type="usb", model="none"),
            el("serial", el("source", path=cfg.console_log), el("target", port="0"),
               type="file"),
            el("channel",
                el("source", mode="bind" if cfg.detached else "connect",
                   path=cfg.agent_socket),
                el("target", type="virtio", name=AGENT_PORT),
                type="unix",
            ),
            el("rng", el("backend", "/dev/urandom", model="random"), model="virtio"),
            el("memballoon", model="none"),
            el("video", el("model", type="none")),
        ),
        *([_dac_label(cfg.dac_label)] if cfg.dac_label else []),
        type="kvm" if cfg.accel == "kvm" else "qemu",
    )
    return etree.tostring(domain, pretty_print=True, encoding="unicode")


def disk_xml(index: int, drive: DriveSpec, overlay: str | None = None, *, owner: str) -> str:
    """The ``<disk>`` of slot *index*: SCSI target *index* on controller 0.

    The image's format is named and its backing chain is declared empty (an
    empty ``<backingStore/>``), so libvirt opens no file the image names.  With
    *overlay* (a throwaway qcow2 made by the host), the guest sees the overlay
    and the image is its read-only backing; a read-only drive without one is
    ``<readonly/>``.  A drive on snapshot overlays (``drive.chain``) shows the
    newest, on a declared chain of the older ones and the image.
    """
    serial = slot_serial(index, drive.label)
    kind = "file"
    if overlay is not None:
        parts = [
            el("driver", name="qemu", type="qcow2", discard="unmap"),
            el("source", file=overlay),
            _backing_chain(((drive.path, drive.format),), drive.remote),
        ]
    elif drive.chain:
        below = [(path, "qcow2") for path in reversed(drive.chain[:-1])]
        parts = [
            el("driver", name="qemu", type="qcow2", discard="unmap"),
            el("source", file=drive.chain[-1]),
            _backing_chain((*below, (drive.path, drive.format)), drive.remote),
        ]
    else:
        driver = el("driver", name="qemu", type=drive.format)
        if not drive.readonly:  # the guest's discards free the image's blocks
            driver.set("discard", "unmap")
        kind, source = source_xml(drive.path, drive.remote)
        parts = [driver, source, el("backingStore")]
    parts += [
        el("target", dev=f"sd{index_to_letters(index)}", bus="scsi"),
        el("serial", serial),
        el("alias", name=slot_alias(index, owner)),
        el("address", type="drive", controller="0", bus="0", target=str(index), unit="0"),
    ]
    if overlay is None and drive.readonly:
        parts.append(el("readonly"))
    disk = el("disk", *parts, type=kind, device="disk")
    return etree.tostring(disk, pretty_print=True, encoding="unicode")


def snapshot_xml(name: str, overlays: list[tuple[int, str]], others: list[str]) -> str:
    """A disk-only ``<domainsnapshot>`` *name*: the disks of slots (index, overlay file,
    made by the caller) go on those files; every disk named in *others* (target devs:
    the root disk, the other slots) is left out."""
    disks = [el("disk", el("driver", type="qcow2"), el("source", file=path),
                name=f"sd{index_to_letters(index)}", snapshot="external", type="file")
             for index, path in overlays]
    disks += [el("disk", name=dev, snapshot="no") for dev in others]
    snapshot = el("domainsnapshot", el("name", name), el("disks", *disks))
    return etree.tostring(snapshot, pretty_print=True, encoding="unicode")


def backup_xml(exports: list[tuple[int, str, str]], others: list[str]) -> str:
    """libvirt's push-mode ``<domainbackup>``: the disks of slots (index, target file,
    format) copied into those (existing) files; every disk named in *others* (target
    devs: the root disk, the other slots) left out."""
    disks = [el("disk", el("driver", type=fmt), el("target", file=path),
                name=f"sd{index_to_letters(index)}", backup="yes", type="file")
             for index, path, fmt in exports]
    disks += [el("disk", name=dev, backup="no") for dev in others]
    backup = el("domainbackup", el("disks", *disks), mode="push")
    return etree.tostring(backup, pretty_print=True, encoding="unicode")


def live_disk(domain: str, alias: str) -> str | None:
    """The ``<disk>`` whose device alias is *alias* in a domain's live XML *domain*,
    serialised, or None if it has none (what an abandoned attach may have left)."""
    return _live_device(domain, "disk", alias)


def _live_device(domain: str, tag: str, alias: str) -> str | None:
    root = etree.fromstring(domain.encode())
    for device in root.iterfind(f"devices/{tag}"):
        found = device.find("alias")
        if found is not None and found.get("name") == alias:
            return etree.tostring(device, encoding="unicode")
    return None


def restore_xml(saved: str, cfg: DomainConfig, moved: dict[str, str] | None = None,
                copies: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The XML a saved domain *saved* (as ``saveImageGetXMLDesc`` gives it) is restored
    with as appliance *cfg*: the same domain (libvirt checks its name, uuid and ABI),
    with this appliance's root overlay and backing chain, agent socket, console file
    and owner, each slot disk whose file is a key of *moved* (a throwaway overlay
    copied into this appliance's work directory) on its new path, and each disk whose
    alias is a key of *copies* on that copy (path, format; a save with the disk set:
    the copy is one file, whatever chain the disk had).  Raises ValueError if *saved*
    is not *cfg*'s domain."""
    root = etree.fromstring(saved.encode())
    for source in root.findall("devices/disk/source"):
        new = (moved or {}).get(source.get("file", ""))
        if new is not None:
            source.set("file", new)
    _on_copies(root, copies or {})
    if root.findtext("name") != cfg.name:
        raise ValueError(f"the saved domain is {root.findtext('name')!r}, not {cfg.name!r}")

    def one(path: str) -> etree._Element:
        found = root.xpath(path, approot=f"{ALIAS_PREFIX}approot", port=AGENT_PORT)
        if not isinstance(found, list) or len(found) != 1:
            raise ValueError(f"the saved domain has no single {path}")
        element = found[0]
        assert isinstance(element, etree._Element)
        return element

    old = root.find("metadata")
    if old is not None:
        root.remove(old)
    one("name").addnext(_metadata(cfg.owner, cfg.detached))
    disk = one("devices/disk[alias/@name=$approot]")
    for backing in disk.findall("backingStore"):
        disk.remove(backing)
    source = one("devices/disk[alias/@name=$approot]/source")
    source.set("file", cfg.root_overlay)
    source.addnext(_backing_chain(cfg.root_backing))
    _host_sockets(root, cfg.agent_socket, cfg.console_log)
    _set_dac_label(root, cfg.dac_label)  # this daemon's, not the saver's
    return etree.tostring(root, encoding="unicode")


def _dac_label(label: str) -> etree._Element:
    return el("seclabel", el("label", label), type="static", model="dac", relabel="no")


def _set_dac_label(root: etree._Element, label: str) -> None:
    """Give domain *root* the static DAC *label* (see
    :func:`~guestslots.backends.libvirt.connection.dac_label`) in place of any it has:
    none if *label* is empty (the daemon's choice)."""
    for old in root.findall("seclabel[@model='dac']"):
        root.remove(old)
    if label:
        root.append(_dac_label(label))


def _host_sockets(root: etree._Element, agent_socket: str, console_log: str) -> None:
    """Point the domain *root*'s agent channel and console at these host paths."""
    found = root.xpath("devices/channel[target/@name=$port]/source", port=AGENT_PORT)
    if not isinstance(found, list) or len(found) != 1:
        raise ValueError("the domain has no single agent channel")
    channel = found[0]
    assert isinstance(channel, etree._Element)
    channel.set("path", agent_socket)
    for path in ("devices/serial/source", "devices/console/source"):
        for element in root.findall(path):
            element.set("path", console_log)


def migration_xml(domain: str, agent_socket: str, console_log: str,
                  copies: Mapping[str, tuple[str, str]] | None = None,
                  dac_label: str = "") -> str:
    """The destination's definition for a migration of *domain* (its migratable XML,
    or the caller's destination XML): the same, but for the host-side paths the new
    QEMU must not share with the old one while both run: the agent channel's
    socket (the new QEMU connects to a new listener, or listens there if detached),
    the console file, and each
    disk copied in the migration, by device alias in *copies*: (path, format) of
    its copy, whose backing chain is declared empty (the chain collapses into the
    copy); and the destination daemon's *dac_label* in place of the source's.
    Raises ValueError if *domain* is not an appliance's or lacks a disk."""
    root = etree.fromstring(domain.encode())
    _host_sockets(root, agent_socket, console_log)
    _on_copies(root, copies or {})
    _set_dac_label(root, dac_label)
    return etree.tostring(root, encoding="unicode")


def _on_copies(root: etree._Element, copies: Mapping[str, tuple[str, str]]) -> None:
    """Put each disk of domain *root* named by its alias in *copies* on its copy:
    (path, format), its backing chain declared empty (a chain collapses into a copy)."""
    for alias, (path, fmt) in copies.items():
        found = root.xpath("devices/disk[alias/@name=$alias]", alias=alias)
        if not isinstance(found, list) or len(found) != 1:
            raise ValueError(f"the domain has no single disk {alias}")
        disk = found[0]
        assert isinstance(disk, etree._Element)
        driver, source = disk.find("driver"), disk.find("source")
        if driver is None or source is None:
            raise ValueError(f"disk {alias} has no driver or source")
        driver.set("type", fmt)
        source.attrib.clear()
        source.set("file", path)
        for backing in disk.findall("backingStore"):
            disk.remove(backing)
        source.addnext(el("backingStore"))


def nic_alias(slot: int, owner: str) -> str:
    """The device alias of NIC slot *slot* in appliance *owner*."""
    return ALIAS_PREFIX + device_id("nic", owner, slot)


def interface_xml(slot: int, nic: NicSpec, *, owner: str) -> str:
    """The ``<interface>`` of NIC slot *slot*: virtio at its PCI slot, its MAC and alias.

    Network ``user`` is libvirt's user-mode interface with the slot's own network
    (``<ip>`` of the gateway's network: libvirt passes it to QEMU's slirp); ``tap``
    is an ``ethernet`` interface on the existing tap device (``managed='no'``:
    libvirt opens it and changes nothing of it)."""
    parts: list[etree._Element] = [el("mac", address=nic.mac)]
    if nic.network == "user":
        assert nic.net is not None
        net = ipaddress.IPv4Network(nic.net)
        parts.append(el("ip", family="ipv4", address=str(net.network_address),
                        prefix=str(net.prefixlen)))
        kind = "user"
    else:
        assert nic.tap is not None
        parts.append(el("target", dev=nic.tap, managed="no"))
        kind = "ethernet"
    parts += [
        el("model", type="virtio"),
        el("alias", name=nic_alias(slot, owner)),
        el("address", type="pci", domain="0x0000", bus="0x00", slot=f"{pci_slot(slot):#04x}",
           function="0x0"),
    ]
    return etree.tostring(el("interface", *parts, type=kind), pretty_print=True,
                          encoding="unicode")


def nic_slots_in_use(domain: str, owner: str) -> frozenset[int]:
    """The NIC slots a domain's live XML *domain* has taken: a device at the slot's PCI
    address, or an interface with its alias."""
    root = etree.fromstring(domain.encode())
    used: set[int] = set()
    for address in root.iterfind("devices/*/address[@type='pci']"):
        if int(address.get("bus", "0"), 0) == 0:
            used.add(int(address.get("slot", "-1"), 0))
    aliases = {a.get("name") for a in root.iterfind("devices/interface/alias")}
    return frozenset(s for s in range(MAX_NICS)
                     if pci_slot(s) in used or nic_alias(s, owner) in aliases)


def live_interface(domain: str, alias: str) -> str | None:
    """The ``<interface>`` with device alias *alias* in a domain's live XML, or None."""
    return _live_device(domain, "interface", alias)
