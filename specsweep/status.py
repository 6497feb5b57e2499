"""Trial states and metrics of a run directory, readable while the sweep runs and after
it was killed (from Tune's experiment state and each trial's ``result.json``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from specsweep.rundir import RunLocation
from specsweep.spec import SweepSpec

STATUSES = ("PENDING", "RUNNING", "TERMINATED", "ERROR")


def _results(run_dir: RunLocation, trial_dir: str) -> List[Dict[str, Any]]:
    path = f"{trial_dir}/result.json"
    if not run_dir.is_file(path):
        return []
    rows = []
    for line in run_dir.read_text(path).splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # The line being written when the sweep was killed.
            continue
    return rows


def trial_metrics(rows: List[Dict[str, Any]], metric: str, mode: str) -> Dict[str, Any]:
    """Last value of every reported metric, plus ``best_<metric>`` over all epochs."""
    metrics: Dict[str, Any] = {}
    for row in rows:
        metrics.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and (k.startswith(("train_", "val_", "test_", "best_", "timing/")) or k in ("epoch", "training_iteration"))})
    values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
    if values:
        metrics[f"last_{metric}"] = values[-1]
        metrics.setdefault(f"best_{metric}", max(values) if mode == "max" else min(values))
    return metrics


def _error(run_dir: RunLocation, trial_dir: str) -> Optional[str]:
    path = f"{trial_dir}/error.txt"
    if run_dir.is_file(path):
        lines = [line for line in run_dir.read_text(path).strip().splitlines() if line.strip()]
        return lines[-1] if lines else None
    return None


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
    """``[{"id", "status", "config", "metrics", "error"}]`` for every trial Tune knows of."""
    from ray.tune import ExperimentAnalysis

    from specsweep.launcher import load_run

    run_dir = RunLocation(run_dir)
    spec = load_run(run_dir)
    metric, mode = metric or spec.metric, mode or spec.mode
    if not run_dir.glob("experiment_state-*.json"):
        return []
    # Trials that have not reported yet have no result files; that is not worth a warning here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = ExperimentAnalysis(run_dir.path, storage_filesystem=run_dir.fs)
    trials = []
    for trial in analysis.trials:
        # The trial's folder by name: the run directory may have moved since Tune wrote its path.
        trial_dir = Path(trial.path).name
        rows = _results(run_dir, trial_dir)
        status = _live_status(trial.status, rows, metric)
        trials.append({
            "id": trial.trial_id,
            "status": status,
            "config": trial.config,
            "metrics": trial_metrics(rows, metric, mode),
            "error": _error(run_dir, trial_dir) if status == "ERROR" else None,
        })
    return sorted(trials, key=lambda t: t["id"])


def describe_config(config: Dict[str, Any], spec: SweepSpec) -> Dict[str, Any]:
    """The few config values that tell trials of one sweep apart: the setting, the swept keys, the seed."""
    from specsweep.frontends.base import setting_name

    fe = config.get("frontend", {})
    filterbank_flag = fe.get("trainable_mel", fe.get("trainable_filterbank", False))
    out: Dict[str, Any] = {"setting": fe.get("setting") or setting_name(fe.get("trainable_stft", False), filterbank_flag)}
    for key in spec.search.space:
        if key == "frontend.setting":
            continue
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        section, leaf = key.split(".", 1)
        # "frontend.name" and "backbone.name" would both be "name".
        out[section if leaf == "name" else leaf] = node
    out["seed"] = config.get("seed")
    return out
