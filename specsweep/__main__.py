"""``python -m specsweep``: the ``specsweep`` command, for environments (such as a Ray
job's entrypoint) where the script is not on PATH."""

import sys

from specsweep.cli import main

sys.exit(main())
