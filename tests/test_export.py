"""The model in hand and CLI overrides, on one real smoke sweep (local Ray, Lightning, W&B
offline) run by docs/run-directory.md's commands as written: ``run --set`` recorded in the
run directory, the ``trials.tsv`` index, ``load_trial`` reproducing each trial's reported
test accuracy and loss through the project's own loaders, ``export`` as a torch.export
program, run directories without ``tested.pt``, and the document's Python examples."""

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import specsweep
from specsweep.cli import main
from specsweep.results.export import TrialLoadError
from specsweep.results.status import read_trials
from specsweep.rundir import RunLocation, load_run, run_info
from specsweep.spec import TrialConfig
from specsweep.trainables.tested import TESTED_FILE
from specsweep.trainables.trial import trial_data

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"
DOC = ROOT / "docs" / "run-directory.md"


def _doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def docs_folder(ray_session, tmp_path_factory):
    """A folder where docs/run-directory.md's commands ran as written: a smoke sweep with
    --set into ./runs/qs and the export of its best trial."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "sweeps").symlink_to(ROOT / "sweeps")
    commands = [shlex.split(line) for block in _doc_blocks("bash") for line in block.splitlines() if line.strip()]
    assert [argv[:2] for argv in commands] == [["specsweep", "run"], ["specsweep", "export"]]
    cwd, storage = os.getcwd(), os.environ.pop("SPECSWEEP_STORAGE", None)
    os.chdir(folder)
    try:
        assert [main(argv[1:]) for argv in commands] == [0, 0]
    finally:
        os.chdir(cwd)
        if storage is not None:
            os.environ["SPECSWEEP_STORAGE"] = storage
    return folder


@pytest.fixture(scope="module")
def run_dir(docs_folder):
    return docs_folder / "runs" / "qs"


def test_the_docs_python_examples_run(docs_folder):
    blocks = _doc_blocks("python")
    assert len(blocks) == 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], cwd=docs_folder, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip()


def test_set_overrides_are_the_run_directorys_spec(run_dir):
    spec = load_run(run_dir)
    assert spec.seeds == [3]
    assert spec.search.space["frontend.setting"].grid == ["A", "D"]
    assert run_info(RunLocation(run_dir)).overrides == ["search.space.frontend.setting={grid: [A, D]}", "seeds=[3]"]
    configs = [t["config"] for t in read_trials(run_dir)]
    assert sorted((c["frontend"]["setting"], c["seed"]) for c in configs) == [("A", 3), ("D", 3)]


def test_index_maps_configurations_to_trial_folders(run_dir):
    header, *rows = [line.split("\t") for line in (run_dir / "trials.tsv").read_text().splitlines()]
    assert header == ["folder", "setting", "seed", "trial"]
    trials = {t["id"]: t for t in read_trials(run_dir)}
    assert sorted(row[1] for row in rows) == ["A", "D"]
    for folder, setting, seed, trial_id in rows:
        assert (run_dir / folder).is_dir() and folder == f"trial_{trial_id}"
        assert trials[trial_id]["config"]["frontend"]["setting"] == setting and seed == "3"


def _test_scores(model: torch.nn.Module, config: TrialConfig, batches: int) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on the first ``batches`` test batches
    of the trial's own loaders."""
    _, loaders, _ = trial_data(config)
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for waveform, targets in itertools.islice(loaders["test"], batches):
            logits = model(waveform)
            correct += int((logits.argmax(dim=1) == targets[:, 0]).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, targets[:, 0], reduction="sum"))
            total += len(targets)
    return correct / total, loss / total


def test_load_trial_reproduces_each_trials_test_accuracy(run_dir):
    spec = load_run(run_dir)
    for trial in read_trials(run_dir):
        model = specsweep.load_trial(run_dir, trial["id"])
        assert not model.training and isinstance(model.config, TrialConfig)
        assert model.trial.trial_id == trial["id"] and model.trial.weights_from.endswith(TESTED_FILE)
        assert len(model.labels) == 12 and model.trial.output_labels == model.labels
        # The smoke test scored the first limit_eval_batches test batches; the loss, a
        # continuous value, tells the tested weights from any others.
        accuracy, loss = _test_scores(model, model.config, spec.smoke.limit_eval_batches)
        assert accuracy == pytest.approx(trial["metrics"]["test_acc"], abs=1e-6)
        assert loss == pytest.approx(trial["metrics"]["test_loss"], rel=1e-5)


def test_best_is_the_best_trial_by_the_sweeps_metric(run_dir):
    spec = load_run(run_dir)
    key = f"best_{spec.metric}"
    trials = read_trials(run_dir)
    best = max(trials, key=lambda t: t["metrics"][key]) if spec.mode == "max" else min(trials, key=lambda t: t["metrics"][key])
    assert specsweep.load_trial(run_dir, "best").trial.trial_id == best["id"]
    assert specsweep.load_trial(run_dir, f"trial_{best['id']}").trial.trial_id == best["id"]


