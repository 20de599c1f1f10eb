#!/usr/bin/env python3
"""The main job, end to end: reserve slots, launch, hotplug two images by index,
look inside each, unplug, shut down.  Run by ./tools/demo."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import guestslots
from guestslots.testing.testimages import named_image

START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="guestslots-demo-") as tmp:
        work = Path(tmp)
        alpha = named_image(work, "alpha", "gpt")
        beta = named_image(work, "beta", None)
        say(f"made two images: {alpha.name} (GPT, ext4) and {beta.name} (whole-disk ext4)")

        with guestslots.Appliance(progress=say) as app:
            for _ in range(3):
                app.add_drive("/dev/null")  # reserve slots 0-2, empty
            app.launch()
            say(f"devices: {app.list_devices()}")

            t = time.perf_counter()
            app.hotplug(2, alpha, label="alpha")
            say(f"hotplugged {alpha.name} into slot 2 in {1000 * (time.perf_counter() - t):.0f} ms")
            t = time.perf_counter()
            app.hotplug(0, beta, readonly=False)
            say(f"hotplugged {beta.name} into slot 0 in {1000 * (time.perf_counter() - t):.0f} ms")

            for slot in app.slots():
                say(f"  slot {slot.index} {slot.device}: {slot.state.value}"
                    + (f", {slot.path} ({slot.format}, "
                       f"{'ro' if slot.readonly else 'rw'}, serial {slot.serial})"
                       if slot.path else ""))
            filesystems = app.list_filesystems()
            say(f"filesystems: {filesystems}")
            for device in filesystems:
                with app.mounted(device):
                    say(f"  {device}: /whoami says {app.cat('/whoami').strip()!r}")
            say(f"labels: {app.list_disk_labels()}")

            for index in (2, 0):
                t = time.perf_counter()
                app.unplug(index)
                say(f"unplugged slot {index} in {1000 * (time.perf_counter() - t):.0f} ms")
            say(f"devices (empty slots stay listed): {app.list_devices()}")
        say("shut down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
