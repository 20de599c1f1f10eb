"""QEMU declarations built from the model: command line, blockdev-add, device_add.

Pure functions.  Ids are reproducible (derived from the slot index only), so
that a device can be found and removed again and a restarted or restored
appliance gets the identical layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ...model.drives import DriveSpec
from ...model.ids import device_id
from ...model.nics import MAX_NICS, NicSpec, pci_slot
from ...model.slots import slot_serial
from ...wire import AGENT_PORT
from .. import KERNEL_CMDLINE

#: qdev id of the virtio-scsi controller; slot disks sit on its bus 0.
SCSI_CONTROLLER = "scsi0"


@dataclass(frozen=True)
class SlotIds:
    """The QEMU ids of one slot's disk: qdev id, format node, protocol node."""

    qdev: str
    fmt_node: str
    file_node: str
    #: The image under a throwaway overlay (only for a ``DriveSpec.throwaway`` drive).
    base_node: str
    base_file_node: str
    #: The ``tls-creds-x509`` object of an ``nbds`` source.
    tls: str


def slot_ids(index: int, owner: str) -> SlotIds:
    """Reproducible ids for slot *index* of appliance *owner* (see
    :mod:`guestslots.model.ids`; node names: at most 31 characters)."""
    base = device_id("disk", owner, index)
    return SlotIds(qdev=base, fmt_node=f"{base}-fmt", file_node=f"{base}-file",
                   base_node=f"{base}-base", base_file_node=f"{base}-base-file",
                   tls=f"{base}-tls")


def _image_node(node: str, file_node: str, drive: DriveSpec, readonly: bool,
                tls: str) -> dict[str, Any]:
    if drive.remote is not None:
        file = drive.remote.qemu_options(file_node, readonly,
                                         tls if drive.remote.tls else None)
    else:
        file = {"driver": "file", "filename": drive.path, "node-name": file_node,
                "read-only": readonly}
    args: dict[str, Any] = {
        "driver": drive.format,
        "node-name": node,
        "read-only": readonly,
        "file": file,
    }
    if drive.format == "qcow2":
        args["backing"] = None
    if not readonly:  # the guest's discards (fstrim, mkfs) free the image's blocks
        args["discard"] = file["discard"] = "unmap"
    return args


def blockdev_add_args(index: int, drive: DriveSpec, overlay: str | None = None, *,
                      owner: str) -> dict[str, Any]:
    """Arguments of ``blockdev-add`` for *drive* in slot *index*.

    A qcow2 image's backing file is never opened (``backing: null``): the
    image must not make QEMU open host files of its choosing.  With *overlay*
    (the path of a throwaway qcow2 file, for a ``DriveSpec.throwaway`` drive:
    every read-only one, and ``overlay`` ones) the image is the overlay's
    read-only backing node, named here rather than taken from the overlay's
    header.  Without it, both nodes are read-only for a read-only drive.  What the
    guest writes passes its discards down (``discard: unmap``): fstrim, and mkfs's
    discards, free the blocks of a writable image or of the overlay.
    """
    ids = slot_ids(index, owner)
    if overlay is None:
        return _image_node(ids.fmt_node, ids.file_node, drive, drive.readonly, ids.tls)
    return {
        "driver": "qcow2",
        "node-name": ids.fmt_node,
        "read-only": False,
        "discard": "unmap",
        "file": _overlay_file(ids, overlay),
        "backing": _image_node(ids.base_node, ids.base_file_node, drive, True, ids.tls),
    }


def _overlay_file(ids: SlotIds, overlay: str) -> dict[str, Any]:
    return {"driver": "file", "filename": overlay, "node-name": ids.file_node,
            "discard": "unmap"}


