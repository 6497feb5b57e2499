"""Command-line start-up: wall time of ``specsweep --help``, ``specsweep run --help`` and
``specsweep --version`` (each a fresh ``python -m specsweep.cli`` process, as a user types
it), against a bare ``python -c pass`` and against importing what a sweep needs (the spec
module, which loads torch and the components).

Usage::

    python -m bench.bench_cli           # 5 timed runs of each, median reported
    python -m bench.bench_cli --tiny    # 1 timed run of each
"""

from __future__ import annotations

import subprocess
import sys
from typing import List, Optional

from bench.common import document, fmt, machine_line, median_seconds, out_path, parser, publish, table, versions_line

NAME = "cli"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "specsweep --help": ["-m", "specsweep.cli", "--help"],
    "specsweep run --help": ["-m", "specsweep.cli", "run", "--help"],
    "specsweep --version": ["-m", "specsweep.cli", "--version"],
    "import specsweep.spec (loads torch)": ["-c", "import specsweep.spec"],
}


def main(argv: Optional[List[str]] = None) -> int:
    args = parser(__doc__.split("\n\n")[0], NAME).parse_args(argv)
    repeats = 1 if args.tiny else 5
    rows = []
    for label, command in COMMANDS.items():
        seconds = median_seconds(lambda: subprocess.run([sys.executable, *command], check=True,
                                                        capture_output=True), repeats)
        rows.append([label, fmt(seconds)])
    text = document("Command-line start-up", [machine_line(), versions_line(),
                                              f"- median of {repeats} runs after 1 untimed run"],
                    [table(["command", "wall s"], rows)])
    publish(text, out_path(args.out, NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
