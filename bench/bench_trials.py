"""Whole-trial training throughput: clips/s of a training step of BC-ResNet and the simple
model behind the nnAudio front-end, per setting A-D, keyword spotting.

A step is what a trial's training loop does per batch: take the next batch of 32
one-second clips of the embedded keyword set's train split from the ``DataLoader``
(shuffled, ``num_workers=0``), or with ``--data-path device`` gathered on the device from
the split's audio copied there once (``train.data_path``), forward through front-end and backbone, cross-entropy,
backward, optimizer step, and the front-end's post-step clamping. The task comes from
``specsweep.assembly.build_task`` with a quickstart-like config; the optimizer is
the task's own (Adam, its parameter groups) without the learning-rate schedule, which
needs a Lightning trainer and costs nothing measurable. Lightning's loop and logging are
not included there; a second table times setting A's step through the trial's Lightning
loop (``trial_data``, ``build_trial_task``, ``trainer_options``) against the bare step, for
Lightning's own time per step (``bench_sweep`` has whole trials under Ray).

Each cell runs warm-up steps, then steps until ``--seconds`` have passed; 1 torch thread,
as a trial with 1 CPU in a sweep. ``bench/gpu_trials.py`` runs the same on a GPU.

Usage::

    python -m bench.bench_trials            # ~4 s per cell, 8 cells
    python -m bench.bench_trials --tiny     # 1 warm-up + 2 steps per cell, clips_per_word 6
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from bench.common import document, fmt, machine_line, out_path, parser, publish, table, versions_line
from specsweep.data.datasets import PreparedData, prepare_dataset
from specsweep.data.loaders import DATA_PATHS, make_loaders, resolve_data_path
from specsweep.frontends import SETTINGS

NAME = "trials"
BATCH = 32
BACKBONES: Dict[str, Dict[str, Any]] = {
    "BC-ResNet-1": {"name": "bcresnet", "width": 1.0},
    "simple": {"name": "simple"},
}
# The quickstart's trial config (sweeps/quickstart.yaml) without the sweep around it.
BASE_CONFIG: Dict[str, Any] = {
    "task": "kws",
    "data": {"name": "embedded_kws"},
    "frontend": {"name": "nnaudio", "n_fft": 480, "hop_length": 160, "n_mels": 40},
    "train": {"batch_size": BATCH, "optimizer": "adam", "lr": 0.02},
    "seed": 1,
}


def trial_config(backbone: Dict[str, Any], setting: str, data_config: Dict[str, Any]) -> Dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    config["data"] = dict(data_config)
    config["frontend"]["setting"] = setting
    config["backbone"] = dict(backbone)
    return config


def batches(data: PreparedData, device: torch.device, data_path: str) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Training batches forever, reshuffled each pass, as the trial's batches come:
    ``data_path`` ``loader`` (a ``DataLoader``) or ``device`` (gathered on ``device``)."""
    on_device = resolve_data_path(data_path, data, device) == "device"
    loader = make_loaders(data, BATCH, torch.Generator().manual_seed(0), device=device if on_device else None)["train"]
    for waveform, targets in itertools.chain.from_iterable(itertools.repeat(loader)):
        yield waveform.to(device, non_blocking=True), targets[:, 0].to(device, non_blocking=True)


def steps_per_second(config: Dict[str, Any], data: PreparedData, device: torch.device, seconds: float,
                     warmup: int, min_steps: int, data_path: str = "loader") -> Tuple[float, int]:
    """Training steps per second of ``config``'s task, and the number of timed steps."""
    from specsweep.assembly import build_task
    from specsweep.spec import TrialConfig

    trial = TrialConfig.model_validate(config)
    torch.manual_seed(trial.seed)
    task = build_task(trial, data).to(device)
    task.train()
    optimizer = task.configure_optimizers()
    stream = batches(data, device, data_path)

    def step() -> None:
        waveform, targets = next(stream)
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(task(waveform), targets)
        loss.backward()
        optimizer.step()
        task.net.frontend.after_optimizer_step()

    def sync() -> None:
        # CUDA runs asynchronously: the clock must not stop before the GPU has.
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    n = 0
    while n < min_steps or time.perf_counter() - start < seconds:
        step()
        n += 1
        if n % 5 == 0:
            # Keeps the time check honest on a GPU, where steps would otherwise only queue.
            sync()
    sync()
    return n / (time.perf_counter() - start), n


