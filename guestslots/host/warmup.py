"""The warm-up disk: a tiny GPT disk with an ext4 partition and one file.

Before a state is saved, the appliance plugs it, scans it, lists and mounts its
filesystem, reads its file and unplugs it, as a real image's first use would:
whatever that loads into the guest (agent modules, libraries, kernel paths'
data) is then in every restored appliance, so a restored appliance's first
hotplug does not pay for it.  Built once with the host's ``sfdisk`` and
``mkfs.ext4`` (the appliance is built from the same packages) and cached.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .cache import cache_root
from .proc import run

#: Bumped when what the disk holds changes.
VERSION = 1
SIZE_MIB = 8
#: The file the warm-up reads.
FILE = "/warmup"


def image() -> Path:
    """The warm-up disk image (raw), built on first use."""
    path = cache_root() / f"warmup-{VERSION}.img"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".warmup-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        (tree / FILE.lstrip("/")).write_text("warm\n")
        fs = Path(tmp) / "fs"
        with open(fs, "wb") as f:
            f.truncate((SIZE_MIB - 2) << 20)
        run(["mkfs.ext4", "-q", "-F", "-L", "warmup", "-d", str(tree), str(fs)])
        disk = Path(tmp) / "disk"
        with open(disk, "wb") as f:
            f.truncate(SIZE_MIB << 20)
        run(["sfdisk", "-q", str(disk)], input="label: gpt\nstart=2048, size=12288\n")
        with open(fs, "rb") as src, open(disk, "r+b") as dst:
            dst.seek(1 << 20)
            shutil.copyfileobj(src, dst)
        os.replace(disk, path)
    return path