def test_export_writes_a_program_torch_loads_with_its_description(run_dir, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert main(["export", str(run_dir), "best", "--out", str(out)]) == 0
    extra = {"specsweep.json": ""}
    program = torch.export.load(str(out), extra_files=extra).module()
    card = json.loads(extra["specsweep.json"])
    model = specsweep.load_trial(run_dir, "best")
    assert card["trial_id"] == model.trial.trial_id and card["labels"] == model.labels
    assert card["sample_rate"] == 16000 and card["clip_samples"] == 16000
    waveform = torch.randn(3, card["clip_samples"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(program(waveform), model(waveform))
    # An existing file is never overwritten.
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["export", str(run_dir), "best", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before


def test_unknown_or_unfinished_trials_are_named(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "nosuch_00009", "--out", str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert "no trial 'nosuch_00009'" in err and "Traceback" not in err
    assert not (tmp_path / "m.pt2").exists()


def test_damaged_or_missing_tested_weights(run_dir, tmp_path, capsys):
    """A damaged tested.pt is named (exit 2, nothing written). A run written before trials
    saved tested.pt: the weights come from the checkpoint whose BestWeights chose them;
    without that checkpoint, a clear refusal."""
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    trial = read_trials(old)[0]
    tested = old / f"trial_{trial['id']}" / TESTED_FILE
    saved = torch.load(tested, weights_only=True)
    tested.write_bytes(b"not a torch file")
    assert main(["export", str(old), trial["id"], "--out", str(tmp_path / "m.pt2")]) == 2
    assert f"{tested} is damaged" in capsys.readouterr().err and not (tmp_path / "m.pt2").exists()
    for path in old.glob(f"trial_*/{TESTED_FILE}"):
        path.unlink()
    model = specsweep.load_trial(old, trial["id"])
    assert "checkpoint_" in model.trial.weights_from
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name]), name
    for folder in old.glob(f"trial_{trial['id']}/checkpoint_*"):
        shutil.rmtree(folder)
    with pytest.raises(TrialLoadError, match="cannot be recovered"):
        specsweep.load_trial(old, trial["id"])


def test_phoneme_model_is_exported_as_weights_that_load_trial_rebuilds(ray_session, tmp_path):
    """torch.export fixes the frames of the recurrent ASR backbones: the export falls back
    to weights and description, and load_trial rebuilds the same model from that file."""
    spec = QUICKSTART.parent / "paper" / "asr_settings.yaml"
    assert main(["run", str(spec), "--smoke-test", "--storage", str(tmp_path), "--name", "asr",
                 "--set", "data={name: embedded_phonemes}", "--set", "search.space={frontend.setting: {grid: [C]}}",
                 "--set", "seeds=[0]", "--set", "resources.gpus=0"]) == 0
    out = tmp_path / "asr.pt"
    assert main(["export", str(tmp_path / "asr"), "best", "--out", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert saved["format"] == "specsweep-weights/1"
    from_run, from_file = specsweep.load_trial(tmp_path / "asr"), specsweep.load_trial(out)
    assert from_file.trial.trial_id == from_run.trial.trial_id and from_file.trial.output_labels[0] == "<blank>"
    waveform = torch.randn(2, 12345, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(from_file(waveform), from_run(waveform))
    # Without tested.pt, the weights of the best epoch by train.best_by (val_loss, not the
    # sweep's metric) come from the checkpoint's BestWeights state of that monitor.
    (tmp_path / "asr" / f"trial_{from_run.trial.trial_id}" / TESTED_FILE).unlink()
    from_checkpoint = specsweep.load_trial(tmp_path / "asr")
    assert from_run.config.train.best_by == "val_loss" and "checkpoint_" in from_checkpoint.trial.weights_from
    for name, value in from_checkpoint.state_dict().items():
        assert torch.equal(value, from_run.state_dict()[name]), name


@pytest.mark.parametrize("setting, named", [
    ("train.lr=abc", "train.lr: must be a valid number"),
    ("train.lrr=0.1", "train.lrr: unknown key"),
    ("seeds", "--set seeds: expected KEY=VALUE"),
    ("seeds=[1", "--set seeds=[1: the value is not valid YAML"),
    ("seeds.x=1", "seeds is a value"),
    ("train..lr=1", "not a key"),
])
def test_bad_set_arguments_are_named_and_nothing_is_written(setting, named, tmp_path, capsys):
    for command in (["inspect", str(QUICKSTART)], ["run", str(QUICKSTART), "--storage", str(tmp_path / "runs")]):
        assert main([*command, "--set", setting]) == 2
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_inspect_plans_the_overridden_spec(capsys):
    assert main(["inspect", str(QUICKSTART), "--json", "--set", "train.lr=0.005", "--set", "seeds=[7]",
                 "--set", "search.space.frontend.setting={grid: [B]}"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(t["config"]["train"]["lr"], t["config"]["seed"], t["config"]["frontend"]["setting"])
            for t in plan["trials"]] == [(0.005, 7, "B")]
