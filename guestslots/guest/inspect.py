"""Guest calls that find operating systems and mount them (see :mod:`guestslots.inspection`).

Inspection drives the appliance through public calls only, from the other areas.
"""

from __future__ import annotations

import io

from .. import inspection
from ..errors import DeviceNameError
from ..inspection import packages
from .augeas import AugeasCalls
from .base import serialised
from .devices import DeviceCalls
from .files import FileCalls
from .hivex import HivexCalls
from .mounts import MountCalls


class InspectionCalls(DeviceCalls, MountCalls, FileCalls, HivexCalls, AugeasCalls):
    """Operating-system inspection over the device, mount and file calls."""

    #: What the last inspect_os found, by root (the inspect_get_* calls read it).
    _inspected: dict[str, inspection.OSInfo]

    @serialised
    def inspect_os(self) -> list[dict[str, object]]:
        """Find operating systems on the full slots, as libguestfs's inspect_os does
        (Linux: a root with /etc and /bin or /usr/bin and an fstab or hosts, or an
        os-release; its release files read in libguestfs's order.  Windows: a system
        root with system32/config and cmd.exe, its registry read with hivex).

        Each is a dict: root, and what libguestfs's inspect_get_* of the same names
        say: type, distro, product_name, major_version, minor_version,
        package_format, package_management, osinfo, hostname, arch, product_variant,
        build_id, windows_systemroot, windows_current_control_set,
        windows_software_hive, windows_system_hive, drive_mappings; os-release's name,
        pretty_name and version; and mountpoints (mount point -> device, from
        fstab's UUID=, LABEL= and device entries).  Nothing may be mounted; nothing
        is left mounted.
        """
        found = inspection.inspect_os(self)
        self._inspected = {f.root: f for f in found}
        return [f.as_dict() for f in found]

    def _forget_inspection(self) -> None:
        """The slots changed: what the last inspect_os found may be elsewhere now."""
        self.__dict__.pop("_inspected", None)

    def _found(self) -> dict[str, inspection.OSInfo]:
        found: dict[str, inspection.OSInfo] = self.__dict__.get("_inspected", {})
        return found

    def _root(self, root: str) -> inspection.OSInfo:
        found = self._found().get(root)
        if found is None:
            raise DeviceNameError(root, "no operating system was found on it by the last "
                                  "inspect_os (call inspect_os first)")
        return found

    def inspect_get_roots(self) -> list[str]:
        """The roots the last inspect_os found."""
        return sorted(self._found())

    def inspect_get_type(self, root: str) -> str:
        """The kind of operating system on *root* (``linux``, ``windows``), as libguestfs
        says."""
        return self._root(root).type

    def inspect_get_product_variant(self, root: str) -> str:
        """Windows: the installation type (``Client``, ``Server``...); else ``unknown``."""
        return self._root(root).product_variant

    def inspect_get_build_id(self, root: str) -> str:
        """Windows: the build number (``CurrentBuildNumber``), or ``""``."""
        return self._root(root).build_id

    def inspect_get_windows_systemroot(self, root: str) -> str:
        """Windows: %SYSTEMROOT% as a path of the guest (``/Windows``)."""
        return self._root(root).windows_systemroot

    def inspect_get_windows_current_control_set(self, root: str) -> str:
        """Windows: the current control set of the SYSTEM hive (``ControlSet001``)."""
        return self._root(root).windows_current_control_set

    def inspect_get_windows_software_hive(self, root: str) -> str:
        """Windows: the guest path of the SOFTWARE hive (for hivex_open), or ``""``."""
        return self._root(root).windows_software_hive

    def inspect_get_windows_system_hive(self, root: str) -> str:
        """Windows: the guest path of the SYSTEM hive (for hivex_open), or ``""``."""
        return self._root(root).windows_system_hive

    def inspect_get_drive_mappings(self, root: str) -> dict[str, str]:
        """Windows: drive letter -> device (from SYSTEM\\MountedDevices, where the
        disks are among the slots)."""
        return dict(self._root(root).drive_mappings)

    def inspect_get_distro(self, root: str) -> str:
        """The distribution on *root* in libguestfs's words (``debian``, ``ubuntu``,
        ``fedora``, ``rhel``, ``centos``, ``archlinux``, ``alpinelinux``, ``opensuse``,
        ``sles``... or ``unknown``)."""
        return self._root(root).distro

    def inspect_get_product_name(self, root: str) -> str:
        """The product name of the OS on *root*, as libguestfs reads it."""
        return self._root(root).product_name

    def inspect_get_major_version(self, root: str) -> int:
        """The OS's major version (0 if unknown)."""
        return self._root(root).major_version

    def inspect_get_minor_version(self, root: str) -> int:
        """The OS's minor version (0 if unknown)."""
        return self._root(root).minor_version

    def inspect_get_hostname(self, root: str) -> str:
        """The OS's hostname (/etc/hostname), or ``""``."""
        return self._root(root).hostname

    def inspect_get_package_format(self, root: str) -> str:
        """``deb``, ``rpm``, ``apk``, ``pacman``... or ``unknown``."""
        return self._root(root).package_format

    def inspect_get_package_management(self, root: str) -> str:
        """``apt``, ``dnf``, ``yum``, ``zypper``, ``apk``, ``pacman``... or ``unknown``."""
        return self._root(root).package_management

    def inspect_get_osinfo(self, root: str) -> str:
        """The libosinfo short id (``debian12``, ``rhel7.9``...) or ``unknown``."""
        return self._root(root).osinfo

    def inspect_get_arch(self, root: str) -> str:
        """The architecture of the OS's system binaries (``x86_64``, ``aarch64``...)."""
        return self._root(root).arch

    @serialised
    def inspect_list_applications(self, root: str) -> list[dict[str, object]]:
        """The applications installed in the OS on *root*, from its package database
        (dpkg, apk, pacman, rpm (any of its database formats librpm reads);
        Windows: the registry's uninstall keys), with
        libguestfs's application2 fields (name, display_name, epoch, version, release,
        arch, install_path, publisher, url, summary, description), sorted by name.
        As in libguestfs, the OS's filesystems must be mounted (mount_os, or ``-i``)."""
        found = self._root(root)

        def text(path: str) -> str | None:
            if not self.is_file(path, followsymlinks=True):
                return None
            return self.pread(path, packages.MAX_DB_BYTES, 0).decode(errors="replace")

        apps: list[packages.Application] = []
        if found.package_format == "deb":
            status = text(packages.DPKG_STATUS)
            apps = packages.parse_dpkg_status(status) if status is not None else []
        elif found.package_format == "apk":
            installed = text(packages.APK_INSTALLED)
            apps = packages.parse_apk_installed(installed) if installed is not None else []
        elif found.type == "windows":
            apps = inspection.windows_applications(self, found)
        elif found.package_format == "rpm":
            answer = io.BytesIO()
            with self._agent_for("rpm_applications") as agent:
                agent.download("rpm_applications", answer)
            apps = packages.parse_rpm_lines(answer.getvalue().decode(errors="replace"))
        elif found.package_format == "pacman" and self.is_dir(packages.PACMAN_LOCAL):
            for entry in self.ls(packages.PACMAN_LOCAL):
                desc = text(f"{packages.PACMAN_LOCAL}/{entry}/desc")
                app = packages.parse_pacman_desc(desc) if desc is not None else None
                if app is not None:
                    apps.append(app)
            apps.sort(key=lambda a: a.name)
        return [a.as_dict() for a in apps]

    def inspect_get_mountpoints(self, root: str) -> dict[str, str]:
        """Mount point -> device, as the OS's fstab says (``/`` is *root*)."""
        return dict(self._root(root).mountpoints)

    @serialised
    def mount_os(self, root: str, readonly: bool = True) -> None:
        """Mount the filesystems of the operating system on *root* as its fstab says
        (as the last inspect_os found it, if no slot changed since; else inspecting
        again first)."""
        found = self._found().get(root)
        if found is None:
            self.inspect_os()
            found = self._found().get(root)
        if found is None:
            raise DeviceNameError(root, "no operating system was found on it")
        inspection.mount_mountpoints(self, found.mountpoints, readonly)
