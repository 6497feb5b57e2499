"""sweeps/paper runs the study's protocol (../shared/seed/original-protocol.md): every trial
of every paper spec carries the original's training values, data protocol, models and
parameter counts, as `specsweep inspect --json` shows them."""

import json
from pathlib import Path

import pytest

from specsweep.cli import main
from specsweep.frontends import frontend_argument
from specsweep.recipes import RECIPES
from specsweep.spec import load_spec, validate_spec

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "sweeps" / "paper").glob("*.yaml"))

TRAIN = {
    "kws": {"optimizer": "sgd", "lr": 1e-3, "frontend_lr": None, "momentum": 0.9, "weight_decay": 1e-3,
            "schedule": "constant", "warmup_epochs": 0.0, "epochs": 200, "batch_size": 100,
            "test_weights": "last", "balance_classes": False,
            "class_weights": {"_silence_": 4.6, "_unknown_": 1 / 17}, "drop_last": False, "ctc_drop_frames": 0},
    # The study's TIMIT loader had no shuffle, and its collate gave CTC samples // 160 - 1 frames.
    "asr": {"optimizer": "adam", "lr": 1e-3, "frontend_lr": None, "weight_decay": 0.0, "schedule": "constant",
            "warmup_epochs": 0.0, "epochs": 400, "batch_size": 16, "eval_batch_size": 1,
            "test_weights": "best", "best_by": "val_loss", "shuffle": False, "drop_last": False,
            "ctc_drop_frames": 2},
}
DATA = {"speechcommands": {"test_set": "archive", "silence": "paper"}, "timit": {"protocol": "paper"}}
# Trainable parameters of the study's models at 40 bins (counted from its model code).
BACKBONE_PARAMS = {("kws", "bcresnet"): 9160, ("asr", "bcresnet"): 29640,
                   ("kws", "simple"): 48492, ("asr", "simple"): 22974}
STFT_PARAMS = 2 * 241 * 480
# A Mel basis row of 241 STFT bins per bin; a FastAudio centre and bandwidth per bin.
FILTERBANK_PARAMS_PER_BIN = {"nnaudio": 241, "fastaudio": 2}


def _plan(path, capsys):
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["trials"]


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_trials_carry_the_original_values(path, capsys):
    spec = load_spec(path)
    assert spec.recipe == "paper"
    trials = _plan(path, capsys)
    assert trials
    for trial in trials:
        config, params = trial["config"], trial["trainable_params"]
        task, fe, bb = config["task"], config["frontend"], config["backbone"]
        for key, value in TRAIN[task].items():
            assert config["train"][key] == pytest.approx(value), (path.name, key)
        for key, value in DATA[config["data"]["name"]].items():
            assert config["data"][key] == value, (path.name, key)
        # nnAudio / FastAudio STFT of the study: n_fft 480, hop 160, centred frames, as the
        # front-end gets them (the spec's value, else its constructor's default).
        resolved = {key: frontend_argument(fe, key) for key in ("n_fft", "hop_length", "center", "trainable_stft_eps")}
        # nnAudio's trainable STFT adds 1e-8 under its magnitude's root.
        assert resolved == {"n_fft": 480, "hop_length": 160, "center": True, "trainable_stft_eps": 1e-8}, path.name
        n_mels = frontend_argument(fe, "n_mels")
        if n_mels != 40:
            assert bb["name"] == "simple", "the study's n_mels runs use the simple model"
        else:
            assert params["backbone"] == BACKBONE_PARAMS[task, bb["name"]], (path.name, bb["name"])
        setting = fe["setting"]
        assert params["stft"] == (STFT_PARAMS if setting in "CD" else 0)
        assert params["filterbank"] == (FILTERBANK_PARAMS_PER_BIN[fe["name"]] * n_mels if setting in "BD" else 0)
        if fe.get("mask_bins"):
            assert fe["mask_bins"] == [25, 50] and fe["power"] == 1.0 and setting in "AC"


def test_paper_maskout_and_n_mels_grids_match_the_study():
    kws_mask = load_spec(ROOT / "sweeps" / "paper" / "kws_maskout.yaml")
    assert kws_mask.search.space["frontend.setting"].grid == ["A", "C"]
    assert kws_mask.search.space["backbone.name"].grid == ["bcresnet", "simple"]
    asr_mask = load_spec(ROOT / "sweeps" / "paper" / "asr_maskout.yaml")
    assert asr_mask.backbone["name"] == "simple" and "backbone.name" not in asr_mask.search.space
    for name in ("kws_n_mels", "asr_n_mels", "kws_fastaudio_n_mels", "asr_fastaudio_n_mels"):
        spec = load_spec(ROOT / "sweeps" / "paper" / f"{name}.yaml")
        assert spec.search.space["frontend.n_mels"].grid == [10, 20, 30, 40]
        assert spec.backbone["name"] == "simple"


def test_extensions_are_labelled_and_outside_sweeps_paper():
    for path in sorted((ROOT / "sweeps" / "extensions").glob("*.yaml")):
        assert "EXTENSION" in path.read_text().splitlines()[0]
        assert load_spec(path).description.startswith("EXTENSION")


def test_spec_values_win_over_the_recipe():
    spec = validate_spec({"name": "x", "task": "kws", "recipe": "paper", "data": {"name": "embedded_kws"},
                          "frontend": {"name": "nnaudio"}, "backbone": {"name": "simple"},
                          "train": {"epochs": 3, "lr": 0.1}})
    assert (spec.train.epochs, spec.train.lr, spec.train.optimizer, spec.train.momentum) == (3, 0.1, "sgd", 0.9)
    # Dataset presets apply only to the dataset they name.
    assert spec.data == {"name": "embedded_kws"}
    assert validate_spec(spec.model_dump()).model_dump() == spec.model_dump(), "resolving twice changes nothing"


def test_quickstart_recipe_is_labelled_not_paper():
    assert not RECIPES.about("quick").paper_protocol and RECIPES.about("paper").paper_protocol
    assert load_spec(ROOT / "sweeps" / "quickstart.yaml").recipe == "quick"


@pytest.mark.parametrize("name", ["kws_settings.yaml", "asr_settings.yaml"])
def test_paper_trials_train_the_mel_basis_as_the_original(name):
    """The original's optimizers (tasks/speechcommand.py, tasks/Timit.py; docs/protocol.md):
    KWS SGD with the Mel basis and the STFT in their own group at the backbone's lr,
    momentum and weight decay; ASR Adam at lr 1e-3 without weight decay. Setting D, so both
    bases are trainable."""
    import torch

    from specsweep.data.datasets import PreparedData, describe_dataset
    from specsweep.spec import plan_trials
    from specsweep.trainables.trial import build_trial_task

    trial = next(t for t in plan_trials(load_spec(ROOT / "sweeps" / "paper" / name)) if t.setting == "D")
    task = build_trial_task(trial, PreparedData.from_info(describe_dataset(trial.data), {}))
    optimizer = task.configure_optimizers()
    backbone, frontend = optimizer.param_groups
    assert {id(p) for p in frontend["params"]} == {id(p) for p in task.net.frontend.parameters()}
    assert len(frontend["params"]) == 3  # the Mel basis and the STFT's sine and cosine kernels
    expected = TRAIN[trial.task]
    for group in (backbone, frontend):
        assert group["lr"] == expected["lr"] and group["weight_decay"] == expected["weight_decay"]
    if trial.task == "kws":
        assert type(optimizer) is torch.optim.SGD and frontend["momentum"] == expected["momentum"]
    else:
        assert type(optimizer) is torch.optim.Adam
