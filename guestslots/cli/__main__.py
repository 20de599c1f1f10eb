"""``python -m guestslots.cli``: the ``guestslots`` command."""

import sys

from . import main

sys.exit(main())
