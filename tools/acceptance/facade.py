#!/usr/bin/env python3
"""Acceptance check, kept outside the suite: programs written for libguestfs's Python
binding run unchanged on guestslots' facade (issue 30), side by side with libguestfs.

Runs libguestfs's own examples as Debian ships them (python3-guestfs:
``create_disk.py``, then ``inspect_vm.py`` on the disk it made, on a Debian-like
image, on libguestfs's phony guests and on a real Debian 12), and a Nova-like
program (file injection with augeas), each once through ``python -m
guestslots.guestfs`` and once through libguestfs (direct backend, TCG forced where
KVM does not run), in separate directories; compares what each printed, the calls
their traces show, and the disks they made.  Prints ok / FAILED per program with
both wall times; the exit status is the number of failures.

The phony guests are libguestfs 1.48's own (``test-data/phony-guests``: Debian,
Ubuntu, Arch Linux, CoreOS, Fedora on partitions and on btrfs subvolumes), made by
its own scripts with guestfish from Debian's libguestfs source package; the real
Debian 12 is debootstrapped (minbase) from the machine's Debian mirror.  Both are
fetched once (``tools/debfetch``, apt's own tools; nothing is installed) and kept in
``~/.cache/guestslots/acceptance``.

Run ``.venv/bin/python tools/acceptance/facade.py`` as root (needs ./tools/setup:
the system's python3-guestfs; debootstrap and libguestfs-perl are installed if
missing).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from guestslots.testing import peer
from guestslots.testing import testimages as images
from guestslots.testing.windowsimage import windows_image

sys.path.insert(0, str(Path(__file__).parent))
import guests

EXAMPLES = Path("/usr/share/doc/python3-guestfs/examples")

#: What Nova's VFSGuestFS does to inject a file and set its owner.
NOVA = textwrap.dedent('''
    import sys
    import guestfs

    g = guestfs.GuestFS()
    g.add_drive_opts(sys.argv[1], format="raw")
    g.launch()
    roots = g.inspect_os()
    mounts = g.inspect_get_mountpoints(roots[0])
    mounts.sort(key=lambda mount: mount[1])
    for mountpoint, device in mounts:
        g.mount_options("", device, mountpoint)
    g.aug_init("/", 0)
    g.mkdir_p("/root/.ssh")
    g.write("/root/.ssh/authorized_keys", "ssh-ed25519 AAAA test\\n")
    g.write_append("/root/.ssh/authorized_keys", "ssh-ed25519 BBBB more\\n")
    g.chmod(0o700, "/root/.ssh")
    uid = int(g.aug_get("/files/etc/passwd/fred/uid"))
    gid = int(g.aug_get("/files/etc/group/fred/gid"))
    g.chown(uid, gid, "/root/.ssh/authorized_keys")
    st = g.stat("/root/.ssh/authorized_keys")
    print(st["uid"], st["gid"], oct(g.stat("/root/.ssh")["mode"]))
    print(g.read_file("/root/.ssh/authorized_keys"))
    g.aug_close()
    g.shutdown()
    g.close()
''')

#: What virt-manager's inspection asks of a domain's disks (its steps, in its order:
#: the OS's facts, its filesystems mounted read-only by mount point length, its icon,
#: high quality first, and its applications with libguestfs's application2 fields).
VIRT_MANAGER = textwrap.dedent('''
    import sys
    import guestfs

    g = guestfs.GuestFS(close_on_exit=False, python_return_dict=True)
    for disk in sys.argv[1:]:
        g.add_drive_opts(disk, readonly=1)
    g.launch()
    roots = g.inspect_os()
    if not roots:
        sys.exit("no operating systems found")
    root = roots[0]
    for ask in ("type", "distro", "major_version", "minor_version", "hostname",
                "product_name", "product_variant", "package_format"):
        print(ask, repr(getattr(g, "inspect_get_" + ask)(root)))
    for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(),
                                     key=lambda item: len(item[0])):
        try:
            g.mount_ro(device, mountpoint)
        except RuntimeError as e:
            print("mount_ro", mountpoint, "failed:", e)
    icon = g.inspect_get_icon(root, favicon=0, highquality=1) or \
        g.inspect_get_icon(root, favicon=0, highquality=0)
    print("icon bytes", len(icon))
    apps = g.inspect_list_applications2(root)
    print("applications", len(apps))
    for app in apps:
        print(" ", app["app2_name"], app["app2_epoch"], app["app2_version"],
              app["app2_release"], app["app2_arch"], repr(app["app2_summary"][:40]))
    g.shutdown()
    g.close()
''')


def run(ours: bool, program: Path, args: list[str], cwd: Path
        ) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = ([sys.executable, "-m", "guestslots.guestfs"] if ours else [peer.SYSTEM_PYTHON])
    started = time.perf_counter()
    done = subprocess.run([*argv, str(program), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, check=False,
                          env=None if ours else guests.libguestfs_env())
    return time.perf_counter() - started, done


def traced_calls(stderr: str) -> list[str]:
    """The calls a program made, in order, as its trace shows them: the top-level
    ones (libguestfs also traces the calls it makes inside a call, such as
    ``launch``'s ``get_tmpdir``)."""
    calls, depth = [], 0
    for line in stderr.splitlines():
        m = re.match(r"libguestfs: trace: ([a-z0-9_]+)( = .*)?$|libguestfs: trace: "
                     r"([a-z0-9_]+) ", line)
        if not m:
            continue
        if m.group(2):  # NAME = RESULT: a call ends
            depth -= 1
            continue
        if depth == 0:
            calls.append(m.group(1) or m.group(3))
        depth += 1
    return calls


def debian_like(directory: Path) -> Path:
    return images.ext4(directory / "debian.img", {
        "bin/ls": Path("/usr/bin/ls").read_bytes(), "usr/bin/.keep": "",
        "etc/debian_version": "12.4\n", "etc/hostname": "acceptance\n",
        "etc/issue.net": "Debian GNU/Linux 12\nline two\nline three\nline four\n",
        "etc/fstab": "/dev/sda / ext4 defaults 0 1\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nfred:x:1042:1042::/home/fred:/bin/sh\n",
        "etc/group": "root:x:0:\nfred:x:1043:\n", "root/.keep": "",
    }, size_mib=16)


def main() -> int:
    if peer.available():
        print(f"libguestfs is needed to compare with: {peer.available()}")
        return 1
    failures = 0
    with tempfile.TemporaryDirectory(prefix="guestslots-facade-") as tmp:
        work = Path(tmp)
        ours_dir, theirs_dir = work / "ours", work / "theirs"
        ours_dir.mkdir()
        theirs_dir.mkdir()
        for side in (ours_dir, theirs_dir):
            windows_image(side / "windows.img")
        nova = work / "nova.py"
        nova.write_text(NOVA)
        virt_manager = work / "virt_manager.py"
        virt_manager.write_text(VIRT_MANAGER)
        cases: list[tuple[str, Path, list[str] | None]] = [
            ("create_disk.py", EXAMPLES / "create_disk.py", []),
            ("inspect_vm.py on the disk create_disk.py made", EXAMPLES / "inspect_vm.py",
             ["disk.img"]),
            ("inspect_vm.py on a Debian-like image", EXAMPLES / "inspect_vm.py", None),
            ("inspect_vm.py on libguestfs's phony Windows", EXAMPLES / "inspect_vm.py",
             ["windows.img"]),
            *((f"inspect_vm.py on libguestfs's phony {name}", EXAMPLES / "inspect_vm.py",
               [str(path)]) for name, path in guests.phony_guests().items()),
            ("inspect_vm.py on a real Debian 12 (debootstrap)", EXAMPLES / "inspect_vm.py",
             [str(guests.debian12())]),
            *((f"virt-manager-like inspection of {name}", virt_manager, [str(path)])
              for name, path in [*guests.phony_guests().items(),
                                 ("a real Debian 12", guests.debian12())]),
            ("Nova-like file injection (augeas)", nova, None),
        ]
        for label, program, args in cases:
            per_side = []
            for ours, cwd in ((True, ours_dir), (False, theirs_dir)):
                argv = args if args is not None else [str(debian_like(cwd))]
                per_side.append(run(ours, program, argv, cwd))
            (ours_took, ours_done), (theirs_took, theirs_done) = per_side
            same = (ours_done.returncode, ours_done.stdout) == \
                (theirs_done.returncode, theirs_done.stdout)
            same_calls = traced_calls(ours_done.stderr) == traced_calls(theirs_done.stderr)
            ok = same and same_calls
            failures += not ok
            print(f"{'ok    ' if ok else 'FAILED'} {label}: guestslots {ours_took:.1f} s, "
                  f"libguestfs {theirs_took:.1f} s ({theirs_took / ours_took:.0f}x)")
            if not same:
                print(textwrap.indent(f"ours ({ours_done.returncode}):\n{ours_done.stdout}"
                                      f"{ours_done.stderr[-2000:]}\ntheirs "
                                      f"({theirs_done.returncode}):\n{theirs_done.stdout}"
                                      f"{theirs_done.stderr[-2000:]}", "    "))
            elif not same_calls:
                print(f"    traced calls: ours {traced_calls(ours_done.stderr)}\n"
                      f"    theirs {traced_calls(theirs_done.stderr)}")
        # the disks create_disk.py made hold the same files
        listing = []
        for side in (ours_dir, theirs_dir):
            done = subprocess.run([sys.executable, "-m", "guestslots.cli", "ls",
                                   str(side / "disk.img"), "/"],
                                  capture_output=True, text=True, check=False)
            listing.append(done.stdout)
        ok = listing[0] == listing[1] and "hello" in listing[0]
        failures += not ok
        print(f"{'ok    ' if ok else 'FAILED'} the two disks hold the same files: "
              f"{listing[0].split()}")
    print(f"\n{failures} failed" if failures else "\nall ok")
    return failures


if __name__ == "__main__":
    sys.exit(main())
