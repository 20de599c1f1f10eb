"""QMP arguments and the QEMU command line, built from the model."""

from __future__ import annotations

import dataclasses

from guestslots.backends.qemu.qmpargs import (
    ANONYMOUS_RAM,
    MachineConfig,
    blockdev_add_args,
    chain_add_args,
    device_add_args,
    layout_key_command,
    overlay_create_args,
    overlay_made_args,
    qemu_command,
    slot_ids,
)
from guestslots.model.drives import DriveSpec


def test_ids_are_reproducible_and_valid_node_names() -> None:
    assert slot_ids(5, "9f2c41d7") == slot_ids(5, "9f2c41d7")
    ids = slot_ids(254, "9f2c41d7")
    assert ids.qdev == "disk-9f2c41d7-254"  # as the runtime record says
    for name in (ids.qdev, ids.fmt_node, ids.file_node, ids.base_node, ids.base_file_node):
        assert len(name) <= 31 and name[0].isalpha()
    assert len({slot_ids(i, "9f2c41d7").fmt_node for i in range(255)}) == 255
    # two appliances' devices never share an id
    assert slot_ids(3, "9f2c41d7").qdev != slot_ids(3, "00000001").qdev


def test_blockdev_add_read_only_qcow2_never_opens_backing() -> None:
    args = blockdev_add_args(3, DriveSpec("/i/a.qcow2", "qcow2", True, "base"), owner="ab")
    assert args == {
        "driver": "qcow2",
        "node-name": "disk-ab-3-fmt",
        "read-only": True,
        "backing": None,
        "file": {"driver": "file", "filename": "/i/a.qcow2", "node-name": "disk-ab-3-file",
                 "read-only": True},
    }


def test_blockdev_add_raw_read_write() -> None:
    args = blockdev_add_args(0, DriveSpec("/i/a.img", "raw", False), owner="ab")
    assert args["read-only"] is False and args["file"]["read-only"] is False
    assert "backing" not in args
    # the guest's discards (fstrim, mkfs) free the image's blocks; never a read-only one's
    assert args["discard"] == args["file"]["discard"] == "unmap"
    overlaid = blockdev_add_args(0, DriveSpec("/i/a.img", "raw", True), "/t/o.qcow2",
                                 owner="ab")
    assert overlaid["discard"] == "unmap" and "discard" not in overlaid["backing"]


def test_an_overlay_qemu_makes_gives_the_graph_a_nested_one_gives() -> None:
    """The nodes added one by one when QEMU writes the overlay are those
    blockdev_add_args nests for an overlay that exists (a restore): same names, same
    options, the image read-only and first, the overlay's file before its node."""
    drive = DriveSpec("/i/a.qcow2", "qcow2", True)
    nested = blockdev_add_args(2, drive, "/t/o.qcow2", owner="ab")
    base, file, top = overlay_made_args(2, drive, "/t/o.qcow2", owner="ab")
    assert base == nested["backing"] and base["read-only"] is True
    assert base["backing"] is None  # the image's own backing file is never opened
    assert file == nested["file"]
    assert top == {**nested, "file": file["node-name"], "backing": base["node-name"]}
    create = overlay_create_args(2, 1 << 30, (drive.path, "qcow2"), owner="ab")
    assert create == {"job-id": "disk-ab-2-mk", "options": {
        "driver": "qcow2", "file": file["node-name"], "size": 1 << 30,
        "backing-file": "/i/a.qcow2", "backing-fmt": "qcow2"}}
    # a remote source's overlay names no backing: QEMU would take the URL's parts as
    # options beside the node's own
    assert "backing-file" not in overlay_create_args(2, 512, None, owner="ab")["options"]


def test_device_add_puts_slot_at_its_target_with_serial_and_device_id() -> None:
    assert device_add_args(27, DriveSpec("/i/a.img", "raw", True, "data"), owner="ab") == {
        "driver": "scsi-hd",
        "id": "disk-ab-27",
        "bus": "scsi0.0",
        "channel": 0,
        "scsi-id": 27,
        "lun": 0,
        "drive": "disk-ab-27-fmt",
        "serial": "data",
        "device_id": "data",
    }
    assert device_add_args(4, DriveSpec("/i/a.img"), owner="ab")["serial"] == "slot4"


