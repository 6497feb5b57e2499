"""Search algorithms and schedulers end to end on tiny trials (real Ray, real Lightning)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from asha_trials import GOOD_LR, STARVED_LRS, asha_sweep
from specsweep.results.status import read_trials
from specsweep.search import SCHEDULERS, SEARCHERS, build_scheduler, build_searcher
from specsweep.spec import SpecError, num_trials, param_space, validate_spec
from specsweep.sweep.launcher import run_sweep

MINIMAL: Dict[str, Any] = {
    "name": "registry", "task": "kws", "data": {"name": "embedded_kws"}, "frontend": {"name": "nnaudio"},
    "backbone": {"name": "simple"}, "train": {"epochs": 2}, "seeds": [1],
}


def _spec(tmp_path: Path, name: str, **overrides: Any) -> Path:
    spec: Dict[str, Any] = {
        "name": name,
        "task": "kws",
        "data": {"name": "embedded_kws", "clips_per_word": 6},
        "frontend": {"name": "nnaudio", "n_mels": 20, "setting": "A"},
        "backbone": {"name": "simple"},
        "train": {"epochs": 1, "batch_size": 16},
        "seeds": [1],
    }
    spec.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_sampling_searchers_draw_from_the_space(algorithm, ray_session, tmp_path):
    path = _spec(tmp_path, algorithm, search={
        "algorithm": algorithm, "num_samples": 3,
        "space": {"train.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "frontend.setting": {"choice": ["A", "B"]}},
    })
    outcome = run_sweep(path, storage=tmp_path, name="run")
    assert outcome.exit_code == 0
    trials = read_trials(outcome.run_dir)
    assert len(trials) == 3
    lrs = [t["config"]["train"]["lr"] for t in trials]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 3
    assert all(t["config"]["frontend"]["setting"] in ("A", "B") for t in trials)
    assert all(t["status"] == "TERMINATED" and "val_acc" in t["metrics"] for t in trials)


@pytest.mark.kernel_path
def test_asha_stops_poor_trials_early(ray_session, tmp_path):
    epochs = 4
    # Which trials ASHA stops holds by construction (asha_trials), on any CPU.
    path = _spec(tmp_path, "asha", **asha_sweep(epochs))
    outcome = run_sweep(path, storage=tmp_path, name="run")
    trials = read_trials(outcome.run_dir)
    iterations = {t["config"]["train"]["lr"]: t["metrics"]["training_iteration"] for t in trials}
    # The good trial (first, so it sets the bar) runs all epochs plus its test report; the
    # learning-rate-starved ones miss that bar at the first rung.
    assert iterations == {GOOD_LR: epochs + 1, **{lr: 1 for lr in STARVED_LRS}}, iterations
    assert all(t["status"] == "TERMINATED" for t in trials)
    # Stopped trials finish their W&B runs before Tune syncs their folders to storage, the
    # folders an offline sweep is later synced to W&B from; one actor ran all three trials, so
    # both the reuse and the final exit of the actor follow a stopped trial.
    logs = sorted(outcome.run_dir.glob("trial_*/wandb/offline-run-*/logs/debug.log"))
    assert len(logs) == len(trials)
    for log in logs:
        text = log.read_text()
        assert "got exitcode: 0" in text and "Problem finishing run" not in text, log


def _minimal_spec(section: str, selected: Dict[str, Any]):
    """A valid spec selecting a component by ``selected``, with one swept value in the
    first form (grid, else choice) the searcher takes."""
    problems = []
    for form in ("grid", "choice"):
        raw = {**MINIMAL, section: selected}
        raw["search"] = {**raw.get("search", {}), "space": {"train.lr": {form: [0.01, 0.02]}}}
        try:
            return validate_spec(raw, f"{section} {selected}")
        except SpecError as err:
            problems += err.problems
    raise AssertionError(problems)


REGISTERED = [("search", {"algorithm": name}) for name in SEARCHERS] + [("scheduler", {"name": name}) for name in SCHEDULERS]


@pytest.mark.parametrize("section, selected", REGISTERED, ids=[f"{s}-{n}" for s, c in REGISTERED for n in c.values()])
def test_every_registered_searcher_and_scheduler_runs_in_tune(section, selected, ray_session, tmp_path):
    from ray import tune

    # Defined here, Ray ships the function itself to its workers (this module is not importable there).
    def report_epochs(config: Dict[str, Any]) -> None:
        for epoch in range(config["train"]["epochs"] + 1):
            tune.report({"val_acc": config["train"]["lr"] * (epoch + 1)})

    spec = _minimal_spec(section, selected)
    tuner = tune.Tuner(
        report_epochs, param_space=param_space(spec),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=build_searcher(spec),
                                    scheduler=build_scheduler(spec), num_samples=spec.search.num_samples,
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(name="registry", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert len(results) == num_trials(spec)
    assert {r.config["train"]["lr"] for r in results} <= {0.01, 0.02}
    assert all(r.metrics["val_acc"] > 0 for r in results)
