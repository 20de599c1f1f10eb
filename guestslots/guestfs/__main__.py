"""``python -m guestslots.guestfs PROGRAM [ARGS...]`` (or ``-m MODULE [ARGS...]``):
run an unchanged libguestfs program; its ``import guestfs`` gets the facade.
``--calls``: the table of libguestfs's calls the facade answers (markdown)."""

from __future__ import annotations

import runpy
import sys

from .. import guestfs


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] == "--calls":
        from .listing import calls_table

        sys.stdout.write(calls_table())
        return 0
    sys.modules["guestfs"] = guestfs
    if argv[0] == "-m":
        if len(argv) < 2:
            print("-m needs a module name", file=sys.stderr)
            return 2
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