def lightning_seconds_per_step(config: Dict[str, Any], data: PreparedData, device: torch.device, data_path: str,
                               epochs: int = 3) -> float:
    """Seconds per training step of ``config``'s trial through Lightning's loop, as a sweep
    trial runs it (``trial_data``, ``build_trial_task``, the trial's trainer options; no
    validation, Ray, W&B or checkpoints): the median over epochs after the first."""
    import tempfile
    from pathlib import Path

    import lightning.pytorch as pl

    from specsweep.spec import TrialConfig
    from specsweep.trainables.trial import build_trial_task, trainer_options, trial_data

    config = {**config, "train": {**config["train"], "epochs": epochs, "data_path": data_path}}
    trial = TrialConfig.model_validate(config)
    pl.seed_everything(trial.seed, verbose=False)
    data, loaders, _ = trial_data(trial)
    task = build_trial_task(trial, data)
    per_step: List[float] = []

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            per_step.append((time.perf_counter() - self.start) / trainer.num_training_batches)

    with tempfile.TemporaryDirectory(prefix="bench-trials-") as root:
        trainer = pl.Trainer(logger=False, callbacks=[Clock()],
                             **trainer_options(trial.train, None, 0, Path(root), len(loaders["train"])))
        trainer.fit(task, loaders["train"], loaders["val"])
    timed = sorted(per_step[1:] or per_step)
    return timed[len(timed) // 2]


def lightning_table(data_config: Dict[str, Any], results: Dict[Tuple[str, str], Tuple[float, int]],
                    data: PreparedData, device: torch.device, data_path: str, epochs: int) -> str:
    """Lightning's own time per step in setting A (the least compute per step): the step
    through the trial's Lightning loop against the bare step of :func:`measure`."""
    rows = []
    for label, backbone in BACKBONES.items():
        bare = BATCH / results["A", label][0]
        through = lightning_seconds_per_step(trial_config(backbone, "A", data_config), data, device, data_path, epochs)
        rows.append([label, fmt(bare * 1e3, 2), fmt(through * 1e3, 2), fmt((through - bare) * 1e3, 2)])
    return table(["backbone (setting A)", "bare step ms", "through Lightning ms", "Lightning's own ms per step"], rows)


def measure(data_config: Dict[str, Any], settings: Sequence[str], device: torch.device, seconds: float,
            warmup: int, min_steps: int, data_path: str = "loader"
            ) -> Tuple[Dict[Tuple[str, str], Tuple[float, int]], PreparedData]:
    """``{(setting, backbone label): (clips/s, timed steps)}`` for every cell."""
    data = prepare_dataset(data_config)
    results = {}
    for setting in settings:
        for label, backbone in BACKBONES.items():
            rate, n = steps_per_second(trial_config(backbone, setting, data_config), data, device, seconds,
                                       warmup, min_steps, data_path)
            results[setting, label] = (rate * BATCH, n)
    return results, data


def result_table(results: Dict[Tuple[str, str], Tuple[float, int]], settings: Sequence[str], train_clips: int) -> str:
    rows = []
    for setting in settings:
        stft, fb = SETTINGS[setting]
        label = f"{setting} (STFT {'trainable' if stft else 'fixed'}, filterbank {'trainable' if fb else 'fixed'})"
        cells = []
        for backbone in BACKBONES:
            clips_s, n = results[setting, backbone]
            cells += [fmt(clips_s, 1), fmt(train_clips / clips_s, 1), str(n)]
        rows.append([label, *cells])
    headers = ["setting"]
    for backbone in BACKBONES:
        headers += [f"{backbone} clips/s", f"{backbone} s/epoch", f"{backbone} steps"]
    return table(headers, rows)


def build_parser(name: str, description: str, default_device: str) -> argparse.ArgumentParser:
    p = parser(description, name)
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per cell")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per cell")
    p.add_argument("--settings", default="ABCD")
    p.add_argument("--device", default=default_device)
    p.add_argument("--threads", type=int, default=1, help="torch threads (sweeps give each trial 1 per CPU)")
    p.add_argument("--lightning-epochs", type=int, default=4,
                   help="epochs of the Lightning-loop comparison in setting A (the first untimed)")
    p.add_argument("--data-path", choices=DATA_PATHS, default="auto",
                   help="train.data_path: DataLoader, or batches gathered on the device (auto: device for KWS)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Add the data config and the minimum number of steps; apply ``--tiny``."""
    args.data = {"name": "embedded_kws"}
    args.min_steps = 1
    if args.tiny:
        args.data["clips_per_word"] = 6
        args.seconds, args.warmup, args.min_steps = 0.0, 1, 2
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = resolve(build_parser(NAME, __doc__.split("\n\n")[0], "cpu").parse_args(argv))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    results, data = measure(args.data, args.settings, device, args.seconds, args.warmup, args.min_steps, args.data_path)
    train_clips = len(data.dataset("train"))
    header = [
        machine_line(),
        versions_line("torch", "nnAudio"),
        f"- device {device}; data `{args.data}` ({train_clips:,} train clips), data path "
        f"{resolve_data_path(args.data_path, data, device)}; batch {BATCH} one-second clips; "
        f"nnAudio front-end (n_fft 480, hop 160, 40 Mel bins); Adam",
        f"- {args.warmup} warm-up steps, then steps for {args.seconds:g} s (at least {args.min_steps}) per cell; "
        "s/epoch = train clips / clips/s",
        f"- benchmark wall time {time.perf_counter() - start:.0f} s" + ("; --tiny: numbers mean nothing" if args.tiny else ""),
    ]
    section = "## Training clips/s (data + forward + backward + optimizer step)\n\n" + result_table(
        results, args.settings, train_clips)
    sections = [section]
    if "A" in args.settings:
        epochs = 2 if args.tiny else args.lightning_epochs
        sections.append(f"## Lightning's loop per step (median of epochs 2-{epochs}, the trial's trainer options)\n\n"
                        + lightning_table(args.data, results, data, device, args.data_path, epochs))
    publish(document("Whole-trial training throughput", header, sections), out_path(args.out, NAME))


if __name__ == "__main__":
    main()
