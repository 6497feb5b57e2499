"""specsweep report on run directories that real Ray Tune wrote: groups that never mix
backbones or front-ends, effects against A, claims' verdicts, several runs in one report.

The trials report fixed metrics instead of training (a function trainable, as Tune runs
specsweep's own), so that what the report computes can be checked exactly; Tune writes
the experiment state and result files as in any sweep.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from specsweep.cli import main
from specsweep.rundir import RunLocation, trial_dirname, write_run
from specsweep.spec import param_space, validate_spec

# Test accuracy by backbone, front-end shift, and the effect of setting B by backbone: the
# linear model gains more than BC-ResNet (the paper's "less effective as complexity grows").
BASE = {"bcresnet": 0.90, "simple": 0.40}
SHIFT = {"nnaudio": 0.0, "fastaudio": -0.02}
GAIN_B = {"bcresnet": 0.01, "simple": 0.05}
# Seed-to-seed variation: shared by A and B of a seed (initialisation) plus a little of B's own.
SEED = {1: 0.0, 2: 0.03, 3: -0.02}
B_NOISE = {1: 0.001, 2: -0.002, 3: 0.0015}


def expected_test_acc(config: Dict[str, Any]) -> float:
    backbone, frontend = config["backbone"]["name"], config["frontend"]["name"]
    gain = GAIN_B[backbone] + B_NOISE[config["seed"]] if config["frontend"]["setting"] == "B" else 0.0
    return BASE[backbone] + SHIFT[frontend] + SEED[config["seed"]] + gain


def _sweep(storage: Path, raw: Dict[str, Any]) -> Path:
    """Run ``raw``'s grid with Tune into ``storage/raw['name']`` the way specsweep lays out a
    run; trials with random Mel initialisation fail in setting B with seed 2."""
    from ray import cloudpickle, tune

    # This module is not importable in Ray's workers: its functions travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def report(config: Dict[str, Any]) -> None:
        if config["frontend"].get("random_mel_init") and config["seed"] == 2 and config["frontend"]["setting"] == "B":
            raise RuntimeError("this trial fails on purpose")
        acc = expected_test_acc(config)
        tune.report({"val_acc": acc - 0.05, "epoch": 0})
        tune.report({"val_acc": acc - 0.01, "epoch": 1, "best_val_acc": acc - 0.01, "test_acc": acc,
                     "frontend/filterbank_drift": 0.1 if config["frontend"]["setting"] == "B" else 0.0,
                     "frontend/stft_drift": 0.0})

    spec = validate_spec(raw, raw["name"])
    run_dir = storage / spec.name
    run_dir.mkdir()
    write_run(RunLocation(run_dir), spec, f"{spec.name}.yaml", smoke=False)
    tune.Tuner(report, param_space=param_space(spec),
               tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, trial_dirname_creator=trial_dirname),
               run_config=tune.RunConfig(name=spec.name, storage_path=str(storage), verbose=0)).fit()
    return run_dir


BASE_SPEC: Dict[str, Any] = {
    "task": "kws", "data": {"name": "embedded_kws", "clips_per_word": 6}, "frontend": {"name": "nnaudio"},
    "backbone": {"name": "bcresnet"}, "train": {"epochs": 2}, "seeds": [1, 2, 3],
}


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    settings = _sweep(storage, {**BASE_SPEC, "name": "kws-settings", "search": {"algorithm": "grid", "space": {
        # The front-end is the first swept key, as in sweeps/paper/kws_settings.yaml.
        "frontend.name": {"grid": ["nnaudio", "fastaudio"]}, "backbone.name": {"grid": ["bcresnet", "simple"]},
        "frontend.setting": {"grid": ["A", "B"]}}}})
    random_init = _sweep(storage, {**BASE_SPEC, "name": "kws-random-init", "seeds": [1, 2],
                                   "frontend": {"name": "nnaudio", "random_mel_init": True},
                                   "backbone": {"name": "simple"},
                                   "search": {"algorithm": "grid", "space": {"frontend.setting": {"grid": ["A", "B"]}}}})
    return {"settings": settings, "random_init": random_init}


def _rows(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_groups_each_backbone_and_frontend_apart(runs, tmp_path, capsys):
    assert main(["report", str(runs["settings"]), "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "report.csv")
    test = {(r["frontend"], r["backbone"], r["setting"]): (float(r["mean"]), int(r["n"]))
            for r in rows if r["metric"] == "test_acc"}
    assert len(test) == 2 * 2 * 2
    for (frontend, backbone, setting), (mean, n) in test.items():
        configs = [{"frontend": {"name": frontend, "setting": setting}, "backbone": {"name": backbone}, "seed": s}
                   for s in (1, 2, 3)]
        assert n == 3 and mean == pytest.approx(sum(map(expected_test_acc, configs)) / 3)
    markdown = (tmp_path / "report.md").read_text()
    for frontend in ("nnaudio", "fastaudio"):
        for backbone in ("bcresnet", "simple"):
            assert f"### frontend={frontend}, backbone={backbone}\n" in markdown
    assert "test_acc is measured with" in markdown and "best validation value over all epochs" in markdown


def test_effects_are_paired_by_seed_per_group(runs, tmp_path):
    assert main(["report", str(runs["settings"]), "--out", str(tmp_path)]) == 0
    effects = {(r["frontend"], r["backbone"]): r for r in _rows(tmp_path / "effects.csv")}
    assert len(effects) == 4 and {r["setting"] for r in effects.values()} == {"B"}
    for (frontend, backbone), row in effects.items():
        # Paired by seed, the seed's shared shift cancels: what is left is B's gain and its own noise.
        assert float(row["effect"]) == pytest.approx(GAIN_B[backbone] + sum(B_NOISE.values()) / 3, abs=1e-6)
        assert row["pairs"] == "3" and row["method"] == "paired t" and row["reading"] == "better"
        assert float(row["low"]) > 0 and row["unpaired"] == ""
    assert (tmp_path / "effects.png").stat().st_size > 1000


def test_claims_get_verdicts_and_the_data_is_named(runs, tmp_path):
    assert main(["report", str(runs["settings"]), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    claims = markdown[markdown.index("## The paper's claims"):]
    assert "embedded_kws is not Speech Commands" in claims
    assert "### kws-accuracy-gain: supported" in claims and "+14.2 percentage points" in claims
    # The linear model's gain exceeds BC-ResNet's by 0.04 with both front-ends.
    assert "### gain-shrinks-with-model-complexity: supported" in claims
    assert "### asr-per-drop: no trials" in claims


def test_several_runs_in_one_report_name_unpaired_trials(runs, tmp_path):
    assert main(["report", str(runs["settings"]), str(runs["random_init"]), "--out", str(tmp_path)]) == 0
    effects = _rows(tmp_path / "effects.csv")
    by_run = {}
    for r in effects:
        by_run.setdefault(r["run"], []).append(r)
    assert sorted(by_run) == ["kws-random-init", "kws-settings"] and len(by_run["kws-settings"]) == 4
    (random_init,) = by_run["kws-random-init"]
    # Seed 2 of B failed: its A trial is named, the effect rests on seed 1 alone.
    assert random_init["random_mel_init"] == "True" and random_init["pairs"] == "1"
    assert random_init["unpaired"] == "A seed 2 (no B)" and random_init["low"] == ""
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# Report of 2 runs") and "Unpaired trials (left out of the effects): A seed 2 (no B)" in markdown
    # The random-initialisation runs are not the abstract's plain Mel-initialised comparison.
    claim = markdown[markdown.index("### kws-accuracy-gain"):markdown.index("### asr-per-drop")]
    assert "kws-random-init" not in claim and "kws-settings" in claim


def test_several_runs_need_an_output_folder(runs, capsys):
    assert main(["report", str(runs["settings"]), str(runs["random_init"])]) == 2
    assert "give a local folder (--out)" in capsys.readouterr().err


def test_per_claims_read_lower_as_better():
    """The ASR claims on trials as read_trials returns them (PER: lower is better); the
    linear model's PER drops by 0.05 in setting B, BC-ResNet's by 0.01."""
    from specsweep.results.study import Run, group_trials, judge_claim, load_claims
    from specsweep.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "sweeps" / "paper" / "asr_settings.yaml")
    drop = {"simple": 0.05, "bcresnet": 0.01}
    # BC-ResNet's seeds vary otherwise than the linear model's (the same values, permuted):
    # the gains' differences then have a spread, as measured ones always do.
    noise = {"simple": B_NOISE, "bcresnet": {1: B_NOISE[3], 2: B_NOISE[1], 3: B_NOISE[2]}}
    trials = [{"id": f"{backbone}-{setting}-{seed}", "status": "TERMINATED", "config": {
                   "task": "asr", "data": {"name": "timit"}, "frontend": {"name": "nnaudio", "setting": setting},
                   "backbone": {"name": backbone}, "seed": seed},
               "metrics": {"test_per": 0.4 + SEED[seed] - (drop[backbone] + noise[backbone][seed] if setting == "B" else 0.0)}}
              for backbone in drop for setting in "AB" for seed in (1, 2, 3)]
    groups = group_trials([Run("asr", spec, trials)])
    assert [g.title for g in groups] == ["backbone=simple", "backbone=bcresnet"]
    (simple,) = groups[0].effects()
    assert simple.interval.mean == pytest.approx(-0.05 - sum(B_NOISE.values()) / 3) and simple.reading == "better"
    claims = {c["id"]: c for c in load_claims()}
    assert judge_claim(claims["asr-per-drop"], groups)["verdict"] == "supported"
    shrinks = judge_claim(claims["gain-shrinks-with-model-complexity-asr"], groups)
    assert shrinks["verdict"] == "supported" and shrinks["comparisons"][0].interval.mean == pytest.approx(0.04)
    assert judge_claim(claims["kws-accuracy-gain"], groups)["verdict"] == "no trials"


def test_groups_of_several_runs_are_named_by_what_the_study_varies():
    """Two runs whose backbones differ, and with them a backbone option (classifier_bias,
    which sorts first): the groups are named by the backbone, not by the option."""
    from specsweep.results.study import RUN_KEY, Run, grouping_keys
    from specsweep.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml")

    def run(name, backbone):
        return Run(name, spec, [{"id": f"{name}-{s}-{seed}", "status": "TERMINATED", "metrics": {}, "config": {
            "task": "kws", "data": {"name": "embedded_kws"}, "frontend": {"name": "nnaudio", "setting": s},
            "backbone": backbone, "seed": seed}} for s in "AB" for seed in (1, 2)])

    runs = [run("one", {"name": "bcresnet", "classifier_bias": True}),
            run("two", {"name": "simple", "classifier_bias": False})]
    assert grouping_keys(runs) == [RUN_KEY, "backbone.name"]
    assert grouping_keys(runs[:1]) == []


@pytest.mark.parametrize("text", ["claims: null\n", "claims: 3\n", "nothing: []\n", "claims: [{id: x}]\n",
                                  "claims: [\n", "- a\n- b\n"])
def test_a_damaged_claims_file_is_named(tmp_path, text):
    from specsweep.results.study import ClaimsError, load_claims

    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(ClaimsError, match=str(path)):
        load_claims(path)


def test_the_shipped_claims_file_loads():
    from specsweep.results.study import load_claims

    claims = load_claims()
    assert claims and {c["id"] for c in claims} >= {"kws-accuracy-gain", "asr-per-drop"}


def test_an_online_report_whose_server_fails_is_logged_offline(runs, tmp_path):
    """A W&B key but no server (a closed loopback port): the report's W&B run falls back to
    offline, as a trial's does, and says how to upload it (it ended in a traceback); the
    key reaches no file."""
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "feedface" * 5
    env = {**os.environ, "WANDB_MODE": "online", "WANDB_API_KEY": key, "WANDB_BASE_URL": f"http://127.0.0.1:{port}",
           "WANDB_INIT_TIMEOUT": "5"}
    done = subprocess.run([sys.executable, "-m", "specsweep", "report", str(runs["settings"]), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "W&B: wandb sync " in done.stdout and "Traceback" not in done.stderr
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
