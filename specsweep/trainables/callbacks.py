"""Lightning callbacks of a trial: figures for every logger that takes images (W&B) and
for PNG files in the trial folder, RNG states in checkpoints, and W&B step handling."""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure

from specsweep.frontends.base import basis_drift
from specsweep.frontends.plot import plot_frontend, snapshot_frontend


def publish_figure(trainer: pl.Trainer, key: str, fig: Figure, folder: Path) -> Path:
    """Save ``fig`` as ``folder/key.png`` and send it to every logger with ``log_image``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
    return path


class FrontendFigures(pl.Callback):
    """After each validation epoch, draw the filterbank and STFT kernels next to their
    initial values; the initial values travel in the checkpoint so resumed trials draw
    the same reference."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.initial: Dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.initial:
            self.initial = snapshot_frontend(pl_module.net.frontend)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        fig = plot_frontend(pl_module.net.frontend, initial=self.initial)
        publish_figure(trainer, "frontend", fig, self.folder)

    def state_dict(self) -> Dict[str, Any]:
        return {"initial": self.initial}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.initial = state_dict["initial"]


class FrontendDrift(pl.Callback):
    """Log how far each trainable basis has moved from its value at the start of the trial,
    ``frontend/filterbank_drift`` and ``frontend/stft_drift`` (``||W - W0||_F / ||W0||_F``,
    0 for a fixed basis), after every validation epoch. The start values travel in the
    checkpoint, so a resumed trial measures from the same reference."""

    def __init__(self) -> None:
        self.initial: Dict[str, torch.Tensor] = {}
        self.started = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.started:
            self.initial = pl_module.net.frontend.trainable_bases()
            self.started = True

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        drift = basis_drift(pl_module.net.frontend.trainable_bases(), self.initial)
        for part, value in drift.items():
            pl_module.log(f"frontend/{part}_drift", value)

    def state_dict(self) -> Dict[str, Any]:
        return {"initial": self.initial, "started": self.started}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.initial, self.started = state_dict["initial"], state_dict["started"]


class TaskFigures(pl.Callback):
    """Publish the figures a task drew at the end of testing (e.g. the confusion matrix)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key, fig in pl_module.figures.items():
            publish_figure(trainer, key, fig, self.folder)
        pl_module.figures.clear()


class RNGState(pl.Callback):
    """Carry random number generator states in the checkpoint: the global torch RNG
    (dropout), Python's and NumPy's, and the generator that orders training batches, so
    that a trial resumed after epoch k continues exactly as if never interrupted."""

    def __init__(self, sampler_generator: torch.Generator) -> None:
        self.sampler_generator = sampler_generator

    def state_dict(self) -> Dict[str, Any]:
        # Tensors and plain Python values only, so checkpoints load with weights_only=True.
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate(),
            "sampler": self.sampler_generator.get_state(),
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        n = state_dict["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        random.setstate(state_dict["python"])
        self.sampler_generator.set_state(state_dict["sampler"])


class StepWandbLogger(WandbLogger):
    """Lightning's W&B logger with the trainer step passed to W&B as the run's step.

    W&B ignores points logged below the step a run has reached, so a trial resumed from
    its checkpoint continues its history instead of doubling the epochs it redoes.
    Lightning logs epoch-end metrics one step behind the step it has reached, so steps
    are kept non-decreasing: such late metrics join the current row instead of being lost.
    Metrics of another ``epoch`` than the current row's (the test's, logged after the
    last epoch at the same trainer step) start the next row, so that the row's ``epoch``,
    the step metric of the run's charts, stays that of its validation metrics.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step_floor = 0
        self._floor_epoch: Optional[float] = None

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        step = self._step_floor if step is None else max(int(step), self._step_floor)
        epoch = metrics.get("epoch")
        if epoch is not None:
            if step == self._step_floor and self._floor_epoch not in (None, epoch):
                step += 1
            self._floor_epoch = epoch
        elif step > self._step_floor:
            self._floor_epoch = None
        self._step_floor = step
        self.experiment.log({**metrics, "trainer/global_step": step}, step=step)


class BestWeights(pl.Callback):
    """Keep the weights of the best validation epoch in memory and in every checkpoint,
    so that testing "at the best checkpoint" survives restores on any node."""

    def __init__(self, monitor: str, mode: str, keep_weights: bool = True) -> None:
        self.monitor, self.mode, self.keep_weights = monitor, mode, keep_weights
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.weights: Optional[Dict[str, torch.Tensor]] = None
        # The last epoch's metrics, for the final report of a trial restored after its last epoch.
        self.last_metrics: Dict[str, float] = {}

    @property
    def state_key(self) -> str:
        return f"BestWeights[{self.monitor}, keep_weights={self.keep_weights}]"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.best_score is None or (score > self.best_score if self.mode == "max" else score < self.best_score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            if self.keep_weights:
                self.weights = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def state_dict(self) -> Dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "weights": self.weights,
                "last_metrics": self.last_metrics}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state_dict["best_score"], state_dict["best_epoch"]
        self.weights, self.last_metrics = state_dict["weights"], state_dict["last_metrics"]


class _TimerMark(pl.Callback):
    def __init__(self, timer: "EpochEndTimer", start: bool) -> None:
        self.timer, self.start = timer, start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer.mark(self.start)


class EpochEndTimer:
    """Time spent by the callbacks placed between ``timer.start`` and ``timer.stop`` at the
    end of each training epoch (there: Tune's report and checkpoint write)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started: Optional[float] = None
        self.start, self.stop = _TimerMark(self, True), _TimerMark(self, False)

    def mark(self, start: bool) -> None:
        if start:
            self._started = time.perf_counter()
        elif self._started is not None:
            self.total += time.perf_counter() - self._started
            self._started = None


class ReportCheckpoint(pl.Callback):
    """After each training epoch, report the trainer's metrics to Tune with a checkpoint
    ``filename`` that holds the full training state (weights, optimizer, loops and the
    callbacks' states), as Ray's ``TuneReportCheckpointCallback`` does; here the full
    state is asked for by name, as Lightning wants it to be."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Ray loads with the first report: a trial's set-up runs without it (benchmarks).
        from ray import tune

        metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
        with tempfile.TemporaryDirectory() as folder:
            trainer.save_checkpoint(os.path.join(folder, self.filename), weights_only=False)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
