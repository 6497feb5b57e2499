"""What every trial of a sweep shares, as the driver passes it to the trainable.

Its own module, importing neither torch nor Lightning, so that the driver's trainable
(:mod:`specsweep.trainables.trainable`) and the trial's code
(:mod:`specsweep.trainables.trial`) both read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from specsweep import tracking


@dataclass(frozen=True)
class RunContext:
    """What every trial of a sweep shares, passed with ``tune.with_parameters``."""

    sweep_dir: str
    metric: str
    mode: str
    wandb: tracking.WandbSettings = field(default_factory=tracking.WandbSettings)
    # None: every batch (Lightning then prints no notice about the limit).
    limit_train_batches: Optional[int] = None
    limit_eval_batches: Optional[int] = None
    # Trial output goes to the trial's log file; with this also to Ray's worker log,
    # which Ray streams to the driver's console (``specsweep run -v``).
    stream_output: bool = False
    # The search space's dotted keys, which W&B run names show.
    swept_keys: Tuple[str, ...] = ()
    # Whether two trials may draw one configuration (search.num_samples > 1): run names
    # then carry the trial's number.
    repeats: bool = False
