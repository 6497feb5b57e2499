"""The cost of a sweep before it runs: ``specsweep inspect`` clip-steps and hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from specsweep.cli import main
from specsweep.data.datasets import declared_train_clips
from specsweep.plan.cost import CPU_RATES, GPU_RATES, clip_steps, recorded_rate
from specsweep.spec import PlannedTrial, Sampled, TrialConfig

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"
KWS_SETTINGS = QUICKSTART.parent / "paper" / "kws_settings.yaml"


def _inspect(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["inspect", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_quickstart_cost_from_declared_sizes(capsys):
    cost = _inspect(capsys, str(QUICKSTART))["cost"]
    # 12 epochs of the embedded set's 1,448 training clips (its default parameters), 8 trials.
    assert [t["clip_steps"] for t in cost["per_trial"]] == [12 * 1_448] * 8
    assert cost["total"]["clip_steps"] == 8 * 12 * 1_448
    setting_a = cost["per_trial"][0]
    assert setting_a["clips_per_s"] == CPU_RATES["kws", "bcresnet", "A"]
    assert setting_a["hours"] == pytest.approx(12 * 1_448 / CPU_RATES["kws", "bcresnet", "A"] / 3600)
    assert cost["total"]["trial_hours"] == pytest.approx(sum(t["hours"] for t in cost["per_trial"]))
    assert cost["total"]["gpu_hours"] == 0 and not cost["calibrated"]
    assert main(["inspect", str(QUICKSTART)]) == 0
    text = capsys.readouterr().out
    assert "cost: 139,008 training clip-steps" in text and "clip_steps" in text and "17,376" in text


def test_paper_grid_cost_on_a_gpu_share(capsys):
    cost = _inspect(capsys, str(KWS_SETTINGS))["cost"]
    # Speech Commands v2-12 as the loader builds it: 84,843 word clips + 3,076 silence; the
    # paper recipe's 200 epochs.
    assert {t["clip_steps"] for t in cost["per_trial"]} == {200 * 87_919}
    assert cost["total"]["clip_steps"] == 48 * 200 * 87_919
    bcresnet = next(t for t in cost["per_trial"] if "eager, DataLoader" in t["rate_source"])
    rate = GPU_RATES["kws", "bcresnet", False]
    # A quarter GPU: the trial's own rate, at most a quarter of what the GPU did for all trials.
    assert bcresnet["clips_per_s"] == min(rate.alone, rate.per_gpu / 4)
    assert cost["total"]["gpu_hours"] == pytest.approx(cost["total"]["trial_hours"] * 0.25)
    assert cost["total"]["cpu_hours"] == pytest.approx(cost["total"]["trial_hours"] * 2)


def test_declared_sizes_and_unknowns():
    assert declared_train_clips({"name": "timit", "root": "/nowhere"}) == 3_696
    assert declared_train_clips({"name": "timit", "root": "/nowhere", "protocol": "paper"}) == 4_000
    assert declared_train_clips({"name": "embedded_phonemes", "n_utterances": 80}) == 60
    config = {"task": "kws", "data": {"name": "speechcommands", "root": "/nowhere"}, "backbone": {"name": "simple"},
              "frontend": {"name": "nnaudio", "setting": "B"}, "train": {"epochs": 5, "batch_size": 50}}
    drawn = PlannedTrial.model_validate({**config, "sampled": {"train.epochs": Sampled("choice", (5, 10))}})
    assert clip_steps(drawn) is None
    assert clip_steps(TrialConfig.model_validate({**config, "train": {"epochs": 2, "batch_size": 50}}),
                      limit_train_batches=3) == 2 * 150
    assert recorded_rate(TrialConfig.model_validate({**config, "task": "asr", "data": {"name": "timit", "root": "/x"}}),
                         0.0) == (None, "no recorded figure for task asr: use --calibrate", 0.0)


def test_smoke_cost_and_calibration_on_this_machine(capsys, cache_dir, tmp_path):
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["search"]["space"]["frontend.setting"] = {"grid": ["A", "C"]}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(spec))
    cost = _inspect(capsys, str(path), "--smoke-test", "--calibrate")["cost"]
    # Smoke mode: one epoch of at most 3 batches of 32.
    assert [t["clip_steps"] for t in cost["per_trial"]] == [96, 96]
    assert cost["calibrated"]
    for trial in cost["per_trial"]:
        assert trial["rate_source"] == "calibrated on this machine (CPU)" and trial["clips_per_s"] > 0
        assert trial["hours"] == pytest.approx(96 / trial["clips_per_s"] / 3600)
    # Two settings, two models timed: their figures differ as their measurements do.
    assert cost["per_trial"][0]["clips_per_s"] != cost["per_trial"][1]["clips_per_s"]


@pytest.mark.parametrize("smoke", [False, True])
def test_inspect_a_spec_that_samples_what_shapes_the_model(tmp_path, capsys, smoke):
    """Sampled front-end and data values (a random search) are planned without a
    traceback: parameter counts over the choices or the range's ends, unknown costs."""
    spec = {"name": "sampled", "task": "kws", "recipe": "quick", "data": {"name": "embedded_kws"},
            "frontend": {"name": "nnaudio"}, "backbone": {"name": "bcresnet"},
            "search": {"algorithm": "random", "num_samples": 2, "space": {
                "frontend.setting": {"choice": ["A", "B"]}, "frontend.n_mels": {"randint": [20, 41]},
                "data.clips_per_word": {"choice": [4, 6]}}},
            "smoke": {"overrides": {"data": {"name": "embedded_kws"}}}}
    path = tmp_path / "sampled.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["inspect", str(path), "--json", *(["--smoke-test"] if smoke else [])]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["trials"]) == 2
    for trial in plan["trials"]:
        # Mel basis: none in A, 20 x 241 to 40 x 241 in B; BC-ResNet-1 at 20 and 40 bins.
        assert trial["trainable_params"] == {"stft": 0, "filterbank": "0..9640", "backbone": "8384..9160"}
    assert all(t["clip_steps"] is None and t["hours"] is None for t in plan["cost"]["per_trial"])
    assert main(["inspect", str(path)]) == 0
    assert "choice(A, B)" in capsys.readouterr().out
    # --calibrate has no one model to time; with gpus: auto it plans from the recorded figures.
    path.write_text(yaml.safe_dump({**spec, "resources": {"cpus": 1, "gpus": "auto"}}))
    assert main(["inspect", str(path), "--calibrate", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "--calibrate times nothing" in err and not json.loads(out)["cost"]["calibrated"]
