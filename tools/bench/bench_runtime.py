#!/usr/bin/env python3
"""What the runtime record costs a hotplug: hotplug and unplug medians with the record
rewritten after each (as always) and with the rewrite switched off, in one run, on an
appliance with 70 reserved slots; and the write alone.
Run ``.venv/bin/python tools/bench/bench_runtime.py [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import guestslots
from guestslots.host import runtime
from guestslots.testing import testimages as images
from guestslots.testing.soak import plug_times


def cycle(app: guestslots.Appliance, image: Path, rounds: int) -> tuple[float, float]:
    plug, unplug = plug_times(app, 3, image, rounds)
    return statistics.median(plug), statistics.median(unplug)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, guestslots.Appliance() as app:
        image = images.named_image(Path(d), "rt", "gpt")
        for _ in range(70):
            app.add_drive("/dev/null")
        app.launch()
        cycle(app, image, 1)  # the first hotplug after a restore is the slowest
        record = runtime.read(runtime.record_path(app.id))
        writes = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            runtime.write(record)
            writes.append(time.perf_counter() - started)
        with_record = cycle(app, image, args.rounds)
        app._update_runtime = lambda held=True: None  # type: ignore[method-assign]
        without = cycle(app, image, args.rounds)
    print(f"runtime record write alone (70 slots): {statistics.median(writes) * 1000:.2f} ms")
    print(f"hotplug {with_record[0] * 1000:.1f} ms with the record, {without[0] * 1000:.1f} "
          f"without; unplug {with_record[1] * 1000:.1f} / {without[1] * 1000:.1f} ms "
          f"(median of {args.rounds})")


if __name__ == "__main__":
    main()
