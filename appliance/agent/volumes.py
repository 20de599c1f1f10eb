"""LVM and md RAID on the slots: assembled and activated on hotplug, listed, torn
down for unplug (the host's ``guest/volumes`` pairs with this).  LVM and mdadm are the
processes the agent starts, and only for a disk holding a PV or a RAID member, or for an
LVM or md call; btrfs-progs run once per attached btrfs, to list its subvolumes."""

from __future__ import annotations

import errno
import os
import re

from .blockdev import (
    _sysfs_list,
    active_lvs,
    canonical,
    dashed_uuid,
    dm_name,
    holders,
    lvm_uuid,
    md_running,
    partitions_of,
    resolve_device,
    running_arrays,
    slaves,
    stacked_on,
)
from .common import (
    CONTAINER_TYPES,
    DMSETUP,
    LVM,
    MDADM,
    MDADM_CONF,
    Fail,
    split_dm_name,
    tool,
)
from .mounts import (
    guest_mounts,
)
from .state import AgentBase


def lvm_report(command: str, fields: str, *args: str) -> list[dict[str, str]]:
    import json

    out = json.loads(tool(LVM, command, "--reportformat", "json", "-o", fields, *args))
    rows: list[dict[str, str]] = []
    for report in out.get("report", []):
        for kind in ("pv", "vg", "lv"):
            rows.extend(report.get(kind, []))
    return rows