def test_command_line_has_no_slot_disks_and_a_virtio_blk_root() -> None:
    cfg = MachineConfig(
        qemu="qemu", accel="tcg", kernel="/k", initrd="/i", root_overlay="/w,x/root.qcow2",
        qmp_socket="/w/qmp.sock", agent_socket="/w/agent.sock", console_log="/w/console.log",
    )
    cmd = qemu_command(cfg)
    joined = " ".join(cmd)
    assert "scsi-hd" not in joined
    assert "virtio-blk-pci,drive=approot" in joined
    assert "file.filename=/w,,x/root.qcow2" in joined  # commas escaped for QEMU
    assert cmd[cmd.index("-machine") + 1] == "pc"
    # TCG's translation cache is bounded (QEMU's default, 1 GiB, grows QEMU's RSS)
    assert cmd[cmd.index("-accel") + 1] == "tcg,tb-size=64"
    kvm = qemu_command(MachineConfig(**{**cfg.__dict__, "accel": "kvm"}))
    assert kvm[kvm.index("-accel") + 1] == "kvm"
    assert "root=/dev/vda" in cmd[cmd.index("-append") + 1]
    assert qemu_command(cfg) == cmd  # deterministic


def test_guest_ram_is_a_file_shared_when_booting_and_copy_on_write_when_restored() -> None:
    base = dict(qemu="qemu", accel="tcg", kernel="/k", initrd="/i", root_overlay="/w/r",
                qmp_socket="/w/q", agent_socket="/w/a", console_log="/w/c", memory_mb=384)
    booting = MachineConfig(**base, memory_file="/w,1/ram", memory_shared=True)  # type: ignore[arg-type]
    restored = MachineConfig(**{**base, "root_overlay": "/v/r"},  # type: ignore[arg-type]
                             memory_file="/cache/state/ram", memory_shared=False)
    cmd = qemu_command(booting)
    assert cmd[cmd.index("-machine") + 1] == "pc,memory-backend=ram0"
    assert cmd[cmd.index("-object") + 1] == \
        "memory-backend-file,id=ram0,size=384M,mem-path=/w,,1/ram,share=on"
    assert cmd[cmd.index("-m") + 1] == "384"  # the backend's size and -m agree
    restore = qemu_command(restored, incoming=True)
    assert restore[restore.index("-object") + 1].endswith(
        "mem-path=/cache/state/ram,share=off")
    # the saving and the restoring side have one layout: where the RAM file is, and
    # whether it is shared, are per instance
    assert layout_key_command(booting) == layout_key_command(restored)
    anonymous = MachineConfig(**base)  # type: ignore[arg-type]
    assert "-object" not in qemu_command(anonymous)
    assert layout_key_command(anonymous) != layout_key_command(booting)
    # a state whose RAM is in its stream: the same RAM object, in anonymous memory
    streamed = MachineConfig(**base, memory_file=ANONYMOUS_RAM,  # type: ignore[arg-type]
                             memory_shared=False)
    cmd = qemu_command(streamed, incoming=True)
    assert cmd[cmd.index("-machine") + 1] == "pc,memory-backend=ram0"
    assert cmd[cmd.index("-object") + 1] == "memory-backend-ram,id=ram0,size=384M"
    assert layout_key_command(streamed) == layout_key_command(booting)


def test_a_snapshot_chain_is_opened_layer_on_layer_by_node() -> None:
    drive = DriveSpec("/i/a.img", "raw", False, chain=("/i/a.s1.qcow2", "/i/a.s2.qcow2"))
    layers = chain_add_args(4, drive, owner="ab")
    assert [(a["node-name"], a["backing"], a["file"]["filename"]) for a in layers] == [
        ("disk-ab-4-s1", "disk-ab-4-fmt", "/i/a.s1.qcow2"),
        ("disk-ab-4-s2", "disk-ab-4-s1", "/i/a.s2.qcow2"),
    ]
    assert all(a["driver"] == "qcow2" and "read-only" not in a for a in layers)
    assert chain_add_args(4, DriveSpec("/i/a.img", "raw", False), owner="ab") == []


def test_a_detached_qemu_serves_the_sockets_it_is_handed_and_keeps_the_layout() -> None:
    cfg = MachineConfig(qemu="qemu", accel="tcg", kernel="/k", initrd="/i", root_overlay="/w/r",
                        qmp_socket="/w/q", agent_socket="/w/a", console_log="/w/c")
    attached = qemu_command(cfg)
    assert "socket,id=qmp,path=/w/q" in attached and "socket,id=agent,path=/w/a" in attached
    served = qemu_command(dataclasses.replace(cfg, detached=True), listening=(7, 9))
    assert "socket,id=qmp,fd=7,server=on,wait=off" in served
    assert "socket,id=agent,fd=9,server=on,wait=off" in served
    assert not any("/w/q" in arg or "/w/a" in arg for arg in served)
    # a state saved by either restores into the other: the guest sees the same machine
    assert layout_key_command(dataclasses.replace(cfg, detached=True)) == \
        layout_key_command(cfg)
