"""Trial states and metrics of a run directory, readable while the sweep runs and after
it was killed (from Tune's experiment state and each trial's ``result.json``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from specsweep.spec import SweepSpec

STATUSES = ("PENDING", "RUNNING", "TERMINATED", "ERROR")


def _results(trial_dir: Path) -> List[Dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
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
                        and (k.startswith(("train_", "val_", "test_", "best_", "timing/", "frontend/"))
                            or k in ("epoch", "training_iteration", "tested_epoch"))})
    values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
    if values:
        metrics[f"last_{metric}"] = values[-1]
        metrics.setdefault(f"best_{metric}", max(values) if mode == "max" else min(values))
    return metrics


def _error(trial: Any) -> Optional[str]:
    path = getattr(trial, "error_file", None) or ""
    for candidate in (Path(path), Path(trial.path) / "error.txt"):
        if candidate.is_file():
            lines = [line for line in candidate.read_text().strip().splitlines() if line.strip()]
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


def read_trials(run_dir: Path, metric: Optional[str] = None, mode: Optional[str] = None) -> List[Dict[str, Any]]:
    """``[{"id", "status", "config", "metrics", "error"}]`` for every trial Tune knows of."""
    from ray.tune import ExperimentAnalysis

    from specsweep.launcher import load_run

    run_dir = Path(run_dir).expanduser().resolve()
    spec = load_run(run_dir)
    metric, mode = metric or spec.metric, mode or spec.mode
    if not any(run_dir.glob("experiment_state-*.json")):
        return []
    # Trials that have not reported yet have no result files; that is not worth a warning here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = ExperimentAnalysis(str(run_dir))
    trials = []
    for trial in analysis.trials:
        rows = _results(Path(trial.path))
        status = _live_status(trial.status, rows, metric)
        trials.append({
            "id": trial.trial_id,
            "status": status,
            "config": trial.config,
            "metrics": trial_metrics(rows, metric, mode),
            "error": _error(trial) if status == "ERROR" else None,
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
