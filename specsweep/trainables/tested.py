"""The weights a trial tested, saved in its folder at test time.

Tune keeps only the best checkpoints by the sweep's metric, which need not hold the weights
a trial tested (its last epoch's, or its best epoch's by ``train.best_by``), so each trial
saves them itself: :func:`specsweep.results.export.load_trial` reads them back. This module imports
torch only, so that a trial's code loads without Ray (benchmarks, ``inspect --calibrate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from specsweep.layout import TESTED_FILE


def save_tested_weights(trial_dir: Union[str, Path], net: nn.Module, epoch: Optional[int]) -> Path:
    """Save ``net``'s ``state_dict`` (on the CPU) and the ``epoch`` it comes from as
    ``trial_dir/tested.pt``: ``{"state_dict": ..., "epoch": ...}``, loadable with
    ``torch.load(path, weights_only=True)``."""
    path = Path(trial_dir) / TESTED_FILE
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "epoch": epoch}, path)
    return path
