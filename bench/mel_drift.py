"""How far a trainable Mel basis moves in its first training steps under a sweep's recipe:
the basis' gradient norm per step and its drift ``||W - W0||_F / ||W0||_F`` after each step,
through a trial's own Lightning path (its optimizer groups, and the clamp to [0, 1] after
each step). docs/protocol.md quotes what it prints for the paper's KWS and ASR recipes.

Usage::

    python -m bench.mel_drift sweeps/paper/kws_settings.yaml --setting B --backbone bcresnet
    python -m bench.mel_drift sweeps/paper/asr_settings.yaml --setting B --steps 2

The spec's smoke version supplies the data (the embedded sets), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, List

import lightning.pytorch as pl
import torch

from specsweep.frontends.base import basis_drift
from specsweep.spec import TrialConfig, load_spec, plan_trials
from specsweep.trainables.trial import Laps, set_up_trial, trainer_options


class _Drift(pl.Callback):
    """Prints the Mel basis' gradient norm before each step and its drift after it."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def on_fit_start(self, trainer: pl.Trainer, module: Any) -> None:
        self.initial = module.net.frontend.trainable_bases()

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: Any, optimizer: Any) -> None:
        grad = module.net.frontend.mel_basis.grad
        self.lines.append(f"step {trainer.global_step + 1}: gradient ||.||_F {float(grad.norm()):.4g}")

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        # Lightning calls callbacks' on_train_batch_end before the task's own, which clamps
        # the basis: the step's result is read when the next batch starts, or at the end.
        if trainer.global_step:
            self._after_step(module)

    def on_train_end(self, trainer: pl.Trainer, module: Any) -> None:
        self._after_step(module)

    def _after_step(self, module: Any) -> None:
        drift = basis_drift(module.net.frontend.trainable_bases(), self.initial)["filterbank"]
        basis = module.net.frontend.mel_basis.detach()
        self.lines[-1] += (f", drift after the step {drift:.4g}, basis in [{float(basis.min()):.3g}, "
                           f"{float(basis.max()):.3g}], {int((basis == 1).sum())} entries at 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="a sweep spec whose front-end is nnaudio")
    parser.add_argument("--setting", default="B", choices=["B", "D"], help="a setting with a trainable Mel basis")
    parser.add_argument("--backbone", default=None, help="the backbone's name, where the spec sweeps several")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(args.spec, smoke=True)
    planned = next(t for t in plan_trials(spec) if t.setting == args.setting and t.frontend["name"] == "nnaudio"
                   and args.backbone in (None, t.backbone["name"]))
    trial, _, loaders, _, task = set_up_trial(TrialConfig.as_dict(planned), Laps())
    initial = task.net.frontend.mel_basis.detach()
    print(f"{args.spec} setting {args.setting}, {trial.backbone['name']}: {trial.train.optimizer} lr {trial.train.lr} "
          f"weight decay {trial.train.weight_decay}, batch {trial.train.batch_size}; ||W0||_F {float(initial.norm()):.3g}, "
          f"{int((initial == 0).sum())} of {initial.numel()} entries 0")
    drift = _Drift()
    with tempfile.TemporaryDirectory() as root:
        options = trainer_options(trial.train, args.steps, 1, Path(root))
        trainer = pl.Trainer(**{**options, "max_epochs": 1, "max_steps": args.steps}, logger=False, callbacks=[drift])
        trainer.fit(task, loaders["train"])
    print("\n".join(drift.lines))


if __name__ == "__main__":
    main()
