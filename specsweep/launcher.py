"""Launch, resume and summarise sweeps with Ray Tune."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from ray.tune import Callback

from specsweep.spec import SweepSpec, load_spec, param_space, validate_spec

SPEC_FILE = "specsweep.yaml"
RUN_FILE = "specsweep-run.json"


class RunDirError(RuntimeError):
    """A run directory cannot be created or is not a specsweep run."""


def default_storage() -> Path:
    return Path(os.environ.get("SPECSWEEP_STORAGE", "runs")).expanduser().resolve()


_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> None:
    """Join ``address`` or start a local Ray that listens on loopback only."""
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # Ray's services stay on loopback unless the user gives a cluster address. Ray binds to
    # loopback when clusters are disabled (its setting for single machines); the variable
    # reaches the processes Ray starts, and this process read it when it imported Ray.
    os.environ[_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    # address="local": a new instance, never one that `ray start` left running.
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             log_to_driver=True, configure_logging=False)


def _new_run_dir(storage: Path, name: str) -> Path:
    run_dir = storage / name
    if run_dir.exists():
        raise RunDirError(
            f"run directory {run_dir} already exists; pick another --name, or continue it with "
            f"`specsweep resume {run_dir}`"
        )
    return run_dir


def _prepare_data(spec: SweepSpec) -> None:
    """Prepare every distinct dataset the sweep uses before trials start: downloads and
    synthesis happen once, and a missing dataset fails here with its message."""
    from specsweep.data.datasets import prepare_dataset
    from specsweep.spec import expand_trials

    seen = set()
    for trial in expand_trials(spec):
        key = json.dumps(trial["data"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            prepare_dataset(trial["data"])


@dataclass
class SweepOutcome:
    run_dir: Path
    rows: List[Dict[str, Any]]
    errored: int
    unfinished: int

    @property
    def exit_code(self) -> int:
        return 1 if self.errored or self.unfinished else 0


def _build_tuner(spec: SweepSpec, run_dir: Path, smoke: bool, restore: bool = False, restart_errored: bool = False):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from specsweep import tracking
    from specsweep.trainables.trainable import RunContext, train_trial

    limits = {}
    if smoke:
        limits = {"limit_train_batches": spec.smoke.limit_train_batches, "limit_eval_batches": spec.smoke.limit_eval_batches}
    context = RunContext(
        sweep_dir=str(run_dir), metric=spec.metric, mode=spec.mode,
        wandb=tracking.WandbSettings(project=spec.wandb.project, entity=spec.wandb.entity,
                                     group=spec.wandb.group or run_dir.name, mode=spec.wandb.mode,
                                     tags=spec.wandb.tags),
        **limits,
    )
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    trainable = tune.with_resources(tune.with_parameters(train_trial, run=context), resources)
    if restore:
        return tune.Tuner.restore(str(run_dir), trainable, resume_unfinished=True, resume_errored=not restart_errored,
                                  restart_errored=restart_errored)
    search_alg = None
    if spec.search.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seeds[0])
    scheduler = None
    if spec.scheduler.name == "asha":
        # One report per epoch plus the final test report.
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=spec.train.epochs + 1,
                                  grace_period=spec.scheduler.grace_period,
                                  reduction_factor=spec.scheduler.reduction_factor)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=search_alg, scheduler=scheduler,
            num_samples=spec.search.num_samples, max_concurrent_trials=spec.resources.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            # A trial's process keeps torch, Lightning and the memory-mapped caches loaded
            # for the next trial; trials share no other state (each seeds and sets up anew).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_dir.name, storage_path=str(run_dir.parent),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep,
                                                    checkpoint_score_attribute=spec.metric,
                                                    checkpoint_score_order=spec.mode),
            # Figures, best weights and offline W&B runs live in the trial's working
            # directory; syncing artifacts brings them to the run directory (or cloud storage).
            sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=[ProgressLine(spec.metric, spec.mode)],
            verbose=1,
        ),
    )


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


class ProgressLine(Callback):
    """One line per trial event: done / running / errored and the best metric so far."""

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.best: Optional[float] = None
        self.last_print = 0.0

    def _line(self, trials: List[Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < 5:
            return
        self.last_print = now
        counts = {s: sum(t.status == s for t in trials) for s in ("TERMINATED", "RUNNING", "ERROR", "PENDING")}
        best = "n/a" if self.best is None else f"{self.best:.4f}"
        print(f"[specsweep] {counts['TERMINATED']}/{len(trials)} done, {counts['RUNNING']} running, "
              f"{counts['PENDING']} pending, {counts['ERROR']} errored; best {self.metric} {best}", flush=True)

    def on_trial_result(self, iteration: int, trials: List[Any], trial: Any, result: Dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)):
            better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            self.best = value if better else self.best
        self._line(trials)

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self._line(trials, force=True)

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self._line(trials, force=True)


def run_sweep(
    spec_path: Path,
    storage: Optional[Path] = None,
    name: Optional[str] = None,
    address: Optional[str] = None,
    smoke: bool = False,
    num_cpus: Optional[int] = None,
) -> SweepOutcome:
    """Validate ``spec_path``, create a fresh run directory, run the sweep, summarise it."""
    spec = load_spec(spec_path, smoke=smoke)
    storage = Path(storage).expanduser().resolve() if storage else default_storage()
    run_dir = _new_run_dir(storage, name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}")
    _prepare_data(spec)
    run_dir.mkdir(parents=True)
    (run_dir / SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False))
    (run_dir / RUN_FILE).write_text(json.dumps({"spec": str(spec_path), "smoke": smoke, "created": datetime.now().isoformat()}))
    start_ray(address, num_cpus)
    return _finish(_build_tuner(spec, run_dir, smoke), spec, run_dir)


def load_run(run_dir: Path) -> SweepSpec:
    run_dir = Path(run_dir).expanduser().resolve()
    if not (run_dir / SPEC_FILE).exists():
        raise RunDirError(f"{run_dir} is not a specsweep run directory (no {SPEC_FILE})")
    return validate_spec(yaml.safe_load((run_dir / SPEC_FILE).read_text()), str(run_dir / SPEC_FILE))


def resume_sweep(run_dir: Path, address: Optional[str] = None, restart_errored: bool = False,
                 num_cpus: Optional[int] = None) -> SweepOutcome:
    """Continue a killed or failed sweep in place: finished trials are kept, unfinished
    ones continue from their latest checkpoints, errored ones are retried."""
    from ray import tune

    from specsweep.status import read_trials

    run_dir = Path(run_dir).expanduser().resolve()
    spec = load_run(run_dir)
    if not tune.Tuner.can_restore(str(run_dir)):
        raise RunDirError(f"{run_dir} has no Tune experiment state to resume (was the sweep started?)")
    trials = read_trials(run_dir)
    if trials and all(t["status"] == "TERMINATED" for t in trials):
        print(f"[specsweep] {run_dir}: all {len(trials)} trials already finished; nothing to resume")
        return SweepOutcome(run_dir, summary_rows(trials, spec), 0, 0)
    _prepare_data(spec)
    start_ray(address, num_cpus)
    smoke = json.loads((run_dir / RUN_FILE).read_text()).get("smoke", False)
    tuner = _build_tuner(spec, run_dir, smoke, restore=True, restart_errored=restart_errored)
    return _finish(tuner, spec, run_dir)


def _finish(tuner: Any, spec: SweepSpec, run_dir: Path) -> SweepOutcome:
    from specsweep.status import read_trials

    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    trials = read_trials(run_dir)
    rows = summary_rows(trials, spec)
    errored = sum(t["status"] == "ERROR" for t in trials)
    unfinished = sum(t["status"] not in ("TERMINATED", "ERROR") for t in trials)
    print(format_table(rows, spec))
    if errored:
        print(f"[specsweep] {errored} trial(s) errored:")
        for t in trials:
            if t["status"] == "ERROR":
                print(f"  {t['id']}: {t.get('error') or 'see its error.txt'}")
    print(f"[specsweep] run directory: {run_dir}")
    if interrupted or unfinished or errored:
        print(f"[specsweep] resume with: specsweep resume {run_dir}")
    return SweepOutcome(run_dir, rows, errored, unfinished)


def summary_rows(trials: List[Dict[str, Any]], spec: SweepSpec) -> List[Dict[str, Any]]:
    from specsweep.status import describe_config

    test_metric = spec.metric.replace("val_", "test_")
    rows = []
    for t in trials:
        m = t["metrics"]
        rows.append({"trial": t["id"], **describe_config(t["config"], spec), "status": t["status"],
                     f"best {spec.metric}": m.get(f"best_{spec.metric}"), test_metric: m.get(test_metric)})
    return rows


def format_table(rows: List[Dict[str, Any]], spec: SweepSpec) -> str:
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
