"""``python -m specsweep``: the ``specsweep`` command, for environments (such as a Ray
job's entrypoint) where the installed script is not on PATH or not the code to run."""

import sys

from specsweep.cli import main

# Guarded so that importing the module (doctest collection) runs nothing.
if __name__ == "__main__":
    sys.exit(main())
