"""Trial states and metrics of a run directory, readable while the sweep runs and after
it was killed (from Tune's experiment state and each trial's ``result.json``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from specsweep.rundir import (ERROR_FILE, EXPERIMENT_STATE, RESULT_FILE, TRIALS, DamagedFileError, RunDirError,
                              MAX_READ_BYTES, RunLocation, load_run, parse_json, read_bounded, read_json,
                              trial_id_of)
from specsweep.spec import SweepSpec, trial_config_problem

# In the order the status line counts them.
STATUSES = ("TERMINATED", "RUNNING", "PENDING", "ERROR")
# A running sweep rewrites its experiment state in place: a file read mid-write is read
# again after this many seconds before it counts as damaged.
_REWRITE_WAIT_S = 0.5
_READ_FROM_TRIALS = f"trial states are read from each trial's {RESULT_FILE} and {ERROR_FILE} instead"
# Tune's other record of a trial's results, which its analysis reads when result.json is missing.
PROGRESS_FILE = "progress.csv"


class DamagedRunError(RunDirError):
    """Files of a run directory cannot be read; ``damaged`` names them, ``trials`` holds
    what could still be read from the trials' own result files."""

    def __init__(self, run_dir: RunLocation, damaged: List[str], trials: List[Dict[str, Any]]) -> None:
        self.run_dir, self.damaged, self.trials = run_dir, damaged, trials
        super().__init__("damaged run directory " + str(run_dir) + ":\n" + "\n".join(f"  - {d}" for d in damaged))


def _results(run_dir: RunLocation, trial_dir: str, damaged: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """The rows of the ``result.json`` in ``run_dir``'s folder ``trial_dir``; unreadable
    lines other than the last are named in ``damaged``."""
    relative = f"{trial_dir}/{RESULT_FILE}"
    if not run_dir.exists(relative):
        return []
    path = run_dir.child(relative)
    try:
        lines = read_bounded(run_dir, relative).splitlines()
    except DamagedFileError as err:
        if damaged is not None and not any(line.startswith(f"{path}:") for line in damaged):
            damaged.append(f"{err}; its results are not read")
        return []
    rows, bad = [], []
    for i, line in enumerate(lines):
        try:
            row = parse_json(line, path)
        except DamagedFileError as err:
            # The last line may be the one being written when the sweep was killed; a whole
            # line with a value no sweep writes is damage wherever it is.
            if i < len(lines) - 1 or not err.reason.startswith("not JSON"):
                bad.append(i + 1)
            continue
        if isinstance(row, dict) and trial_config_problem(row.get("config", {})) is None:
            rows.append(row)
        elif isinstance(row, dict) or i < len(lines) - 1:
            bad.append(i + 1)
    if bad and damaged is not None:
        damaged.append(f"{path}: line{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} of {len(lines)} "
                       f"are not results a sweep writes (not JSON, or values and configs no sweep writes); the other lines still count")
    return rows


def _experiment_state_damage(run_dir: RunLocation) -> List[str]:
    """Tune's experiment state files that are not JSON (e.g. truncated) or hold what Tune
    would fail on (nesting, integers or trial records no sweep writes)."""
    damaged = []
    for relative in run_dir.glob(EXPERIMENT_STATE):
        if _state_problem(run_dir, relative) is None:
            continue
        # A running sweep rewrites its state file; read mid-write, it is read again once.
        time.sleep(_REWRITE_WAIT_S)
        problem = _state_problem(run_dir, relative)
        if problem is not None:
            damaged.append(f"{problem}; Tune's experiment state is not read; {_READ_FROM_TRIALS}")
    return damaged


def _state_problem(run_dir: RunLocation, relative: str) -> Optional[str]:
    """Why Tune's experiment state ``relative`` cannot be read, or None. Each trial's
    record in it is JSON inside a JSON string, checked as well."""
    path = run_dir.child(relative)
    try:
        state = read_json(run_dir, relative)
        records = state.get("trial_data", []) if isinstance(state, dict) else None
        if not isinstance(records, list):
            raise DamagedFileError(path, "not Tune's experiment state (no list of trials)")
        for record in records:
            if not (isinstance(record, list) and all(isinstance(part, str) for part in record)):
                raise DamagedFileError(path, "a trial record that is not Tune's (JSON strings)")
            trial = parse_json(record[0], path) if record else None
            for part in record[1:]:
                parse_json(part, path)
            problem = trial_config_problem(trial.get("config", {})) if isinstance(trial, dict) else "not a trial"
            if problem:
                raise DamagedFileError(path, f"a trial record no sweep writes ({problem})")
    except DamagedFileError as err:
        return str(err)
    return None


def _oversized_results(run_dir: RunLocation) -> List[str]:
    """Trials' result files larger than specsweep reads back (Tune would read them whole)."""
    damaged = []
    for relative in run_dir.glob(f"{TRIALS}/{RESULT_FILE}") + run_dir.glob(f"{TRIALS}/{PROGRESS_FILE}"):
        size = run_dir._info(relative).size
        if size is not None and size > MAX_READ_BYTES:
            damaged.append(f"{run_dir.child(relative)}: {size:,} bytes, more than specsweep reads back "
                           f"({MAX_READ_BYTES:,} bytes); not a file a sweep writes; {_READ_FROM_TRIALS}")
    return damaged


def _trials_from_results(run_dir: RunLocation, metric: str, mode: str, damaged: List[str]) -> List[Dict[str, Any]]:
    """Trials read from their own folders, when Tune's experiment state is damaged."""
    trials = []
    for trial_dir in run_dir.glob(TRIALS):
        rows = _results(run_dir, trial_dir, damaged)
        status = "ERROR" if run_dir.is_file(f"{trial_dir}/{ERROR_FILE}") else _live_status("PENDING", rows, metric)
        trials.append({
            "id": trial_id_of(trial_dir),
            "status": status,
            "config": rows[-1].get("config", {}) if rows else {},
            "metrics": trial_metrics(rows, metric, mode),
            "error": _error(run_dir, trial_dir) if status == "ERROR" else None,
        })
    return trials


def trial_metrics(rows: List[Dict[str, Any]], metric: str, mode: str) -> Dict[str, Any]:
    """Last value of every reported metric, plus ``best_<metric>`` over all epochs."""
    metrics: Dict[str, Any] = {}
    for row in rows:
        metrics.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and (k.startswith(("train_", "val_", "test_", "best_", "timing/", "frontend/"))
                            or k in ("epoch", "training_iteration", "tested_epoch"))})
    values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
    if values:
        metrics[f"last_{metric}"] = values[-1]
        metrics.setdefault(f"best_{metric}", max(values) if mode == "max" else min(values))
    return metrics


