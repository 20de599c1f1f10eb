"""virt-inspector's XML, so that tools parsing its output can read ours unchanged
(``guestslots inspect --xml``; libguestfs's ``virt-inspector.rng`` accepts it).
Pure: built with the standard library's ElementTree from what inspection found.

As virt-inspector does, values libguestfs calls ``unknown`` (and its schema
leaves out) are omitted, versions are always given, and every operating system
lists its mount points, its filesystems and its applications.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

#: (element, key in an inspect_os dict), in virt-inspector's order.
_FIELDS = (("root", "root"), ("name", "type"), ("arch", "arch"), ("distro", "distro"),
           ("product_name", "product_name"), ("product_variant", "product_variant"),
           ("major_version", "major_version"), ("minor_version", "minor_version"),
           ("windows_systemroot", "windows_systemroot"),
           ("windows_current_control_set", "windows_current_control_set"),
           ("package_format", "package_format"),
           ("package_management", "package_management"), ("hostname", "hostname"),
           ("osinfo", "osinfo"))
_ALWAYS = frozenset({"major_version", "minor_version"})
_APP_FIELDS = ("name", "display_name", "epoch", "version", "release", "arch", "install_path",
               "publisher", "url", "summary", "description")


def inspector_xml(systems: Sequence[Mapping[str, object]],
                  filesystems: Mapping[str, Mapping[str, str]],
                  applications: Mapping[str, Sequence[Mapping[str, object]]]) -> str:
    """The document for *systems* (inspect_os dicts); *filesystems*: device ->
    {type, label, uuid}; *applications*: root -> inspect_list_applications."""
    top = ET.Element("operatingsystems")
    for system in systems:
        os_el = ET.SubElement(top, "operatingsystem")
        for tag, key in _FIELDS:
            value = system.get(key, "")
            if tag in _ALWAYS or value not in ("", "unknown", None):
                ET.SubElement(os_el, tag).text = str(value)
        mountpoints = system.get("mountpoints") or {}
        assert isinstance(mountpoints, Mapping)
        mps = ET.SubElement(os_el, "mountpoints")
        for mountpoint, dev in sorted(mountpoints.items()):
            ET.SubElement(mps, "mountpoint", dev=str(dev)).text = str(mountpoint)
        fss = ET.SubElement(os_el, "filesystems")
        for dev in sorted(set(mountpoints.values())):
            fs_el = ET.SubElement(fss, "filesystem", dev=str(dev))
            for key, value in filesystems.get(str(dev), {}).items():
                if value:
                    ET.SubElement(fs_el, key).text = value
        drives = system.get("drive_mappings") or {}
        assert isinstance(drives, Mapping)
        if drives:
            maps = ET.SubElement(os_el, "drive_mappings")
            for letter, dev in sorted(drives.items()):
                ET.SubElement(maps, "drive_mapping", name=str(letter)).text = str(dev)
        apps = ET.SubElement(os_el, "applications")
        for app in applications.get(str(system["root"]), ()):
            app_el = ET.SubElement(apps, "application")
            for key in _APP_FIELDS:
                value = app.get(key)
                if value not in ("", None) and not (key == "epoch" and value == 0):
                    ET.SubElement(app_el, key).text = str(value)
    ET.indent(top)
    text = ET.tostring(top, encoding="unicode")
    # an empty element as libxml2 (virt-inspector) writes it: <applications/>
    text = re.sub(r"<([A-Za-z_]+) />", r"<\1/>", text)
    return '<?xml version="1.0"?>\n' + text + "\n"
