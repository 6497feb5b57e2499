r"""The run directory's readable index, ``trials.tsv``: which trial folder holds which
configuration. Tune names trial folders by trial id (``trial_<id>``); the index gives each
folder's setting, swept values and seed, one tab-separated row per trial, in the order Tune
created them.

The sweep's driver rewrites it whenever a trial starts (:class:`TrialIndexCallback`) and
once more when ``run`` or ``resume`` ends, from what the run directory holds.

Examples
--------
>>> from specsweep.spec import validate_spec
>>> spec = validate_spec({"name": "x", "task": "kws", "data": {"name": "embedded_kws"},
...     "frontend": {"name": "nnaudio"}, "backbone": {"name": "simple"},
...     "search": {"space": {"frontend.setting": {"grid": ["A", "B"]}, "train.lr": {"grid": [0.1, 0.01]}}}})
>>> config = {"frontend": {"name": "nnaudio", "setting": "B"}, "train": {"lr": 0.01}, "seed": 2}
>>> print(index_text([("a1_00000", config)], spec).replace("\t", " | "), end="")
folder | setting | lr | seed | trial
trial_a1_00000 | B | 0.01 | 2 | a1_00000
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from ray.tune import Callback

from specsweep.rundir import RunLocation, StorageError, first_line, trial_folder
from specsweep.spec import SweepSpec

INDEX_FILE = "trials.tsv"


def _cell(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


def index_text(trials: Sequence[Tuple[str, Dict[str, Any]]], spec: SweepSpec) -> str:
    """``trials.tsv`` for ``(trial id, trial config)`` pairs of a sweep of ``spec``: a
    header row, then per trial its folder, setting, swept values and seed (as ``status``
    shows them) and id."""
    columns = list(spec.describe({}))
    rows = [[trial_folder(trial_id), *map(_cell, spec.describe(config).values()), trial_id]
            for trial_id, config in trials]
    return "".join("\t".join(row) + "\n" for row in [["folder", *columns, "trial"], *rows])


def write_index(run_dir: RunLocation, trials: Sequence[Tuple[str, Dict[str, Any]]], spec: SweepSpec) -> bool:
    """Write ``trials.tsv`` into ``run_dir``; False (with a note on the console) when it
    cannot be written: the index is a convenience the sweep does not wait for."""
    try:
        run_dir.write_text(INDEX_FILE, index_text(trials, spec))
    except (OSError, StorageError) as err:
        print(f"[specsweep] note: {run_dir.child(INDEX_FILE)} not written ({first_line(err)})")
        return False
    return True


class TrialIndexCallback(Callback):
    """Tune callback in the driver: rewrites the run directory's ``trials.tsv`` whenever a
    trial starts, so that it names every trial Tune has created so far."""

    def __init__(self, run_dir: str, spec: SweepSpec) -> None:
        self.run_dir, self.spec = run_dir, spec

    def on_trial_start(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        write_index(RunLocation(self.run_dir), [(t.trial_id, t.config) for t in trials], self.spec)