def _error(run_dir: RunLocation, trial_dir: str) -> Optional[str]:
    """The last line of the trial's ``error.txt``."""
    relative = f"{trial_dir}/{ERROR_FILE}"
    if not run_dir.is_file(relative):
        return None
    try:
        text = read_bounded(run_dir, relative).decode(errors="replace")
    except DamagedFileError as err:
        return str(err)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _live_status(saved: str, rows: List[Dict[str, Any]], metric: str) -> str:
    """Tune snapshots its experiment state only now and then, so a trial it last saw as
    PENDING may since have reported epochs (RUNNING) or its final result (TERMINATED)."""
    if saved in ("TERMINATED", "ERROR"):
        return saved
    if not rows:
        return "PENDING"
    # Only the final report of a trial carries best_<metric>.
    return "TERMINATED" if f"best_{metric}" in rows[-1] else "RUNNING"


def read_trials(run_dir: Union[Path, str, RunLocation], metric: Optional[str] = None, mode: Optional[str] = None) -> List[Dict[str, Any]]:
    """``[{"id", "status", "config", "metrics", "error"}]`` for every trial Tune knows of.

    Raises :class:`DamagedRunError` naming every damaged file, with the trials that
    could still be read.
    """
    run_dir = RunLocation(run_dir)
    spec = load_run(run_dir)
    metric, mode = metric or spec.metric, mode or spec.mode
    if not run_dir.glob(EXPERIMENT_STATE):
        if not run_dir.glob(TRIALS):
            return []
        damaged = [f"{run_dir}: Tune's experiment state ({EXPERIMENT_STATE}) is missing; {_READ_FROM_TRIALS}"]
    else:
        # Tune's analysis reads every trial's results whole: one too large to read back is
        # named and the trials are read from their own files, which skip it.
        damaged = _experiment_state_damage(run_dir) + _oversized_results(run_dir)
    if damaged:
        trials = _trials_from_results(run_dir, metric, mode, damaged)
    else:
        trials = _tune_trials(run_dir, metric, mode, damaged)
    trials = sorted(trials, key=lambda t: t["id"])
    if damaged:
        raise DamagedRunError(run_dir, damaged, trials)
    return trials


