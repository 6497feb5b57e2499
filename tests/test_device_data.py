"""The device-resident data path gives the DataLoader's batches, in its order, and the same trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import SequentialSampler

from specsweep.data.cache import CachedAudio, ClipSource, build_cache
from specsweep.data.datasets import prepare_dataset
from specsweep.data.loaders import DeviceBatches, make_loaders, resolve_data_path
from specsweep.spec import SpecError, TrainConfig, TrialConfig, validate_spec
from specsweep.trainables.trial import build_trial_task, trainer_options, trial_data

CPU = torch.device("cpu")


def _config(root: Path, data_path: str, **train: Any) -> Dict[str, Any]:
    return {
        "task": "kws", "seed": 3,
        "data": {"name": "speechcommands", "root": str(root)},
        "frontend": {"name": "nnaudio", "n_fft": 480, "hop_length": 160, "n_mels": 40, "setting": "D"},
        "backbone": {"name": "bcresnet", "width": 1.0},
        "train": TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=0.01, schedule="cosine", warmup_epochs=1,
                             balance_classes=True, data_path=data_path, **train).model_dump(),
    }


@pytest.mark.parametrize("balance,shuffle,drop_last", [(True, True, True), (False, True, True), (False, False, False)])
def test_device_batches_equal_the_loaders_and_advance_the_same_generators(speech_commands_tree, cache_dir, balance,
                                                                          shuffle, drop_last):
    data = prepare_dataset({"name": "speechcommands", "root": str(speech_commands_tree)})
    runs = {}
    for path in ("loader", "device"):
        torch.manual_seed(11)
        generator = torch.Generator().manual_seed(5)
        loaders = make_loaders(data, 7, generator, balance_classes=balance, shuffle=shuffle, drop_last=drop_last,
                               device=CPU if path == "device" else None)
        assert isinstance(loaders["train"], DeviceBatches) == (path == "device")
        # Two epochs of training batches, then the validation and test passes, as a trial draws them.
        batches = [b for _ in range(2) for b in loaders["train"]] + list(loaders["val"]) + list(loaders["test"])
        runs[path] = (batches, len(loaders["train"]), generator.get_state(), torch.get_rng_state())
    (loader_batches, loader_len, loader_gen, loader_rng), (device_batches, device_len, device_gen, device_rng) = \
        runs["loader"], runs["device"]
    clips = len(data.dataset("train"))
    assert clips % 7, "the tree must leave a partial batch for drop_last to matter"
    assert loader_len == device_len == (clips // 7 if drop_last else -(-clips // 7))
    assert len(loader_batches) == len(device_batches) > 2 * loader_len
    for (wave_a, target_a), (wave_b, target_b) in zip(loader_batches, device_batches):
        assert wave_a.dtype == wave_b.dtype == torch.float32 and target_a.dtype == target_b.dtype == torch.int64
        assert torch.equal(wave_a, wave_b) and torch.equal(target_a, target_b)
    first, second = (torch.cat([t for _, t in loader_batches[e * loader_len:(e + 1) * loader_len]]) for e in (0, 1))
    if shuffle:
        # The order differs between epochs: the comparison above is not of one fixed order.
        assert not torch.equal(first, second)
    else:
        # The split in its stored order, every epoch, the last partial batch kept.
        assert len(first) == clips and torch.equal(first, second)
        in_order = torch.tensor([data.dataset("train")[i][1] for i in range(clips)])
        assert torch.equal(first.flatten(), in_order.flatten())
    assert torch.equal(loader_gen, device_gen) and torch.equal(loader_rng, device_rng)


def _fit(config: Dict[str, Any], root: Path) -> tuple[Dict[str, float], Dict[str, torch.Tensor]]:
    trial = TrialConfig.model_validate(config)
    pl.seed_everything(trial.seed, workers=True, verbose=False)
    data, loaders, _ = trial_data(trial)
    task = build_trial_task(trial, data)
    trainer = pl.Trainer(logger=False, **trainer_options(trial.train, 1.0, 1.0, root))
    trainer.fit(task, loaders["train"], loaders["val"])
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update(trainer.test(task, loaders["test"], verbose=False)[0])
    return metrics, task.state_dict()


@pytest.mark.kernel_path
def test_a_trial_fits_the_same_on_either_data_path(speech_commands_tree, cache_dir, tmp_path):
    loader_metrics, loader_state = _fit(_config(speech_commands_tree, "loader"), tmp_path / "a")
    device_metrics, device_state = _fit(_config(speech_commands_tree, "device"), tmp_path / "b")
    assert set(loader_metrics) >= {"train_loss", "val_acc", "val_loss", "test_acc", "test_loss"}
    assert loader_metrics == device_metrics
    assert loader_state.keys() == device_state.keys()
    for name, value in loader_state.items():
        assert torch.equal(value, device_state[name]), name


def test_auto_data_path_and_what_the_device_path_refuses(speech_commands_tree, cache_dir, tmp_path):
    data = prepare_dataset({"name": "speechcommands", "root": str(speech_commands_tree)})
    cuda = torch.device("cuda", 0)
    assert resolve_data_path("auto", data, cuda) == "device" and resolve_data_path("auto", data, CPU) == "loader"
    assert resolve_data_path("loader", data, cuda) == "loader" and resolve_data_path("device", data, CPU) == "device"
    utterances = type(data)("asr", data.labels, data.splits, data.sample_rate, None)
    assert resolve_data_path("auto", utterances, cuda) == "loader"
    clips = [speech_commands_tree / "yes" / "aa11_nohash_0.wav", speech_commands_tree / "yes" / "bb22_nohash_0.wav"]
    uneven = CachedAudio(build_cache([ClipSource(str(c), (0,)) for c in clips], 16000, tmp_path / "c"))
    with pytest.raises(ValueError, match="clips of one length.*2 clip lengths.*data_path: loader"):
        DeviceBatches(uneven, 2, SequentialSampler(uneven), None, False, CPU)
    spec = {"name": "x", "task": "asr", "data": {"name": "embedded_phonemes"}, "frontend": {"name": "nnaudio"},
            "backbone": {"name": "simple"}, "train": {"data_path": "device"}}
    with pytest.raises(SpecError, match="train.data_path: device needs clips of one length"):
        validate_spec(spec)


@pytest.mark.kernel_path
@pytest.mark.parametrize("task", ["kws", "asr"])
def test_epoch_training_metrics_are_the_mean_over_every_step(task, cache_dir, tmp_path):
    """The training loss is logged once per epoch (at its last step); its value is still
    the mean over the epoch's clips of every step's loss, and the accuracy is logged."""
    if task == "kws":
        config = {"task": "kws", "seed": 2, "data": {"name": "embedded_kws", "clips_per_word": 6},
                  "frontend": {"name": "nnaudio", "n_mels": 20, "setting": "B"}, "backbone": {"name": "simple"},
                  "train": TrainConfig(epochs=2, batch_size=7, lr=0.003).model_dump()}
    else:
        config = {"task": "asr", "seed": 2, "data": {"name": "embedded_phonemes", "n_utterances": 40},
                  "frontend": {"name": "nnaudio", "n_mels": 20, "setting": "B"}, "backbone": {"name": "simple"},
                  "train": TrainConfig(epochs=2, batch_size=3, lr=0.003).model_dump()}
    trial = TrialConfig.model_validate(config)
    pl.seed_everything(trial.seed, workers=True, verbose=False)
    data, loaders, _ = trial_data(trial)
    task_module = build_trial_task(trial, data)
    steps: list = []
    epochs: list = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            steps.append((trainer.current_epoch, float(outputs["loss"]), len(batch[0])))

        def on_train_epoch_end(self, trainer, module):
            epochs.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train_")})

    trainer = pl.Trainer(logger=False, callbacks=[Record()],
                         **trainer_options(trial.train, None, 1, tmp_path, len(loaders["train"])))
    trainer.fit(task_module, loaders["train"], loaders["val"])
    assert len(epochs) == 2 and len(steps) == 2 * len(loaders["train"])
    for epoch, logged in enumerate(epochs):
        losses = [(loss, n) for e, loss, n in steps if e == epoch]
        mean = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
        assert logged["train_loss"] == pytest.approx(mean, rel=1e-5)
        if task == "kws":
            assert 0.0 <= logged["train_acc"] <= 1.0
    # Different epochs, different values: the sums start again each epoch.
    assert epochs[0]["train_loss"] != epochs[1]["train_loss"]


def test_a_resumed_optimizer_keeps_its_implementation(cache_dir):
    """Loading a checkpoint's optimizer state keeps the optimizer as the trial built it:
    on the CPU not fused even from a GPU trial's (fused) checkpoint, and a fused one stays
    fused, its step counts on the parameters' device, from a checkpoint without fusion."""
    config = {"task": "kws", "seed": 1, "data": {"name": "embedded_kws", "clips_per_word": 6},
              "frontend": {"name": "nnaudio", "setting": "D"}, "backbone": {"name": "simple"},
              "train": TrainConfig(epochs=1, batch_size=4, schedule="constant").model_dump()}
    trial = TrialConfig.model_validate(config)
    data, loaders, _ = trial_data(trial)
    task = build_trial_task(trial, data)
    ours = task.configure_optimizers()
    params = [p for group in ours.param_groups for p in group["params"]]
    fused = torch.optim.Adam([{"params": g["params"], "lr": g["lr"]} for g in ours.param_groups], fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    fused.step()
    ours.load_state_dict(fused.state_dict())
    assert all(group["fused"] is None for group in ours.param_groups)
    ours.step()
    assert all(ours.state[p]["step"].item() == 2.0 for p in params)
    # The other way round: keep_implementation on a fused optimizer, a plain checkpoint.
    from specsweep.trainables.tasks import keep_implementation

    again = torch.optim.Adam([{"params": g["params"], "lr": g["lr"]} for g in ours.param_groups], fused=True)
    keep_implementation(again)
    again.load_state_dict(ours.state_dict())
    assert all(group["fused"] is True for group in again.param_groups)
    assert all(again.state[p]["step"].dtype == torch.float32 and again.state[p]["step"].device == p.device
               for p in params)
    again.step()
