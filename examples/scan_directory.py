#!/usr/bin/env python3
"""Scan a directory of disk images through one appliance's slots.

    .venv/bin/python examples/scan_directory.py DIR [--format raw|qcow2]

Each image is hotplugged into the one slot, looked at (filesystems, and the
operating system if there is one) and unplugged again: one launch for the
whole directory.  For images that must not share an appliance (different
trust domains), use ``guestslots.isolated(image)`` per image instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import guestslots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--format", choices=("raw", "qcow2"), default=None)
    args = parser.parse_args()
    images = sorted(p for p in args.directory.iterdir() if p.is_file())
    status = 0
    with guestslots.Appliance() as app:
        app.add_drive("/dev/null")  # the one slot every image goes through
        app.launch()
        for image in images:
            try:
                app.hotplug(0, image, format=args.format)
            except guestslots.GuestslotsError as e:
                print(f"{image.name}: skipped: {e}", file=sys.stderr)
                status = 1
                continue
            try:
                filesystems = app.list_filesystems()
                systems = app.inspect_os()
                print(f"{image.name}:")
                for device, fstype in filesystems.items():
                    print(f"  {device} {fstype} {app.vfs_label(device)!r}")
                for system in systems:
                    print(f"  OS on {system['root']}: {system['pretty_name'] or system['name']}"
                          f" (hostname {system['hostname'] or '?'})")
            finally:
                app.unplug(0, force=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
