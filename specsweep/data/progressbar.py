"""Progress of dataset downloads, extraction, decoding and synthesis, through tqdm.

On a terminal the bar redraws in place; in a log file or pipe (CI, a trial's log) it
writes a whole line now and then (every ``LINE_EVERY_S`` seconds and at the end), never
carriage returns.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

# Seconds between two progress lines when the output is not a terminal.
LINE_EVERY_S = 30.0


class _Lines:
    """A stream for tqdm that turns each redraw into one line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar on stderr for ``total`` units of work (rate and time left included).

    Parameters
    ----------
    total
        Units of work (clips, files, bytes).
    desc
        What is being done, e.g. ``decoding speech_commands/train``.
    unit
        The unit's name; with ``unit_scale=True`` in ``options``, bytes read as kB, MB.
    enabled
        False: no output at all.
    """
    stream = sys.stderr
    live = stream.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=live,
                file=stream if live else _Lines(stream), mininterval=0.1 if live else LINE_EVERY_S, **options)
