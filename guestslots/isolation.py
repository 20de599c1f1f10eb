"""One appliance per trust domain.

One appliance that sees the disks of several guests mixes their trust
domains: a hostile filesystem that compromises the appliance's kernel could
read or change every other disk attached to it (one reason libguestfs dropped
hotplug).  A launch restored from the saved appliance costs about half a
second here, so the safe pattern is affordable: give each untrusted image, or
each group of images that trust each other, an appliance of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .appliance import Appliance
from .opening import open_appliance


@contextlib.contextmanager
def isolated(
    *images: str | os.PathLike[str],
    format: str | None = None,
    readonly: bool = True,
    slots: int = 0,
    **options: Any,
) -> Iterator[Appliance]:
    """A launched appliance of its own holding *images* (slots 0...), shut down afterwards.

    *format* and *readonly* apply to every image; *slots* reserves that many
    more empty slots after them; *options* go to :class:`Appliance`.  Use one
    per trust domain::

        for image in untrusted_images:
            with guestslots.isolated(image) as app:
                print(image, app.list_filesystems())
    """
    app = open_appliance([(image, format) for image in images], readonly=readonly,
                         slots=slots, launch=True, **options)
    try:
        yield app
    finally:
        app.shutdown()
