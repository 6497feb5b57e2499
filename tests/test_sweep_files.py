"""Every sweep file under sweeps/ validates, plans, and runs in smoke mode on real Ray."""

from pathlib import Path
from typing import Any, Dict

import pytest

from specsweep.cli import main
from specsweep.data.datasets import prepare_dataset
from specsweep.frontends import build_frontend
from specsweep.results.status import read_trials
from specsweep.spec import SweepSpec, load_spec, plan_trials
from specsweep.sweep.launcher import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").rglob("*.yaml"))
# The quickstart runs in test_sweep.py with more checks.
PAPER = [p for p in SWEEPS if p.name != "quickstart.yaml"]


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT / "sweeps"))


def _most_a_test_metric_can_be(spec: SweepSpec, frontend: Dict[str, Any]) -> float:
    """1 for an accuracy. For a phone error rate the bound is set by the data, not by how
    training went: a greedy CTC hypothesis holds at most one phone per frame, so an
    utterance needs at most max(frames, reference length) edits. (The smoke data have up to
    16.6 frames per reference phone: a fixed cap of 10 held only while one epoch had taught
    the model to emit blanks.)"""
    if spec.task == "kws":
        return 1.0
    test = prepare_dataset(spec.data).dataset("test")
    count = build_frontend(frontend).num_frames
    return max(max(count(len(wave)), len(ref)) / len(ref) for wave, ref in (test[i] for i in range(len(test))))


def test_there_are_paper_sweeps_for_both_tasks():
    tasks = {load_spec(p).task for p in PAPER}
    assert tasks == {"kws", "asr"}
    names = {load_spec(p).name for p in SWEEPS}
    assert len(names) == len(SWEEPS), "sweep names must be unique"


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_spec_validates_and_plans_every_setting(path, capsys):
    spec = load_spec(path)
    settings = {t.setting for t in plan_trials(spec)}
    # The study masked STFT bins in settings A and C only; every other sweep compares all four.
    assert settings == (set("AC") if path.parent.name == "paper" and "maskout" in path.name else set("ABCD"))
    assert main(["inspect", str(path), "--json", "--smoke-test"]) == 0
    assert '"trainable_params"' in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER, ids=_id)
def test_sweep_runs_in_smoke_mode(path, ray_session, tmp_path):
    spec = load_spec(path, smoke=True)
    outcome = run_sweep(path, storage=tmp_path, name="smoke", smoke=True)
    assert outcome.exit_code == 0
    trials = read_trials(outcome.run_dir)
    assert len(trials) == len(plan_trials(spec))
    metric = spec.metric.replace("val_", "test_")
    for t in trials:
        assert t["status"] == "TERMINATED"
        assert 0.0 <= t["metrics"][metric] <= _most_a_test_metric_can_be(spec, t["config"]["frontend"])
        # One smoke epoch: the last (recipe paper, KWS) and the best (ASR) epoch are both epoch 0.
        assert t["metrics"]["tested_epoch"] == 0