def overlay_made_args(index: int, drive: DriveSpec, overlay: str, *,
                      owner: str) -> list[dict[str, Any]]:
    """``blockdev-add`` arguments, in order, of the nodes :func:`blockdev_add_args`
    nests, when QEMU makes the throwaway overlay (:func:`overlay_create_args`): the
    image's read-only node (opened first: an image QEMU refuses is refused before
    anything is made for it), the overlay's file node (the qcow2 is written there),
    then the overlay's node on both, by name.  The same node names, so a restore,
    migration or unplug finds the same graph."""
    ids = slot_ids(index, owner)
    return [
        _image_node(ids.base_node, ids.base_file_node, drive, True, ids.tls),
        _overlay_file(ids, overlay),
        {"driver": "qcow2", "node-name": ids.fmt_node, "read-only": False, "discard": "unmap",
         "file": ids.file_node, "backing": ids.base_node},
    ]


def overlay_create_args(index: int, size: int, backing: tuple[str, str] | None, *,
                        owner: str) -> dict[str, Any]:
    """``blockdev-create`` of slot *index*'s throwaway overlay, a qcow2 of *size* bytes
    on the overlay's file node (added first, on an empty file), its header naming
    *backing* (name, format; never opened: the slot's node gives the backing).  The
    job's id is :func:`overlay_job`'s."""
    options: dict[str, Any] = {"driver": "qcow2", "file": slot_ids(index, owner).file_node,
                               "size": size}
    if backing is not None:
        options["backing-file"], options["backing-fmt"] = backing
    return {"job-id": overlay_job(index, owner), "options": options}


def overlay_job(index: int, owner: str) -> str:
    """The id of the job making slot *index*'s throwaway overlay."""
    return f"{slot_ids(index, owner).qdev}-mk"


def chain_node(index: int, owner: str, depth: int) -> str:
    """The node name of slot *index*'s snapshot overlay number *depth* (1: the oldest)."""
    return f"{slot_ids(index, owner).qdev}-s{depth}"


def overlay_node_args(node: str, path: str, backing: str | None) -> dict[str, Any]:
    """``blockdev-add`` of snapshot overlay *path* as node *node*, read-write, on node
    *backing* (None: none yet, as ``blockdev-snapshot`` wants it); never on the
    backing file its header names."""
    return {"driver": "qcow2", "node-name": node, "backing": backing, "discard": "unmap",
            "file": {"driver": "file", "filename": path, "node-name": f"{node}-file",
                     "discard": "unmap"}}


def chain_add_args(index: int, drive: DriveSpec, *, owner: str) -> list[dict[str, Any]]:
    """``blockdev-add`` of each of *drive*'s snapshot overlays (``drive.chain``), in
    order, each on the one below, the first on the image's node."""
    below = slot_ids(index, owner).fmt_node
    layers = []
    for depth, path in enumerate(drive.chain, 1):
        layers.append(overlay_node_args(chain_node(index, owner, depth), path, below))
        below = layers[-1]["node-name"]
    return layers


def device_add_args(index: int, drive: DriveSpec, *, owner: str) -> dict[str, Any]:
    """Arguments of ``device_add`` for the ``scsi-hd`` of slot *index* (target = index).

    ``serial`` gives the guest ``ID_SCSI_SERIAL`` (VPD page 0x80, used by the
    udev rule) and ``device_id`` the by-id link (VPD 0x83); libvirt sets both
    from ``<serial>``, so both backends present the same disk.
    """
    ids = slot_ids(index, owner)
    serial = slot_serial(index, drive.label)
    return {
        "driver": "scsi-hd",
        "id": ids.qdev,
        "bus": f"{SCSI_CONTROLLER}.0",
        "channel": 0,
        "scsi-id": index,
        "lun": 0,
        "drive": ids.fmt_node,
        "serial": serial,
        "device_id": serial,
    }


