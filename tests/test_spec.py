"""Spec validation: each bad spec gets its own clear message, before Ray or a run directory exists."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specsweep.spec import SpecError, load_spec, num_trials, plan_trials, smoke_spec, validate_spec

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())


def _with(path: str, value):
    spec = copy.deepcopy(QUICKSTART)
    *parents, leaf = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return spec


BAD_SPECS = [
    (_with("colour", "blue"), r"colour: unknown key"),
    (_with("train.epochs", "ten"), r"train\.epochs: .*integer"),
    (_with("train.lr", -1), r"train\.lr: .*greater than 0"),
    (_with("task", "tts"), r"task: must be one of asr, kws, got 'tts'"),
    (_with("frontend.name", "leaf"), r"frontend\.name: unknown frontend 'leaf'; allowed: fastaudio, nnaudio"),
    (_with("frontend.n_mels", 0), r"frontend\.n_mels"),
    (_with("frontend.n_mels", 500), r"frontend\.n_mels.*241"),
    (_with("frontend.mask_bins", [[50, 25]]), r"frontend\.mask_bins"),
    (_with("frontend.mask_bins", [[200, 300]]), r"frontend\.mask_bins.*241"),
    (_with("frontend.setting", "E"), r"frontend\.setting"),
    (_with("backbone.name", "resnet50"), r"backbone\.name: unknown backbone 'resnet50'"),
    (_with("backbone.depth", 3), r"backbone\.depth: unknown key for backbone 'bcresnet'"),
    (_with("data.name", "librispeech"), r"data\.name: unknown dataset 'librispeech'"),
    (_with("resources.gpus", 1.5), r"resources\.gpus: fractional GPUs must be at most 1"),
    (_with("wandb.api_key", "abc123"), r"wandb\.api_key: never put a W&B key in a spec"),
    (_with("search.algorithm", "optuna"), r"search\.space\.frontend\.setting: grid values cannot be used with search\.algorithm optuna"),
    (_with("search.space", {"model.n_mels": {"grid": [10]}}), r"search\.space\.model\.n_mels: keys must start with"),
    (_with("search.space", {"frontend.n_mels": {"grid": [10, 400]}}), r"search\.space\.frontend\.n_mels: value 400"),
    (_with("search.space", {"train.lr": {"uniform": [0.1, 0.01]}}), r"low < high"),
    (_with("search.space", {"train.lr": {"grid": [0.1], "choice": [0.2]}}), r"exactly one of grid, choice"),
    (_with("search.space", {"train.lr": {"loguniform": [0.0001, 0.1]}}), r"grid cannot sample train\.lr"),
    (_with("search.metric", "val_per"), r"search\.metric: 'val_per' is not reported by task kws"),
    (_with("scheduler.name", "pbt"), r"scheduler\.name: unknown scheduler 'pbt'; allowed: asha, fifo$"),
    (_with("search.algorithm", "bayes"), r"search\.algorithm: unknown searcher 'bayes'; allowed: grid, optuna, random$"),
]


@pytest.mark.parametrize("raw, message", BAD_SPECS, ids=[m[:40] for _, m in BAD_SPECS])
def test_bad_spec_message(raw, message):
    with pytest.raises(SpecError) as info:
        validate_spec(raw, "bad.yaml")
    assert any(re.search(message, p) for p in info.value.problems), info.value.problems


def test_several_problems_are_reported_together():
    raw = _with("colour", "blue")
    raw.setdefault("train", {})["epochs"] = 0
    with pytest.raises(SpecError) as info:
        validate_spec(raw)
    assert len(info.value.problems) == 2


def test_bad_spec_on_the_command_line_starts_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with("frontend.mask_bins", [[50, 25]])))
    storage = tmp_path / "runs"
    sessions = set(Path("/tmp/ray").glob("session_*"))
    done = subprocess.run([sys.executable, "-m", "specsweep.cli", "run", str(bad), "--storage", str(storage)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "frontend.mask_bins" in done.stderr and str(bad) in done.stderr
    assert "Traceback" not in done.stderr
    assert not storage.exists()
    assert set(Path("/tmp/ray").glob("session_*")) == sessions, "a Ray instance was started"


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def test_quickstart_expands_to_eight_trials():
    spec = load_spec(ROOT / "sweeps" / "quickstart.yaml")
    trials = plan_trials(spec)
    assert num_trials(spec) == len(trials) == 8
    assert sorted((t.setting, t.seed) for t in trials) == [
        (s, seed) for s in "ABCD" for seed in (1, 2)
    ]


def test_smoke_truncates_grid_and_seeds():
    raw = _with("search.space", {"frontend.n_mels": {"grid": [10, 20, 30, 40]}, "frontend.setting": {"grid": list("ABCD")}})
    spec = smoke_spec(validate_spec(raw))
    assert spec.train.epochs == 1 and spec.seeds == [1]
    assert spec.search.space["frontend.n_mels"].grid == [10, 40]
    assert spec.data["clips_per_word"] == 6
