"""The peer: libguestfs, through Debian's python3-guestfs, for benchmarks and conformance.

Run as ``/usr/bin/python3 peer.py SPEC.json`` (the system Python has the
``guestfs`` module; the project's virtual environment need not).  libguestfs
1.48 cannot hotplug, so a benchmark scan launches once per image.  The direct
backend is used, with TCG forced when guestslots found that KVM does not
really run (libguestfs left to choose picks KVM here and QEMU aborts).
This file must run on the system Python alone: it imports nothing from
guestslots.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"
NEEDS = "Debian's python3-guestfs (apt-get install python3-guestfs)"


def available() -> str:
    """Return "" if libguestfs can be measured here, else what is missing."""
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", "import guestfs"], capture_output=True,
                              check=False)
    except FileNotFoundError:
        return f"no {SYSTEM_PYTHON}"
    return "" if proc.returncode == 0 else f"libguestfs is not installed: needs {NEEDS}"


def _ask(what: str, spec: dict[str, Any], failed: str) -> Any:
    """Run this file on the system Python to do *what* ("measure", "describe", "build")
    with *spec*; return what it printed, parsed as JSON."""
    proc = subprocess.run([SYSTEM_PYTHON, __file__, json.dumps({what: spec})],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"libguestfs {failed}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def run(spec: dict[str, Any]) -> dict[str, list[float]]:
    """Measure libguestfs as *spec* says (see :func:`_measure`); return the timings."""
    result: dict[str, list[float]] = _ask("measure", spec, "measurement failed")
    return result


def _handle(force_tcg: bool) -> Any:
    import guestfs  # type: ignore[import-not-found]  # only in the system Python

    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")
    if force_tcg:
        g.set_backend_setting("force_tcg", "1")
    return g


def describe(spec: dict[str, Any]) -> dict[str, Any]:
    """What libguestfs says of the images in *spec* ({"force_tcg", "drives": [[path, fmt]]}):
    list_devices, list_partitions, list_filesystems, list_md_devices, pvs, vgs, lvs, and
    /whoami of each mountable filesystem."""
    result: dict[str, Any] = _ask("describe", spec, "failed")
    return result


def _describe(spec: dict[str, Any]) -> dict[str, Any]:
    g = _handle(spec["force_tcg"])
    for path, fmt in spec["drives"]:
        g.add_drive_opts(path, format=fmt, readonly=1)
    g.launch()
    found = g.list_filesystems()
    names = btrfsvols_translated(found)
    whoami = {}
    for dev, fstype in found.items():
        if fstype in ("unknown", "swap"):
            continue
        # Its daemon translates a btrfsvol's device from libguestfs's names to the
        # kernel's on the way in (parse_btrfsvol), so the kernel name it listed may
        # reach another disk, or its own root ("expecting a btrfs volume"): mount by
        # libguestfs's name.
        name = names.get(dev, dev)
        g.mount_ro(name, "/")
        whoami[name] = g.cat("/whoami") if g.is_file("/whoami") else None
        g.umount_all()
    filesystems = {names.get(dev, dev): fstype for dev, fstype in found.items()}
    out = {"list_devices": g.list_devices(), "list_partitions": g.list_partitions(),
           "list_filesystems": filesystems, "whoami": whoami,
           "list_md_devices": g.list_md_devices(), "pvs": g.pvs(), "vgs": g.vgs(),
           "lvs": g.lvs()}
    g.shutdown()
    g.close()
    return out


def btrfsvols_translated(filesystems: dict[str, str]) -> dict[str, str]:
    """Map each ``btrfsvol:`` name in libguestfs's *filesystems* (list_filesystems, in
    its order) that names a device by the appliance kernel's name to the name libguestfs
    gives that device.

    libguestfs 1.48's daemon translates the kernel's device names back to its own
    (``/dev/sdX`` in the order drives were added) with a prefix match, which a
    ``btrfsvol:/dev/sdX1/sub`` string never matches: when the kernel probed the disks in
    another order, the subvolumes name another disk than their filesystem does.  Its
    list_filesystems puts each btrfs device just before its subvolumes, which is what
    this relies on."""
    names: dict[str, str] = {}
    device = None
    for name in filesystems:
        if not name.startswith("btrfsvol:"):
            device = name if filesystems[name] == "btrfs" else None
            continue
        if device is None or name.startswith(f"btrfsvol:{device}/"):
            continue
        kernel_name = re.fullmatch(r"btrfsvol:/dev/[a-z]+[0-9]*/(.+)", name)
        if kernel_name:
            names[name] = f"btrfsvol:{device}/{kernel_name.group(1)}"
    return names


def calls(spec: dict[str, Any]) -> list[Any]:
    """Run guest calls through libguestfs on one image, as a guestfish script would:
    *spec* {"force_tcg", "image", "readonly", "calls": [[name, arg, ...], ...]} (the
    filesystem is the whole image, mounted on / unless "mount" is false; "more" images
    are /dev/sdb, /dev/sdc...; a call's last
    argument, if a dict, is its keyword arguments); each result is ``["ok", value]``
    (bytes as latin-1 text) or ``["error", message]``; ``["snapshot", dir]`` is a
    call of its own: see :func:`snapshot_of`."""
    result: list[Any] = _ask("calls", spec, "calls failed")
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def snapshot_of(g: Any, top: str) -> dict[str, list[Any]]:
    """Every path under *top* with [mode, size (regular files), uid, gid, link target or
    sha256]: what two tools' results are compared by (times left out).  *g* is a
    libguestfs handle or an Appliance: the calls are the same."""
    out: dict[str, list[Any]] = {}
    for rel in g.find(top):
        path = top.rstrip("/") + "/" + rel
        stat_of = getattr(g, "lstatns", None) or g.lstat  # libguestfs's, or ours
        st = {str(k).removeprefix("st_"): int(v) for k, v in stat_of(path).items()}
        mode = st["mode"]
        kind = mode & 0o170000
        if kind == 0o120000:
            detail: Any = g.readlink(path)
        elif kind == 0o100000:
            detail = g.checksum("sha256", path)
        else:
            detail = None
        size = st["size"] if kind == 0o100000 else None
        uid, gid = st["uid"], st["gid"]
        out[rel] = [mode, size, uid, gid, detail]
    return out


def _calls(spec: dict[str, Any]) -> list[Any]:
    g = _handle(spec["force_tcg"])
    for image in [spec["image"], *spec.get("more", [])]:
        g.add_drive_opts(image, format="raw", readonly=1 if spec["readonly"] else 0)
    g.launch()
    if spec.get("mount", True):
        (g.mount_ro if spec["readonly"] else g.mount)("/dev/sda", "/")
    out: list[Any] = []
    for name, *args in spec["calls"]:
        kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
        try:
            if name == "snapshot":
                value: Any = snapshot_of(g, args[0])
            else:
                value = getattr(g, name)(*args, **kwargs)
            out.append(["ok", _plain(value)])
        except RuntimeError as e:
            out.append(["error", str(e)])
    g.umount_all()
    g.shutdown()
    g.close()
    return out


#: The layouts :func:`build_layouts` makes: name -> (image files, size in MiB of each).
LAYOUTS: dict[str, tuple[list[str], int]] = {
    "lvm-root": (["lvm-root.img"], 200),
    "vg-span": (["vg-span-1.img", "vg-span-2.img"], 40),
    "md-raid1": (["md-raid1-a.img", "md-raid1-b.img"], 40),
    "btrfs-subvols": (["btrfs-subvols.img"], 256),
}


def build_layouts(directory: str | os.PathLike[str], force_tcg: bool) -> dict[str, list[str]]:
    """Make the LVM and md RAID layouts with libguestfs, in one launch; return name -> images.

    - ``lvm-root``: MBR; 1 is ext4 ``/boot``; 2 is the PV of VG ``vgroot`` holding LV
      ``root`` (ext4: os-release, hostname, an fstab naming the LVs) and ``data`` (vfat).
    - ``vg-span``: two whole-disk PVs of VG ``vgspan``; LV ``big`` (ext4) spans both.
    - ``md-raid1``: partition 1 of each disk (type fd) is a member of RAID1 array
      ``md0``, which holds an ext4.
    - ``btrfs-subvols``: MBR; partition 1 is a btrfs with subvolumes ``root`` (an OS
      whose fstab mounts ``subvol=root`` on / and ``subvol=home`` on /home) and
      ``home``, as Fedora lays them out.

    Every filesystem has ``/whoami`` naming it.
    """
    out = {name: [os.path.join(directory, f) for f in files]
           for name, (files, _size) in LAYOUTS.items()}
    for files, size in LAYOUTS.values():
        for f in files:
            with open(os.path.join(directory, f), "wb") as fh:
                fh.truncate(size * 1024 * 1024)
    _ask("build", {"force_tcg": force_tcg, "layouts": out}, "failed to build the layouts")
    return out


def _build(spec: dict[str, Any]) -> None:
    g = _handle(spec["force_tcg"])
    layouts = spec["layouts"]
    order = [path for name in LAYOUTS for path in layouts[name]]
    for path in order:
        g.add_drive_opts(path, format="raw", readonly=0)
    g.launch()
    dev = dict(zip(order, g.list_devices(), strict=True))

    def whoami(device: str, text: str, files: dict[str, str] | None = None) -> None:
        g.mount(device, "/")
        g.write("/whoami", text + "\n")
        for name, content in (files or {}).items():
            g.mkdir_p(os.path.dirname(name))
            g.write(name, content)
        g.umount_all()

    (root_disk,) = (dev[p] for p in layouts["lvm-root"])
    g.part_init(root_disk, "mbr")
    g.part_add(root_disk, "p", 2048, 2048 + 64 * 2048 - 1)
    g.part_add(root_disk, "p", 2048 + 64 * 2048, -2048)
    g.part_set_mbr_id(root_disk, 2, 0x8E)
    g.mkfs("ext4", root_disk + "1", label="boot")
    g.pvcreate(root_disk + "2")
    g.vgcreate("vgroot", [root_disk + "2"])
    g.lvcreate("root", "vgroot", 64)
    g.lvcreate("data", "vgroot", 32)
    g.mkfs("ext4", "/dev/vgroot/root", label="root")
    g.mkfs("vfat", "/dev/vgroot/data")
    whoami(root_disk + "1", "lvm-root-boot")
    whoami("/dev/vgroot/root", "lvm-root-root", {
        "/etc/os-release": 'NAME="Testix"\nVERSION_ID="5.0"\nID=testix\n'
                           'PRETTY_NAME="Testix 5.0 (on LVM)"\n',
        "/etc/hostname": "lvmhost\n",
        "/etc/fstab": "/dev/mapper/vgroot-root / ext4 defaults 0 1\n"
                      "LABEL=boot /boot ext4 defaults 0 2\n"
                      "/dev/vgroot/data /data vfat defaults 0 0\n",
        "/boot/.keep": "", "/data/.keep": "",
    })
    whoami("/dev/vgroot/data", "lvm-root-data")

    span = [dev[p] for p in layouts["vg-span"]]
    for d in span:
        g.pvcreate(d)
    g.vgcreate("vgspan", span)
    g.lvcreate_free("big", "vgspan", 100)
    g.mkfs("ext4", "/dev/vgspan/big")
    whoami("/dev/vgspan/big", "vg-span-big")

    members = []
    for d in (dev[p] for p in layouts["md-raid1"]):
        g.part_disk(d, "mbr")
        g.part_set_mbr_id(d, 1, 0xFD)
        members.append(d + "1")
    g.md_create("md0", members, level="raid1")
    g.mkfs("ext4", "/dev/md/md0")
    whoami("/dev/md/md0", "md-raid1")

    (btr,) = (dev[p] for p in layouts["btrfs-subvols"])
    g.part_disk(btr, "mbr")
    g.mkfs("btrfs", btr + "1")
    uuid = g.vfs_uuid(btr + "1")
    g.mount(btr + "1", "/")
    g.btrfs_subvolume_create("/root")
    g.btrfs_subvolume_create("/home")
    g.write("/whoami", "btrfs-top\n")
    g.write("/home/whoami", "btrfs-home\n")
    g.mkdir_p("/root/etc")
    g.mkdir("/root/home")
    g.write("/root/whoami", "btrfs-root\n")
    g.write("/root/etc/os-release", 'NAME="Testix"\nVERSION_ID="6.0"\nID=testix\n'
                                    'PRETTY_NAME="Testix 6.0 (on btrfs)"\n')
    g.write("/root/etc/fstab", f"UUID={uuid} / btrfs subvol=root,compress=zstd:1 0 0\n"
                               f"UUID={uuid} /home btrfs subvol=home 0 0\n")
    g.umount_all()
    g.sync()
    g.shutdown()
    g.close()


def _measure(spec: dict[str, Any]) -> dict[str, list[float]]:
    """spec: {"force_tcg": bool, "launches": N, "launch_image": [path, fmt],
    "scan": [[path, fmt, fs_device, whoami], ...], "network": bool (optional: the
    launches with libguestfs's network)}; every figure in seconds."""
    def handle() -> Any:
        return _handle(spec["force_tcg"])

    out: dict[str, list[float]] = {"launch": [], "scan": []}
    path, fmt = spec["launch_image"]
    for _ in range(spec["launches"]):
        g = handle()
        g.add_drive_opts(path, format=fmt, readonly=1)
        if spec.get("network"):
            g.set_network(True)
        t = time.perf_counter()
        g.launch()
        g.list_devices()  # the first answered call
        out["launch"].append(time.perf_counter() - t)
        g.shutdown()
        g.close()
    for path, fmt, fs_device, who in spec["scan"]:
        t = time.perf_counter()
        g = handle()
        g.add_drive_opts(path, format=fmt, readonly=1)
        g.launch()
        assert fs_device in g.list_filesystems()
        g.mount_ro(fs_device, "/")
        assert g.cat("/whoami").strip() == who
        g.umount_all()
        g.shutdown()
        g.close()
        out["scan"].append(time.perf_counter() - t)
    return out


if __name__ == "__main__":
    os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
    request = json.loads(sys.argv[1])
    if "build" in request:
        _build(request["build"])
        print("null")
    elif "calls" in request:
        print(json.dumps(_calls(request["calls"])))
    elif "describe" in request:
        print(json.dumps(_describe(request["describe"])))
    else:
        print(json.dumps(_measure(request["measure"])))