@dataclass(frozen=True)
class MachineConfig:
    """Everything that decides an appliance VM's command line."""

    qemu: str
    accel: str
    kernel: str
    initrd: str
    root_overlay: str
    qmp_socket: str
    agent_socket: str
    console_log: str
    memory_mb: int = 512
    vcpus: int = 1
    #: vCPU ids 0..max_vcpus-1 can be plugged (one at boot; the rest by hotplug).
    max_vcpus: int = 1
    cpu: str = "max"
    machine: str = "pc"
    append_extra: str = ""
    #: TCG's translation cache (MiB); QEMU's default of 1 GiB lets a long-lived
    #: appliance's resident memory grow by as much (see tools/bench/soak.py).
    tcg_cache_mib: int = 64
    #: The guest's RAM is this file (``""``: anonymous memory).  A booting appliance
    #: whose state will be saved writes its RAM into the file (*memory_shared*); a
    #: restored one maps the saved file copy-on-write (not *memory_shared*): the
    #: restore reads no RAM at all, and every appliance restored from one state
    #: shares the pages none of them changed (the host's page cache holds them once).
    #: :data:`ANONYMOUS_RAM`: the same RAM object (``ram0``, as a saved state names
    #: it), in anonymous memory: for restoring a state whose RAM is in its stream.
    memory_file: str = ""
    memory_shared: bool = True
    #: QEMU outlives its caller (``Appliance(detached=True)``): it is the server of its
    #: QMP and agent sockets (listening sockets made by the caller and handed over,
    #: so there is no race with QEMU creating them), and the next process that
    #: attaches connects to them.
    detached: bool = False


#: ``MachineConfig.memory_file`` for RAM that is no file (see there).
ANONYMOUS_RAM = "<anonymous>"


def _opt(value: str) -> str:
    """Escape a value for a QEMU ``key=value,...`` option (commas are doubled)."""
    return value.replace(",", ",,")




def qemu_command(cfg: MachineConfig, incoming: bool = False,
                 listening: tuple[int, int] | None = None) -> list[str]:
    """The QEMU command line of an appliance: no slot disks (they are hotplugged).

    The root disk is virtio-blk (``/dev/vda``), outside the ``sdX`` namespace.
    QEMU connects to the QMP and agent sockets, which the host listens on
    first, so there is no race with QEMU creating them.  With *incoming*,
    QEMU waits for a saved state (``migrate-incoming``) instead of booting;
    the devices are the same, as a restore requires.  A detached QEMU is instead
    given *listening*, the descriptors of the QMP and agent sockets, listening
    already, and serves them (one client at a time).
    """
    append = KERNEL_CMDLINE + (" " + cfg.append_extra if cfg.append_extra else "")

    def chardev(name: str, path: str) -> str:
        if listening is None:
            return f"socket,id={name},path={_opt(path)}"
        return f"socket,id={name},fd={listening[name == 'agent']},server=on,wait=off"
    incoming_args = ["-incoming", "defer"] if incoming else []
    if cfg.memory_file == ANONYMOUS_RAM:
        memory_args = ["-object", f"memory-backend-ram,id=ram0,size={cfg.memory_mb}M"]
    elif cfg.memory_file:
        memory_args = [
            "-object",
            f"memory-backend-file,id=ram0,size={cfg.memory_mb}M,"
            f"mem-path={_opt(cfg.memory_file)},share={'on' if cfg.memory_shared else 'off'}",
        ]
    else:
        memory_args = []
    return [
        cfg.qemu,
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-machine",
        f"{cfg.machine},memory-backend=ram0" if cfg.memory_file else cfg.machine,
        "-accel",
        f"tcg,tb-size={cfg.tcg_cache_mib}" if cfg.accel == "tcg" else cfg.accel,
        "-cpu",
        cfg.cpu,
        "-m",
        str(cfg.memory_mb),
        *memory_args,
        "-smp",
        f"{cfg.vcpus},maxcpus={cfg.max_vcpus}" if cfg.max_vcpus > cfg.vcpus else str(cfg.vcpus),
        "-kernel",
        cfg.kernel,
        "-initrd",
        cfg.initrd,
        "-append",
        append,
        "-chardev",
        f"file,id=console,path={_opt(cfg.console_log)}",
        "-serial",
        "chardev:console",
        "-chardev",
        chardev("qmp", cfg.qmp_socket),
        "-mon",
        "chardev=qmp,mode=control",
        "-device",
        f"virtio-scsi-pci,id={SCSI_CONTROLLER}",
        "-blockdev",
        "driver=qcow2,node-name=approot,file.driver=file,"
        f"file.filename={_opt(cfg.root_overlay)},file.node-name=approot-file",
        "-device",
        "virtio-blk-pci,drive=approot,id=approot",
        "-device",
        "virtio-serial-pci,id=vser0",
        "-chardev",
        chardev("agent", cfg.agent_socket),
        "-device",
        f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT}",
        "-device",
        "virtio-rng-pci",
        *incoming_args,
    ]


