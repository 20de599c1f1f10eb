"""The libguestfs facade on a real appliance: a program written for libguestfs's
binding runs unchanged (``python -m guestslots.guestfs``) and prints what it prints
on libguestfs; a handle's states, hotplug with a label, shutdown and a second
launch, events, and the refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import guestslots.guestfs as guestfs
from guestslots.host.accel import expected_accel
from guestslots.testing import peer
from guestslots.testing import testimages as images

from .test_faults import wait_gone

pytestmark = [
    pytest.mark.integration,
    pytest.mark.single_pass("the facade maps onto the library, the same on both backends"),
]

#: A program as libguestfs's users write them (python/examples, virt-manager's
#: inspection): hashes as lists of pairs, the binding's default.
PROGRAM = textwrap.dedent('''
    import sys
    import guestfs

    g = guestfs.GuestFS()
    g.add_drive_opts(sys.argv[1], readonly=1)      # no format: probed
    g.launch()
    print("devices", g.list_devices(), "partitions", g.list_partitions())
    print("filesystems", g.list_filesystems())
    roots = g.inspect_os()
    print("roots", roots)
    for root in roots:
        print(g.inspect_get_type(root), g.inspect_get_distro(root),
              g.inspect_get_product_name(root), g.inspect_get_major_version(root),
              g.inspect_get_minor_version(root), g.inspect_get_hostname(root),
              g.inspect_get_arch(root), g.inspect_get_package_format(root),
              g.inspect_get_package_management(root))
        mps = g.inspect_get_mountpoints(root)
        for mp, dev in sorted(mps, key=lambda m: len(m[0])):
            g.mount_ro(dev, mp)
        icon = g.inspect_get_icon(root)
        print("icon", len(icon), icon[:4], len(g.inspect_get_icon(root, favicon=0)))
        apps = g.inspect_list_applications2(root)
        print(len(apps), [(a["app2_name"], a["app2_version"], a["app2_release"],
                           a["app2_epoch"]) for a in apps[:3]])
    print("mountpoints", g.mountpoints())
    print("cat", repr(g.cat("/etc/hostname")), g.read_lines("/etc/fstab"))
    print("ls", g.ls("/etc"), g.find("/etc")[:4], g.glob_expand("/etc/host*"))
    st = g.statns("/etc/hostname")
    print("statns", sorted(st), st["st_size"], g.filesize("/etc/hostname"))
    print("statvfs", sorted(g.statvfs("/")))
    print("is", g.is_file("/etc/hostname"), g.is_dir("/etc"), g.exists("/nope"))
    print("vfs", g.vfs_type(roots[0]), repr(g.vfs_label(roots[0])))
    print("head", g.head_n(1, "/etc/fstab"), g.lvs(), g.vgs())
    for call in (lambda: g.cat("/nope"), lambda: g.mkdir("/new")):
        try:
            call()
        except RuntimeError as e:  # (libguestfs names its internal call: download)
            print("error", str(e).endswith(("/nope: No such file or directory",
                                            "/new: Read-only file system")))
    g.umount_all()
    g.shutdown()
    g.close()
''')


def _debian_like(directory: Path) -> Path:
    status = "".join(f"Package: pkg{i}\\nStatus: install ok installed\\nArchitecture: amd64\\n"
                     f"Version: {i % 3}:1.{i}-{i}\\n\\n" for i in range(20))
    status = status.replace("\\n", "\n")
    return images.ext4(directory / "debian.img", {
        "bin/ls": Path("/usr/bin/ls").read_bytes(), "usr/bin/.keep": "",
        "etc/debian_version": "12.4\n", "etc/hostname": "facade\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n", "var/lib/dpkg/status": status,
        "usr/share/pixmaps/debian-logo.png": images.png(48, 48),
    }, size_mib=16, label="root")


def _peer_env() -> dict[str, str]:
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
    if expected_accel(shutil.which("qemu-system-x86_64") or "") != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def test_a_libguestfs_program_runs_unchanged_with_the_same_output(tmp_path: Path) -> None:
    image = _debian_like(tmp_path)
    program = tmp_path / "inspect.py"
    program.write_text(PROGRAM)
    ours = subprocess.run([sys.executable, "-m", "guestslots.guestfs", str(program),
                           str(image)], capture_output=True, text=True, timeout=300, check=False)
    assert ours.returncode == 0, ours.stderr
    assert "roots ['/dev/sda']" in ours.stdout and "cat 'facade\\n'" in ours.stdout
    assert ours.stdout.count("error True") == 2
    assert f"icon {len(images.png(48, 48))} " in ours.stdout
    if peer.available():
        pytest.skip(f"no libguestfs to compare with: {peer.available()}")
    theirs = subprocess.run([peer.SYSTEM_PYTHON, str(program), str(image)],
                            capture_output=True, text=True, timeout=600, check=False,
                            env=_peer_env())
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()


def test_a_handle_s_life_hotplug_by_label_and_a_second_launch(tmp_path: Path) -> None:
    first = images.ext4(tmp_path / "first.img", {"whoami": "first\n"})
    second = images.qcow2(images.ext4(tmp_path / "second.raw", {"whoami": "second\n"}),
                          tmp_path / "second.qcow2")
    events: list[str] = []
    g = guestfs.GuestFS(python_return_dict=True, environment=False, close_on_exit=False)
    g.set_event_callback(lambda ev, h, buf, arr: events.append(guestfs.event_to_string(ev)),
                         guestfs.EVENT_ALL & ~guestfs.EVENT_TRACE)
    g.add_drive(str(first))
    g.add_drive_opts(str(second), readonly=True)  # probed: qcow2
    g.launch()
    assert "launch_done" in events
    assert g.list_devices() == ["/dev/sda", "/dev/sdb"]
    assert (g.get_state(), g.is_ready(), g.is_config()) == (2, 1, 0)
    assert g.get_pid() > 0 and g.nr_devices() == 2 and g.device_index("/dev/sdb") == 1
    assert g.list_filesystems() == {"/dev/sda": "ext4", "/dev/sdb": "ext4"}
    with pytest.raises(RuntimeError, match="^launch: the libguestfs handle has already"):
        g.launch()
    # a read-only drive takes writes, into a throwaway overlay
    g.mount("/dev/sdb", "/")
    g.ln_s("whoami", "/link")
    g.ln_s("/../../../whoami", "/far")
    assert (g.realpath("/link"), g.realpath("/far")) == ("/whoami", "/whoami")
    with pytest.raises(RuntimeError, match="^realpath: "):
        g.realpath("/nope/x")
    assert (g.is_symlink("/link"), g.is_symlink("/whoami"), g.is_chardev("/whoami")) == \
        (1, 0, 0)
    g.write("/scratch", "x")
    assert g.cat("/scratch") == "x"
    # progress events as a file moves
    g.write("/big", os.urandom(3 << 20))
    progress: list[list[int]] = []
    handle = g.set_event_callback(lambda ev, h, buf, arr: progress.append(arr),
                                  guestfs.EVENT_PROGRESS)
    g.download("/big", str(tmp_path / "big"))
    assert progress and progress[-1][2:] == [3 << 20, 3 << 20]
    assert [p[2] for p in progress] == sorted(p[2] for p in progress)
    g.delete_event_callback(handle)
    g.umount_all()
    # hotplug after launch needs a label; remove_drive unplugs it
    third = images.ext4(tmp_path / "third.img", {"whoami": "third\n"})
    with pytest.raises(RuntimeError, match="needs a label"):
        g.add_drive(str(third), format="raw")
    g.add_drive(str(third), format="raw", label="extra")
    assert g.list_devices() == ["/dev/sda", "/dev/sdb", "/dev/sdc"]
    g.mount_ro("/dev/sdc", "/")
    with pytest.raises(RuntimeError, match="^remove_drive: "):
        g.remove_drive("extra")  # mounted
    g.umount_all()
    g.remove_drive("extra")
    assert g.list_devices() == ["/dev/sda", "/dev/sdb"]
    g.shutdown()
    assert "subprocess_quit" in events
    with pytest.raises(RuntimeError, match="call launch before"):
        g.list_devices()
    # drives are forgotten; the handle launches again
    g.add_drive_opts(str(second), format="qcow2", readonly=True)
    g.launch()
    assert g.list_devices() == ["/dev/sda"]
    g.mount_ro("/dev/sda", "/")
    assert g.cat("/whoami") == "second\n"
    assert images.sh("qemu-img", "info", "-U", str(second)).count("backing") == 0
    pid = g.get_pid()
    g.kill_subprocess()  # at once, nothing written back; configuring again
    wait_gone(pid)
    assert (g.is_config(), events.count("subprocess_quit")) == (1, 2)
    g.close()
    assert events.count("close") == 1


def test_refusals_name_the_call(tmp_path: Path) -> None:
    base = images.ext4(tmp_path / "base.img", {"whoami": "base\n"})
    backed = tmp_path / "backed.qcow2"
    images.sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
              str(backed))
    # refused when plugged, at launch (as libguestfs finds a wrong format then)
    for fmt, said in ((None, "backing file"), ("raw", "looks like a qcow2")):
        g = guestfs.GuestFS(environment=False, close_on_exit=False)
        g.add_drive_opts(str(backed), format=fmt)  # None: probed, qcow2
        with pytest.raises(RuntimeError, match=f"^launch: .*{said}"):
            g.launch()
        g.close()
    # a writable drive added twice (libguestfs's launch fails on QEMU's image lock)
    g = guestfs.GuestFS(environment=False, close_on_exit=False)
    g.add_drive_opts(str(base), format="raw")
    g.add_drive_opts(str(base), format="raw")
    with pytest.raises(RuntimeError, match="^launch: .*holds this image writable"):
        g.launch()
    g.close()
    g = guestfs.GuestFS(environment=False, close_on_exit=False)
    g.add_drive_opts(str(base), format="raw", readonly=True)
    g.launch()
    with pytest.raises(RuntimeError, match="^mount_ro: /dev/sdz1: "):
        g.mount_ro("/dev/sdz1", "/")
    g.mount("/dev/sda", "/")
    # libguestfs's daemon words a mount point that is not a directory so
    for mountpoint in ("/whoami", "/nowhere"):
        with pytest.raises(RuntimeError, match=f"^mount_ro: mount: {mountpoint}: mount point "
                                               "is not a directory$"):
            g.mount_ro("/dev/sda", mountpoint)
    with pytest.raises(RuntimeError, match="^upload: .*nowhere"):
        g.upload(str(tmp_path / "nowhere"), "/x")  # a host file that is not there
    with pytest.raises(RuntimeError, match="^download: "):
        g.download("/whoami", str(tmp_path / "no-dir" / "x"))
    g.close()
    with pytest.raises(guestfs.ClosedHandle):
        g.list_devices()


def test_augeas_as_nova_uses_it(tmp_path: Path) -> None:
    """Nova's VFSGuestFS: mount the OS, aug_init, read a user's uid and a group's gid
    through augeas, chown; an edit saved through augeas lands in the guest's file;
    a guest symlink pointing out of its filesystem is not followed out."""
    image = images.ext4(tmp_path / "nova.img", {
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nfred:x:1042:1042::/home/fred:/bin/sh\n",
        "etc/group": "root:x:0:\nfred:x:1043:\n", "etc/hostname": "nova\n",
        "home/fred/.keep": ""}, symlinks={"etc/hosts": "/init"})
    g = guestfs.GuestFS(environment=False, close_on_exit=False)
    g.add_drive_opts(str(image), format="raw")
    g.launch()
    g.mount_options("", "/dev/sda", "/")
    g.aug_init("/", 0)
    uid = int(g.aug_get("/files/etc/passwd/fred/uid"))
    gid = int(g.aug_get("/files/etc/group/fred/gid"))
    g.chown(uid, gid, "/home/fred/.keep")
    assert (g.statns("/home/fred/.keep")["st_uid"], g.statns("/home/fred/.keep")["st_gid"]) \
        == (1042, 1043)
    assert g.aug_match("/files/etc/passwd/*") == ["/files/etc/passwd/root",
                                                  "/files/etc/passwd/fred"]
    assert g.aug_ls("/files/etc/group") == ["/files/etc/group/fred", "/files/etc/group/root"]
    g.aug_set("/files/etc/passwd/fred/shell", "/bin/bash")
    g.aug_save()
    assert g.cat("/etc/passwd").splitlines()[1] == "fred:x:1042:1042::/home/fred:/bin/bash"
    # /etc/hosts -> /init: the appliance's own /init is not read through it
    assert g.aug_match("/files/etc/hosts/*") == []
    with pytest.raises(RuntimeError, match="^aug_get: "):
        g.aug_get("/files/etc/passwd/nobody/uid")
    g.aug_close()
    with pytest.raises(RuntimeError, match="aug_init first"):
        g.aug_get("/files/etc/passwd/fred/uid")
    g.close()


def test_nova_s_file_injection_as_its_fake_specifies_it(tmp_path: Path) -> None:
    """OpenStack Nova's VFSGuestFS, the calls its fakeguestfs.py specifies, in its order:
    a capability launch on /dev/null, the OS found by inspection and its filesystems
    mounted by mount point, augeas, make_path / append_file / replace_file /
    read_file / has_file / set_permissions / set_ownership / get_image_fs, and its
    teardown; a call Nova probes for that is not answered is an AttributeError."""
    root = images.ext4(tmp_path / "root.ext4", {
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nfred:x:105:105::/home/fred:/bin/sh\n",
        "etc/group": "root:x:0:\nusers:x:500:\n", "etc/debian_version": "12.4\n",
        "etc/fstab": "/dev/sda1 / ext4 defaults 0 1\n/dev/sda2 /boot ext4 defaults 0 2\n",
        "bin/ls": Path("/usr/bin/ls").read_bytes(), "usr/bin/.keep": "", "boot/.keep": ""},
        size_mib=16)
    boot = images.ext4(tmp_path / "boot.ext4", {"grub/grub.cfg": "set default=0\n"})
    image = images.partitioned(tmp_path / "nova.img", "dos", root, boot)
    probe = guestfs.GuestFS(python_return_dict=False, close_on_exit=False)
    probe.set_backend_settings(["force_tcg"])
    probe.add_drive("/dev/null")
    probe.launch()  # Nova's capability check
    probe.close()
    g = guestfs.GuestFS(python_return_dict=False, close_on_exit=False)
    assert hasattr(g, "set_backend_settings") and not hasattr(g, "no_such_call")
    g.add_drive_opts(str(image), format="raw", readonly=False)
    g.launch()
    roots = g.inspect_os()
    assert roots == ["/dev/sda1"]
    mounts = sorted(g.inspect_get_mountpoints(roots[0]), key=lambda m: m[0])
    assert mounts == [("/", "/dev/sda1"), ("/boot", "/dev/sda2")]
    for mountpoint, device in mounts:
        g.mount_options("", device, mountpoint)
    g.aug_init("/", 0)
    g.mkdir_p("/root/.ssh")                                         # make_path
    g.write_append("/root/.ssh/authorized_keys", "ssh-rsa AAAA one\n")  # append_file
    g.write_append("/root/.ssh/authorized_keys", "ssh-rsa BBBB two\n")
    g.write("/etc/hostname", "injected\n")                          # replace_file
    assert g.read_file("/root/.ssh/authorized_keys") == \
        b"ssh-rsa AAAA one\nssh-rsa BBBB two\n"                     # read_file
    assert g.stat("/etc/hostname")["size"] == 9                     # has_file
    with pytest.raises(RuntimeError, match="^stat: /etc/nowhere: No such file"):
        g.stat("/etc/nowhere")
    g.chmod(0o700, "/root/.ssh")                                    # set_permissions
    uid = int(g.aug_get("/files/etc/passwd/fred/uid"))              # set_ownership
    gid = int(g.aug_get("/files/etc/group/users/gid"))
    g.chown(uid, gid, "/root/.ssh/authorized_keys")
    st = g.stat("/root/.ssh/authorized_keys")
    assert (st["uid"], st["gid"], oct(g.stat("/root/.ssh")["mode"])) == (105, 500, "0o40700")
    assert g.cat("/boot/grub/grub.cfg") == "set default=0\n"       # /boot mounted there
    assert g.vfs_type("/dev/sda1") == "ext4"                        # get_image_fs
    g.aug_close()                                                   # teardown
    g.shutdown()
    g.close()
    check = guestfs.GuestFS(close_on_exit=False)
    check.add_drive_opts(str(image), format="raw", readonly=True)
    check.launch()
    check.mount_ro("/dev/sda1", "/")
    assert check.cat("/etc/hostname") == "injected\n"  # written back by shutdown
    check.close()