class VolumeCalls(AgentBase):
    """LVM and md calls, and the scans and tear-downs hotplug and unplug need."""

    def scan_volumes(self, disk: str, activate: bool) -> dict[str, list[str]]:
        """After a hotplug: assemble the md arrays whose members are now all present,
        and (with *activate*) activate the complete volume groups that have a PV on
        *disk* or on a new array.  Runs nothing unless a PV or member is there."""
        names = partitions_of(disk) or [disk]
        kinds = {
            n: self.blkid.probe(f"/dev/{n}", only=CONTAINER_TYPES).get("TYPE", "")
            for n in names
        }
        result: dict[str, list[str]] = {
            "arrays": [], "activated": [], "incomplete": [], "warnings": []}
        pvs = [n for n, t in kinds.items() if t == "LVM2_member"]
        members = [n for n, t in kinds.items() if t == "linux_raid_member"]
        if members:
            before = set(running_arrays())
            for n in members:
                try:
                    tool(MDADM, "--incremental", f"--config={MDADM_CONF}", f"/dev/{n}")
                except Fail as e:
                    result["warnings"].append(f"/dev/{n}: {e}")
            for md in running_arrays():
                if md not in before:
                    result["arrays"].append(f"/dev/{md}")
                    if self.blkid.probe(f"/dev/{md}", only=CONTAINER_TYPES).get("TYPE") == \
                            "LVM2_member":
                        pvs.append(md)
        if pvs and activate:
            try:
                found = self.activate_vgs([f"/dev/{n}" for n in pvs])
            except Fail as e:
                found = {"warnings": [f"volume groups were not activated: {e}"]}
            for key, values in found.items():
                result[key].extend(values)
        return result

    def activate_vgs(self, pv_paths: list[str]) -> dict[str, list[str]]:
        """Activate every complete VG with a PV among *pv_paths*, in one LVM run: the
        VGs activated, those still incomplete, and warnings.  A second run (a report)
        only explains PVs that ended up with nothing active on them."""
        before = {api for api, _ in active_lvs()}
        warnings = []
        select = " || ".join(f"pv_name={p}" for p in pv_paths)
        try:
            tool(LVM, "vgchange", "-ay", "--select", f"({select}) && vg_missing_pv_count=0")
        except Fail as e:
            warnings.append(f"volume groups were not activated: {e}")
        activated = {api.split("/")[2] for api, _ in active_lvs() if api not in before}
        idle = [p for p in pv_paths if not holders(p.removeprefix("/dev/"))]
        incomplete: set[str] = set()
        if idle:
            for row in lvm_report("pvs", "pv_name,vg_name,vg_missing_pv_count"):
                if row.get("pv_name") in idle and row.get("vg_name") and \
                        int(row.get("vg_missing_pv_count") or 0):
                    incomplete.add(row["vg_name"])
        return {"activated": sorted(activated), "incomplete": sorted(incomplete),
                "warnings": warnings}

    def call_pvs(self) -> list[str]:
        """The physical volumes on the slots (kernel names: the host sorts its own)."""
        return [r["pv_name"] for r in lvm_report("pvs", "pv_name") if r.get("pv_name")]

    def call_vgs(self) -> list[str]:
        """The volume groups on the slots, sorted."""
        return sorted({r["vg_name"] for r in lvm_report("vgs", "vg_name") if r.get("vg_name")})

    def call_lvs(self) -> list[str]:
        """The logical volumes a user sees, as /dev/VG/LV, active or not, sorted."""
        rows = lvm_report(
            "lvs", "vg_name,lv_name", "-S", "lv_role=public && lv_skip_activation!=yes"
        )
        return sorted(f"/dev/{r['vg_name']}/{r['lv_name']}" for r in rows)

    def call_vg_activate(self, activate: bool, volgroups: list[str]) -> None:
        """Activate or deactivate the named volume groups (all of them when empty)."""
        for vg in volgroups:
            if not re.fullmatch(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*", str(vg)):
                raise Fail(f"{vg!r}: not a volume group name", errno.EINVAL)
        if not activate:
            mounted = {name for _api, _src, name in guest_mounts()}
            for api, name in active_lvs():
                vg = api.split("/")[2]
                if (not volgroups or vg in volgroups) and name in mounted:
                    raise Fail(f"{api} is mounted: unmount it first", errno.EBUSY)
        tool(LVM, "vgchange", "-ay" if activate else "-an", *volgroups)

    def call_list_dm_devices(self) -> list[str]:
        """Every device-mapper node in /dev/mapper (LVs included), sorted."""
        return [f"/dev/mapper/{n}" for n in _sysfs_list("/dev/mapper") if n != "control"]

    def call_list_md_devices(self) -> list[str]:
        """The running md arrays built on the slots."""
        return [f"/dev/{md}" for md in running_arrays()]

    def call_md_detail(self, md: str) -> dict[str, str]:
        """What mdadm says of an array (level, devices, metadata, uuid, name...)."""
        name = resolve_device(md)
        if not name.startswith("md"):
            raise Fail(f"{md}: not an md array", errno.EINVAL)
        out: dict[str, str] = {}
        per_member: dict[str, dict[str, str]] = {}
        for line in tool(MDADM, "-D", "--export", f"/dev/{name}").splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key = key.removeprefix("MD_").lower()
            m = re.fullmatch(r"device_(.+)_(role|dev)", key)
            if m is None:
                out[key] = value
            else:  # mdadm's per-member keys embed kernel names: give device names instead
                per_member.setdefault(m.group(1), {})[m.group(2)] = value
        def role(member: dict[str, str]) -> int:  # active roles first, then spares...
            return int(member["role"]) if member.get("role", "").isdigit() else 1 << 30

        out["members"] = " ".join(
            m["dev"] for m in sorted(per_member.values(), key=role) if "dev" in m)
        return out

    def users_of(self, disk: str) -> list[str]:
        """Why *disk* cannot go now: mounts on it or on what is stacked on it, running
        arrays it is a member of, active volume groups it holds a PV of."""
        names = [disk, *partitions_of(disk)]
        stack = stacked_on(names)
        users = [
            f"{src} is mounted on {mp}"
            for mp, src, name in guest_mounts()
            if name in names or name in stack
        ]
        for n in names:
            seen_vgs: set[str] = set()
            for h in holders(n):
                if h.startswith("md"):
                    if md_running(h):
                        users.append(f"/dev/{n} is a member of running RAID array /dev/{h}")
                    continue
                uuid = lvm_uuid(h)
                if uuid is None:
                    users.append(f"/dev/{n} is held by {canonical(h)}")
                    continue
                if uuid[4:36] in seen_vgs:
                    continue
                seen_vgs.add(uuid[4:36])
                lvs = [api for api, lv in active_lvs() if (lvm_uuid(lv) or "")[4:36] == uuid[4:36]]
                vg = split_dm_name(dm_name(h))[0]
                users.append(
                    f"/dev/{n} is a physical volume of active volume group {vg} "
                    f"({', '.join(lvs)})"
                )
        return users

    def teardown_stack(self, names: list[str]) -> None:
        """Unmount and deactivate everything stacked on *names*: whole volume groups
        (their LVs elsewhere too), md arrays, other dm devices; topmost first."""
        stack = stacked_on(names)
        vg_uuids = {u[4:36] for u in (lvm_uuid(d) for d in stack) if u}
        whole_vgs = [
            n for n in _sysfs_list("/sys/block")
            if n.startswith("dm-") and (lvm_uuid(n) or "")[4:36] in vg_uuids
        ]
        victims = set(names) | set(stack) | set(whole_vgs) | set(stacked_on(whole_vgs))
        ours = [mp for mp, _src, name in guest_mounts() if name in victims]
        doomed = [
            mp for mp, _src, _name in guest_mounts()
            if any(mp == o or mp.startswith(o.rstrip("/") + "/") for o in ours)
        ]
        for mp in reversed(doomed):  # deepest first
            self.unmount(mp)
        sequence: list[str] = []
        for dev in stacked_on(whole_vgs) + whole_vgs + stack:
            if dev not in sequence:
                sequence.append(dev)
        for dev in sequence:
            if not os.path.exists(f"/sys/class/block/{dev}"):
                continue  # went with its volume group
            uuid = lvm_uuid(dev)
            if uuid is not None:
                tool(LVM, "vgchange", "-an", "--select", f"vg_uuid={dashed_uuid(uuid[4:36])}")
            elif dev.startswith("dm-"):
                tool(DMSETUP, "remove", dm_name(dev))
            elif dev.startswith("md"):
                tool(MDADM, "--stop", f"/dev/{dev}")

    def release_inactive_arrays(self, names: list[str]) -> None:
        """Take *names* out of md arrays that are not running (assembled partly)."""
        for n in names:
            for h in holders(n):
                if h.startswith("md") and not md_running(h):
                    with open(f"/sys/block/{h}/md/dev-{n}/state", "w") as f:
                        f.write("remove")
                    if not slaves(h):  # an empty array: gone too
                        with open(f"/sys/block/{h}/md/array_state", "w") as f:
                            f.write("clear")