def _tune_trials(run_dir: RunLocation, metric: str, mode: str, damaged: List[str]) -> List[Dict[str, Any]]:
    from ray.tune import ExperimentAnalysis

    # Trials that have not reported yet have no result files; that is not worth a warning here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(run_dir.path, storage_filesystem=run_dir.fs)
    except (ValueError, KeyError, TypeError, OSError) as err:
        damaged.append(f"{run_dir}: Tune cannot read its experiment state ({type(err).__name__}: {err}); "
                       f"{_READ_FROM_TRIALS}")
        return _trials_from_results(run_dir, metric, mode, damaged)
    trials = []
    for trial in analysis.trials:
        # The trial's folder by name: the run directory may have moved since Tune wrote its path.
        trial_dir = Path(trial.path).name
        # A trial's folder in cloud storage appears with its first upload (checkpoint or
        # synced results), so a running trial without a checkpoint may have none yet.
        recorded = trial.status in ("TERMINATED", "ERROR") or trial.checkpoint is not None
        if recorded and not run_dir.is_dir(trial_dir):
            damaged.append(f"{run_dir.child(trial_dir)}: the folder of trial {trial.trial_id} ({trial.status}) is "
                           f"missing; its results and checkpoints are lost")
        rows = _results(run_dir, trial_dir, damaged)
        if trial.status == "TERMINATED" and not rows and run_dir.is_dir(trial_dir):
            # Every trial reports each epoch: a finished one without a result lost them.
            damaged.append(f"{run_dir.child(trial_dir)}/{RESULT_FILE}: trial {trial.trial_id} finished, but its "
                           f"results are missing or unreadable; its metrics are lost")
        status = _live_status(trial.status, rows, metric)
        trials.append({
            "id": trial.trial_id,
            "status": status,
            "config": trial.config,
            "metrics": trial_metrics(rows, metric, mode),
            "error": _error(run_dir, trial_dir) if status == "ERROR" else None,
            # The checkpoint Tune restores the trial from (its folder's name), None before the first.
            "checkpoint": Path(trial.checkpoint.path).name if trial.checkpoint is not None else None,
        })
    return trials


def last_result(run_dir: RunLocation, trial_dir: str) -> Dict[str, Any]:
    """The latest row of the ``result.json`` in ``run_dir``'s folder ``trial_dir``; ``{}``
    when there is none or it cannot be read."""
    try:
        lines = read_bounded(run_dir, f"{trial_dir}/{RESULT_FILE}").splitlines()
        row = parse_json(lines[-1], run_dir.child(f"{trial_dir}/{RESULT_FILE}")) if lines else {}
    except DamagedFileError:
        return {}
    return row if isinstance(row, dict) and trial_config_problem(row.get("config", {})) is None else {}


def summary_rows(trials: List[Dict[str, Any]], spec: SweepSpec) -> List[Dict[str, Any]]:
    """One row per trial for :func:`format_table`: its id, :meth:`~specsweep.spec.SweepSpec.describe`, status,
    best validation metric and test metric."""
    test_metric = spec.test_metric
    rows = []
    for t in trials:
        m = t["metrics"]
        rows.append({"trial": t["id"], **spec.describe(t["config"]), "status": t["status"],
                     f"best {spec.metric}": m.get(f"best_{spec.metric}"), test_metric: m.get(test_metric)})
    return rows


def format_table(rows: List[Dict[str, Any]], spec: SweepSpec) -> str:
    """``rows`` as a plain-text table with aligned columns (``-`` for missing values)."""
    if not rows:
        return "(no trials)"
    columns = list(rows[0])
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def status_command(args: Any) -> int:
    """``specsweep status RUN_DIR [--json]``: the trials' table (or JSON) of ``args.run_dir``;
    status 2 when files are damaged (what could still be read is shown)."""
    import json
    import sys

    run_dir = RunLocation(args.run_dir)
    spec = load_run(run_dir)
    damage = None
    try:
        trials = read_trials(run_dir)
    except DamagedRunError as err:
        damage, trials = err, err.trials
    if args.json:
        print(json.dumps({"run_dir": run_dir.uri,
                          "trials": [{k: t[k] for k in ("id", "status", "config", "metrics", "error")} for t in trials],
                          **({"damaged": damage.damaged} if damage else {})},
                         indent=1, default=str))
    else:
        print(format_table(summary_rows(trials, spec), spec))
        counts = {s: sum(t["status"] == s for t in trials) for s in STATUSES}
        print(", ".join(f"{v} {k.lower()}" for k, v in counts.items()))
    if damage:
        print(f"specsweep: {damage}\nthe table shows what could still be read; `specsweep resume` refuses this "
              f"run until the damaged files are restored or moved aside", file=sys.stderr)
        return 2
    return 0
