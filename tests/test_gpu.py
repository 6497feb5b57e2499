"""What only a GPU can show: training steps that never wait for the GPU, the non-finite
loss stop on a GPU, the GPU measurement of ``resources.gpus: auto`` and a sweep packed by
it. Skipped without CUDA (CI); ``bench/gpu_session.sh`` runs them on a lent GPU machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from specsweep.data.datasets import prepare_dataset
from specsweep.data.loaders import make_loaders
from specsweep.spec import TrainConfig, TrialConfig, load_spec, plan_trials
from specsweep.trainables.calibrate import measure_steps
from specsweep.trainables.tasks import NonFiniteLossError
from specsweep.trainables.trial import build_trial_task, trainer_options, trial_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"
CUDA = torch.device("cuda", 0)


def _config(root: Path, **train) -> dict:
    return {
        "task": "kws", "seed": 3,
        "data": {"name": "speechcommands", "root": str(root)},
        "frontend": {"name": "nnaudio", "n_fft": 480, "hop_length": 160, "n_mels": 40, "setting": "D"},
        "backbone": {"name": "bcresnet", "width": 1.0},
        "train": TrainConfig(**{"epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 0.01,
                                "data_path": "device", **train}).model_dump(),
    }


def test_device_batches_and_training_steps_never_wait_for_the_gpu(speech_commands_tree, cache_dir):
    data = prepare_dataset({"name": "speechcommands", "root": str(speech_commands_tree)})
    cpu = make_loaders(data, 7, torch.Generator().manual_seed(5), balance_classes=True, device=torch.device("cpu"))
    gpu = make_loaders(data, 7, torch.Generator().manual_seed(5), balance_classes=True, device=CUDA)
    trial = TrialConfig.model_validate(_config(speech_commands_tree))
    task = build_trial_task(trial, data).to(CUDA)
    optimizer = task.configure_optimizers()
    assert all(group["fused"] is True for group in optimizer.param_groups)
    torch.cuda.synchronize()
    # Any operation that makes the CPU wait for the GPU raises in this mode.
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = []
        for waveform, targets in gpu["train"]:
            batches.append((waveform, targets))
            optimizer.zero_grad(set_to_none=True)
            loss = task._step((waveform, targets))[0]
            task._check_finite(loss)
            loss.backward()
            optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    task._read_checks(wait=True)
    expected = list(cpu["train"])
    assert len(batches) == len(expected) > 1
    for (wave_gpu, target_gpu), (wave_cpu, target_cpu) in zip(batches, expected):
        assert torch.equal(wave_gpu.cpu(), wave_cpu) and torch.equal(target_gpu.cpu(), target_cpu)


def test_a_nonfinite_loss_on_the_gpu_stops_the_fit_before_validation(speech_commands_tree, cache_dir, tmp_path):
    trial = TrialConfig.model_validate(_config(speech_commands_tree, optimizer="sgd", lr=1e30, epochs=2))
    pl.seed_everything(trial.seed, workers=True, verbose=False)
    data, loaders, _ = trial_data(trial)
    task = build_trial_task(trial, data)
    validated = []

    class Seen(pl.Callback):
        def on_validation_start(self, trainer, module):
            validated.append(trainer.current_epoch)

    trainer = pl.Trainer(logger=False, callbacks=[Seen()],
                         **trainer_options(trial.train, None, None, tmp_path, len(loaders["train"])))
    with pytest.raises(NonFiniteLossError, match=r"training loss is -?(nan|inf) at epoch 0, step \d+"):
        trainer.fit(task, loaders["train"], loaders["val"])
    assert validated == []


def test_gpu_measurement_of_a_model():
    spec = load_spec(QUICKSTART, smoke=True)
    measure = measure_steps(plan_trials(spec)[3], cpus=1, seconds=1.0)
    assert measure.device == torch.cuda.get_device_name(0)
    assert measure.total_mib > measure.peak_mib > 0
    assert measure.busy is not None and 0 < measure.busy <= 1
    assert measure.clips_per_s > 0


def test_quickstart_sweep_packed_by_auto(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed on this GPU machine")
    from specsweep.rundir import RUN_FILE

    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["resources"]["gpus"] = "auto"
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "specsweep", "run", str(path), "--smoke-test", "--storage",
                           str(tmp_path / "runs"), "--name", "auto"], capture_output=True, text=True, timeout=900,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    packing = json.loads((tmp_path / "runs" / "auto" / RUN_FILE).read_text())["gpu_packing"]
    assert len(packing) == 4 and all(row["per_gpu"] >= 1 and 0 < row["gpus"] <= 1 for row in packing)
    assert "per GPU" in done.stdout
    logs = list((tmp_path / "runs" / "auto").glob("trial_*/trial.log"))
    assert len(logs) == 4 and all("used: True" in log.read_text() for log in logs)
    print(done.stdout[-4000:])
