"""Reading guestslots's FUSE mounts out of mountinfo."""

from __future__ import annotations

from guestslots.fuse.mountinfo import Mount, parse

TEXT = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "95 22 0:52 / /tmp/my\\040mnt rw,nosuid,nodev,relatime shared:50 - fuse.guestslots "
    "guestslots:4242 ro,user_id=0,group_id=0,default_permissions\n"
    "96 22 0:53 / /mnt/other rw - fuse.sshfs host:/ rw\n"
    "97 22 0:54 / /mnt/odd rw - fuse.guestslots guestslots:x rw\n"
    "garbage\n"
)


def test_mounts_are_parsed_with_escapes() -> None:
    mounts = parse(TEXT)
    assert [m.mountpoint for m in mounts] == ["/", "/tmp/my mnt", "/mnt/other", "/mnt/odd"]
    assert mounts[1] == Mount("/tmp/my mnt", "fuse.guestslots", "guestslots:4242")


def test_only_guestslots_mounts_name_a_server() -> None:
    pids = [m.server_pid for m in parse(TEXT)]
    assert pids == [None, 4242, None, None]
