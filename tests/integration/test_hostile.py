"""A hostile image reaches neither the host's files nor other slots nor the appliance."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest

from guestslots import Appliance, DriveError, DriveSpec, GuestOSError, HostFileError
from guestslots.backends.qemu import QemuBackend
from guestslots.host.room import free_bytes
from guestslots.testing import testimages as images

from .conftest import whoami

pytestmark = pytest.mark.integration


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host_secret(image_dir: Path) -> Path:
    """A host file a hostile qcow2 names as its external data file: an ext4 with a label,
    so a guest that could see it would say so through vfs_label."""
    return images.ext4(image_dir / "host-secret.img", {"secret": "host data\n"},
                       label="HOSTSECRET")


@pytest.fixture
def data_file_qcow2(image_dir: Path, host_secret: Path) -> Path:
    path = image_dir / "data-file.qcow2"
    path.unlink(missing_ok=True)
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", "-o",
              f"data_file={host_secret},data_file_raw=on", path, "16M")
    return path


def test_a_qcow2_external_data_file_is_never_opened(
    app: Appliance, data_file_qcow2: Path, host_secret: Path
) -> None:
    before = _sha(host_secret)
    for readonly in (True, False):
        with pytest.raises(DriveError, match="names an external data file") as e:
            app.hotplug(0, data_file_qcow2, format="qcow2", readonly=readonly)
        assert str(data_file_qcow2) in str(e.value)
    with pytest.raises(DriveError, match="names an external data file"):
        app.hotplug(0, data_file_qcow2, format="qcow2", overlay=True)
    assert app.slots()[0].drive is None
    assert _sha(host_secret) == before


@pytest.mark.single_pass("the QEMU backend's own check")
def test_the_backend_checks_what_qemu_opened_not_only_the_header(
    app: Appliance, data_file_qcow2: Path, host_secret: Path
) -> None:
    """Below the header check: a drive that got past it is still refused by what QEMU
    opened for it, and nothing of it is left in QEMU."""
    backend = app._backend  # the backend, under the Appliance's checks on purpose
    assert isinstance(backend, QemuBackend) and backend.machine is not None
    machine = backend.machine
    before = _sha(host_secret)
    with pytest.raises(DriveError, match="made QEMU open .*host-secret.img"):
        machine.attach(0, DriveSpec(str(data_file_qcow2), "qcow2", readonly=False))
    nodes = machine.execute("query-named-block-nodes", {"flat": True})
    assert not [n["node-name"] for n in nodes if n["node-name"].startswith("slot0")]
    assert not any(n.get("file") == str(host_secret) for n in nodes)
    assert _sha(host_secret) == before


@pytest.fixture
def special_files(image_dir: Path) -> Path:
    """Device nodes naming the appliance's root disk (virtio-blk, 254:0), the first SCSI
    disk (8:0, another slot), /dev/zero, and a FIFO."""
    return images.ext4(image_dir / "special.img", {"whoami": "special\n"}, nodes={
        "vda": (stat.S_IFBLK | 0o666, os.makedev(254, 0)),
        "sda": (stat.S_IFBLK | 0o666, os.makedev(8, 0)),
        "zero": (stat.S_IFCHR | 0o666, os.makedev(1, 5)),
        "fifo": (stat.S_IFIFO | 0o666, 0),
    })


def test_device_nodes_and_fifos_on_a_guest_filesystem_are_not_opened(
    app: Appliance, special_files: Path, image_dir: Path, tmp_path: Path
) -> None:
    other = images.ext4(image_dir / "victim.img", {"whoami": "victim\n"})
    app.hotplug(1, other)
    app.hotplug(0, special_files, overlay=True)  # writable, through a throwaway overlay
    app.mount("/dev/sda", "/")
    kinds = {"vda": "a block device", "sda": "a block device", "zero": "a character device",
             "fifo": "a FIFO"}
    for name, kind in kinds.items():
        path = f"/{name}"
        assert app.exists(path)
        for read in (app.read_file, lambda p: app.checksum("sha256", p)):
            with pytest.raises(GuestOSError, match=f"not a regular file \\({kind}\\)") as e:
                read(path)
            assert e.value.errno == errno.EINVAL
        with pytest.raises(GuestOSError) as e:
            app.download(path, tmp_path / name)
        with pytest.raises(GuestOSError) as e:
            app.write(path, b"overwrite")
        assert e.value.errno in (errno.EINVAL, errno.EACCES), (name, e.value)
    with pytest.raises(GuestOSError, match="a directory"):
        app.read_file("/lost+found")
    # the agent is not wedged, and the other slot is untouched
    assert app.cat("/whoami") == "special\n"
    app.umount_all()
    assert whoami(app, "/dev/sdb") == "victim"


def test_ext4_errors_panic_does_not_take_the_appliance_down(
    app: Appliance, image_dir: Path
) -> None:
    """An ext4 whose superblock says errors=panic, with a corrupt directory: reading the
    directory is an ext4 error, which must not panic the appliance (every slot in it)."""
    img = images.ext4(image_dir / "panic.img",
                      {f"dir/file{i:03}": "x" for i in range(40)} | {"whoami": "panic\n"},
                      size_mib=16)
    images.sh("tune2fs", "-e", "panic", img)
    block = int(images.sh("debugfs", "-R", "bmap /dir 0", img).split()[-1])
    block_size = int(images.sh("debugfs", "-R", "stats", img).split("Block size:")[1].split()[0])
    with open(img, "r+b") as f:
        f.seek(block * block_size)
        f.write(b"\xa5" * block_size)
    app.hotplug(0, img)
    app.mount_ro("/dev/sda", "/")
    assert app.cat("/whoami") == "panic\n"
    with pytest.raises(GuestOSError) as e:
        app.ls("/dir")
    # the ext4 error itself (a directory block failing its checksum, or corrupt)
    assert e.value.errno in (errno.EBADMSG, errno.EUCLEAN, errno.EIO), e.value
    assert app.cat("/whoami") == "panic\n"  # the appliance is alive


def test_a_cluster_bomb_is_never_copied_out(app: Appliance, tmp_path: Path) -> None:
    """A few MiB of qcow2 whose every cluster maps to one host cluster: the guest sees
    more data than the copies' directory has room for.  An export, and a save with the
    disk set, are refused before anything is written; the appliance and the slot go on."""
    bomb = images.cluster_bomb(tmp_path / "bomb.qcow2", free_bytes(str(tmp_path)) + 1)
    app.hotplug(0, bomb, format="qcow2", readonly=False)
    assert app.blockdev_getsize64("/dev/sda") >= 512 << 30  # what the guest sees
    assert app.pread_device("/dev/sda", 4, 400 << 30) == b"\x5a" * 4
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HostFileError, match="free: nothing was copied") as e:
        app.export(out, diskset=False)
    assert e.value.path == str(out) and "slot 0" in str(e.value)
    assert list(out.iterdir()) == []
    assert app.diskset_add(0) == 0
    with pytest.raises(HostFileError, match="free: nothing was copied"):
        app.save(tmp_path / "saved", with_disk_set=True)
    assert not (tmp_path / "saved").exists()
    assert app.pread_device("/dev/sda", 4, 0) == b"\x5a" * 4  # it runs on, slot and all
    assert app.slots()[0].drive is not None and app.diskset_list() == [0]
