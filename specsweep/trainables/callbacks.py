"""Logger-agnostic Lightning callbacks: figures go to every logger that takes images
(W&B) and to PNG files in the trial folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

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


class TaskFigures(pl.Callback):
    """Publish the figures a task drew at the end of testing (e.g. the confusion matrix)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key, fig in pl_module.figures.items():
            publish_figure(trainer, key, fig, self.folder)
        pl_module.figures.clear()
