"""Opening an appliance as guestfish's options say: images in slots, empty slots,
launch, mounts (library API, not a front end).

The shell (``-a``, ``--format``, ``--ro``/``--rw``, ``-N``, ``-m``, ``-i``, ``--slots``),
the CLI, the pytest plugin, :func:`guestslots.isolated` and ``guestslots mount`` all
add images, reserve empty slots, launch, and mount through :func:`open_appliance`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .appliance import Appliance
from .inspection import mount_image
from .prepare import DiskSpec, prepare

#: An image to add, and its format (None: raw, never guessed).
Image = tuple[str | os.PathLike[str], str | None]


def open_appliance(
    images: Sequence[Image] = (),
    *,
    readonly: bool = True,
    slots: int = 0,
    mounts: Sequence[str] = (),
    inspector: bool = False,
    plain_filesystem: bool = False,
    launch: bool | None = None,
    prepared: Sequence[tuple[str, DiskSpec]] = (),
    domain: str | None = None,
    connect: str | None = None,
    **options: Any,
) -> Appliance:
    """An :class:`Appliance` (made with *options*) holding *images* in slots 0...,
    then *slots* empty slots.

    It is launched if *launch* is true, or (with *launch* None) if anything is to
    be mounted.  *mounts* are ``DEV[:MOUNTPOINT]`` (``-m``; ``/`` by default);
    *inspector* mounts the operating system found as its fstab says (``-i``; with
    *plain_filesystem*, the one filesystem of an image without an OS).  Mounts
    are read-only unless *readonly* is false.  *prepared* disks (guestfish's
    ``-N``: a new image file and its :class:`~guestslots.prepare.DiskSpec`) are
    made, added read-write after *images*, and prepared right after launch (and
    what is mounted from them only is mounted read-write).  *domain* (``-d``): every
    disk of that libvirt domain at *connect* (``-c``; libvirt's default URI if None),
    after *images*, read-only, a running domain's at one point in time (see
    :meth:`Appliance.hotplug_domain_disks`).  On any failure the appliance is shut
    down before the error is raised.
    """
    app = Appliance(**options)
    try:
        for path, fmt in images:
            app.add_drive(path, format=fmt, readonly=readonly)
        if domain is not None:
            from .domains import DEFAULT_URI, domain_disks

            connect = connect or DEFAULT_URI
            for _ in domain_disks(domain, connect):
                app.add_drive("/dev/null")
            launch = True  # its disks are plugged into the running appliance
        prepared_slots = []
        for new_path, disk in prepared:
            disk.check()
            with open(new_path, "wb") as f:
                f.truncate(disk.size_bytes())
            prepared_slots.append((app.add_drive(new_path, format="raw", readonly=False), disk))
        for _ in range(slots):
            app.add_drive("/dev/null")
        if launch or (launch is None and (mounts or inspector or prepared)):
            app.launch()
        if domain is not None:
            app.hotplug_domain_disks(domain, connect or "")
        for index, disk in prepared_slots:
            prepare(app, app.slots()[index].device, disk)
        if inspector:
            mount_image(app, readonly=readonly, plain_filesystem=plain_filesystem)
        prepared_disks = {app.slots()[index].device for index, _ in prepared_slots}
        for spec in mounts:
            device, _, mountpoint = spec.partition(":")
            # a prepared disk is there to be written: mounted read-write
            on_prepared = bool(prepared_disks) and set(app.disks_of(device)) <= prepared_disks
            if readonly and not on_prepared:
                app.mount_ro(device, mountpoint or "/")
            else:
                app.mount(device, mountpoint or "/")
    except BaseException:
        app.shutdown()
        raise
    return app
