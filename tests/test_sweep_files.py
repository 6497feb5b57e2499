"""Every sweep file under sweeps/ validates, plans, and runs in smoke mode on real Ray."""

from pathlib import Path

import pytest

from specsweep.cli import main
from specsweep.launcher import run_sweep
from specsweep.spec import expand_trials, load_spec
from specsweep.status import read_trials

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").rglob("*.yaml"))
# The quickstart runs in test_sweep.py with more checks.
PAPER = [p for p in SWEEPS if p.name != "quickstart.yaml"]


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT / "sweeps"))


def test_there_are_paper_sweeps_for_both_tasks():
    tasks = {load_spec(p).task for p in PAPER}
    assert tasks == {"kws", "asr"}
    names = {load_spec(p).name for p in SWEEPS}
    assert len(names) == len(SWEEPS), "sweep names must be unique"


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_spec_validates_and_plans_every_setting(path, capsys):
    spec = load_spec(path)
    trials = expand_trials(spec)
    settings = {t["frontend"]["setting"] for t in trials}
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
    assert len(trials) == len(expand_trials(spec))
    metric = spec.metric.replace("val_", "test_")
    for t in trials:
        assert t["status"] == "TERMINATED"
        assert 0.0 <= t["metrics"][metric] <= (1.0 if spec.task == "kws" else 10.0)
        # One smoke epoch: the last (recipe paper, KWS) and the best (ASR) epoch are both epoch 0.
        assert t["metrics"]["tested_epoch"] == 0
