"""The Ray Tune trainable as the driver hands it to Tune.

This module imports neither torch nor Lightning: the driver only names the function, and
importing Lightning there (about 5 s on 2 cores) would hold up the start of every trial.
Trial workers import :mod:`specsweep.trainables.trial` when the first trial runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Union

from specsweep import tracking

# In a trial worker this module loads when Tune's actor unpickles the trainable, before the
# first trial imports torch and Lightning: trials report it so that a slot's start can be
# split into process start and imports (``timing/worker_unix``).
LOADED_UNIX = time.time()


@dataclass(frozen=True)
class RunContext:
    """What every trial of a sweep shares, passed with ``tune.with_parameters``."""

    sweep_dir: str
    metric: str
    mode: str
    wandb: tracking.WandbSettings = field(default_factory=tracking.WandbSettings)
    limit_train_batches: Union[int, float] = 1.0
    limit_eval_batches: Union[int, float] = 1.0


def train_trial(config: Dict[str, Any], run: RunContext) -> None:
    """Tune function trainable: one trial, run by :func:`specsweep.trainables.trial.train_trial`.

    Tune names trials after this function (``train_trial_<id>``) and checks the name when
    a sweep is resumed, so it keeps the name of the function it stands for.
    """
    from specsweep.trainables import trial

    trial.train_trial(config, run)