def layout_key_command(cfg: MachineConfig) -> list[str]:
    """The command line with every per-instance path blanked: what a saved state depends on
    (the RAM file's path and sharing differ between the saving and the restoring side;
    a detached QEMU's sockets, handed over at start, are not on it either)."""
    blank = "@"
    return qemu_command(
        replace(cfg, root_overlay=blank, qmp_socket=blank, agent_socket=blank, console_log=blank,
                memory_file=blank if cfg.memory_file else "", memory_shared=True)
    )


def vcpu_qdev(vcpu: int, owner: str) -> str:
    """The qdev id of hotplugged vCPU *vcpu* of appliance *owner* (reproducible, as a
    slot's)."""
    return device_id("cpu", owner, vcpu)


def vcpu_positions(hotpluggable: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``query-hotpluggable-cpus`` in vCPU id order: id *k* is the *k*-th position by
    (socket, die, core, thread), so on ``pc`` (one socket, one thread per core) it is
    the core id, which is the APIC id the guest sees."""

    def key(entry: dict[str, Any]) -> tuple[int, ...]:
        props = entry.get("props", {})
        return tuple(int(props.get(k, 0)) for k in ("socket-id", "die-id", "core-id",
                                                    "thread-id"))

    return sorted(hotpluggable, key=key)


def vcpu_device_args(vcpu: int, position: dict[str, Any], owner: str) -> dict[str, Any]:
    """``device_add`` arguments for vCPU *vcpu* at its *position* (from
    :func:`vcpu_positions`)."""
    return {"driver": position["type"], "id": vcpu_qdev(vcpu, owner), **position["props"]}


def nic_ids(slot: int, owner: str) -> tuple[str, str]:
    """(qdev id, netdev id) of NIC slot *slot* of appliance *owner*: the device id
    (:mod:`guestslots.model.ids`), its netdev with ``-net``."""
    qdev = device_id("nic", owner, slot)
    return qdev, f"{qdev}-net"


def netdev_add_args(slot: int, nic: NicSpec, owner: str, fdname: str | None = None
                    ) -> dict[str, Any]:
    """``netdev_add`` arguments for NIC slot *slot*: a user-mode network of its own
    (the guest's DHCP server off: the agent sets the fixed address), or the tap
    device whose file descriptor was passed to QEMU as *fdname* (QEMU opens nothing)."""
    _, netdev = nic_ids(slot, owner)
    if nic.network == "user":
        assert nic.net is not None and nic.gateway is not None and nic.dns is not None
        return {"type": "user", "id": netdev, "net": nic.net, "host": nic.gateway,
                "dns": nic.dns, "ipv6": False}
    if fdname is None:
        raise ValueError("a tap NIC needs the name of its passed file descriptor")
    return {"type": "tap", "id": netdev, "fd": fdname}


def nic_device_args(slot: int, nic: NicSpec, owner: str) -> dict[str, Any]:
    """``device_add`` arguments for NIC slot *slot*: virtio-net at its PCI slot."""
    qdev, netdev = nic_ids(slot, owner)
    return {"driver": "virtio-net-pci", "id": qdev, "netdev": netdev, "mac": nic.mac,
            "bus": "pci.0", "addr": f"{pci_slot(slot):#x}"}


def nic_slots_in_use(pci_devices: list[dict[str, Any]], peripherals: list[dict[str, Any]],
                     owner: str) -> frozenset[int]:
    """The NIC slots QEMU says are taken: its PCI slot holds a device (``query-pci`` of
    bus 0), or a device with its id exists (``qom-list /machine/peripheral``)."""
    used_pci = {int(d.get("slot", -1)) for d in pci_devices}
    names = {str(p.get("name")) for p in peripherals}
    return frozenset(slot for slot in range(MAX_NICS)
                     if pci_slot(slot) in used_pci or nic_ids(slot, owner)[0] in names)
