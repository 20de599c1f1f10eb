"""The pure parts of OS inspection: os-release, fstab, fstab device specs."""

from __future__ import annotations

from guestslots.inspection import parse_fstab, resolve_spec
from guestslots.inspection.releases import parse_os_release


def test_parse_os_release_unquotes() -> None:
    text = 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n# comment\nBAD LINE\n'
    assert parse_os_release(text) == {"NAME": "Debian GNU/Linux", "VERSION_ID": "12",
                                      "ID": "debian"}


def test_parse_fstab_keeps_filesystems_only() -> None:
    text = ("UUID=abc / ext4 defaults 0 1\n# note\nLABEL=boot /boot ext4 defaults 0 2\n"
            "proc /proc proc defaults 0 0\n/dev/sda3 none swap sw 0 0\n"
            "/dev/sdb1 /srv/my\\040data xfs defaults 0 0\n")
    assert [(e.spec, e.mountpoint, e.fstype) for e in parse_fstab(text)] == [
        ("UUID=abc", "/", "ext4"), ("LABEL=boot", "/boot", "ext4"),
        ("/dev/sdb1", "/srv/my data", "xfs")]


def test_parse_fstab_btrfs_subvolumes() -> None:
    text = ("UUID=f1 / btrfs subvol=root,compress=zstd:1 0 0\n"
            "UUID=f1 /home btrfs subvol=/home 0 0\nUUID=f1 /top btrfs defaults 0 0\n"
            "UUID=e1 /boot ext4 subvol=x 0 0\n")
    assert [e.btrfs_subvolume for e in parse_fstab(text)] == ["root", "home", None, None]


def test_resolve_spec() -> None:
    by_uuid = {"abc-def": "/dev/sda1"}
    by_label = {"boot": "/dev/sda2"}
    devices = {"/dev/sda1", "/dev/sda2", "/dev/sdb1"}
    assert resolve_spec("UUID=ABC-DEF", by_uuid, by_label, devices) == "/dev/sda1"
    assert resolve_spec("LABEL=boot", by_uuid, by_label, devices) == "/dev/sda2"
    assert resolve_spec("/dev/disk/by-uuid/abc-def", by_uuid, by_label, devices) == "/dev/sda1"
    assert resolve_spec("/dev/vdb1", by_uuid, by_label, devices) == "/dev/sdb1"
    assert resolve_spec("/dev/sdc1", by_uuid, by_label, devices) is None
    assert resolve_spec("server:/export", by_uuid, by_label, devices) is None


def test_resolve_spec_names_lvs_as_list_filesystems_does() -> None:
    devices = {"/dev/sda1", "/dev/vg-0/root", "/dev/md0"}
    assert resolve_spec("/dev/mapper/vg--0-root", {}, {}, devices) == "/dev/vg-0/root"
    assert resolve_spec("/dev/vg-0/root", {}, {}, devices) == "/dev/vg-0/root"
    assert resolve_spec("/dev/md0", {}, {}, devices) == "/dev/md0"
    assert resolve_spec("/dev/vg-0/swap", {}, {}, devices) is None


def test_coreos_takes_its_newest_usr_and_keeps_what_it_knows() -> None:
    from guestslots.inspection import OSInfo, _merge_usrs

    root = OSInfo(root="/dev/sda3", distro="coreos", hostname="h", mountpoints={"/": "/dev/sda3"})
    old = OSInfo(root="/dev/sda2", distro="coreos", product_name="CoreOS 600.0.0",
                 major_version=600, hostname="not-this", mountpoints={"/usr": "/dev/sda2"})
    new = OSInfo(root="/dev/sda1", distro="coreos", product_name="CoreOS 647.0.0",
                 major_version=647, arch="x86_64", mountpoints={"/usr": "/dev/sda1"})
    _merge_usrs([root], [old, new])
    assert (root.product_name, root.major_version, root.arch, root.hostname, root.osinfo,
            root.mountpoints) == ("CoreOS 647.0.0", 647, "x86_64", "h", "coreos647.0",
                                  {"/": "/dev/sda3", "/usr": "/dev/sda1"})


def test_a_linux_root_takes_only_a_usr_its_fstab_mounts() -> None:
    from guestslots.inspection import OSInfo, _merge_usrs

    usr = OSInfo(root="/dev/sdb1", distro="fedora", product_name="Fedora 39",
                 major_version=39, package_format="rpm")
    elsewhere = OSInfo(root="/dev/sda2")  # fstab does not mount /dev/sdb1
    mounting = OSInfo(root="/dev/sda1", mountpoints={"/": "/dev/sda1", "/usr": "/dev/sdb1"})
    other_distro = OSInfo(root="/dev/sdc1", distro="debian", product_name="12",
                          major_version=12, mountpoints={"/usr": "/dev/sdb1"})
    _merge_usrs([elsewhere, mounting, other_distro], [usr])
    assert elsewhere.distro == "unknown"
    assert (mounting.distro, mounting.product_name, mounting.osinfo,
            mounting.package_format) == ("fedora", "Fedora 39", "fedora39", "rpm")
    assert (other_distro.distro, other_distro.major_version) == ("debian", 12)


def test_two_coreos_roots_are_an_error_as_in_libguestfs() -> None:
    import pytest

    from guestslots.errors import GuestslotsError
    from guestslots.inspection import OSInfo, _merge_usrs

    with pytest.raises(GuestslotsError, match="multiple CoreOS root filesystems"):
        _merge_usrs([OSInfo(root="/dev/sda1", distro="coreos"),
                     OSInfo(root="/dev/sdb1", distro="coreos")], [])
