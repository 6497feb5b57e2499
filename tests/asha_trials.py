"""Sweeps whose ASHA decisions hold by construction, on any CPU and kernel path.

Training trajectories differ between CPUs (AVX-512, AVX2 and ``ATEN_CPU_CAPABILITY=default``
take other float paths), so a test cannot rely on one learning rate beating another on
real speech. Here every training clip is of one class (``train.class_weights`` draws only
``yes``) and the sweep's metric is the training loss of a linear classifier: at a learning
rate of 0.01 the first Adam step moves every weight by 0.01 towards that one class and
the loss falls from the first epoch on, while at 1e-9 the weights, and so the loss, stay
at their seeded start (epoch 1: 0.60 against 16.55, on AVX-512, AVX2 and DEFAULT alike). The trial at 0.01 runs first (grid order, one trial at a time)
and so is never stopped. With a reduction factor of 2 a trial's bar at a rung is the
median of the results recorded there before it: the first starved trial is judged
against the good trial's loss, the second against the midpoint of those two; both miss
it and stop at the first rung. (A third starved trial would be judged by the median of
three, a starved trial's loss: by differences of 1e-4 that training did not set.)
"""

from __future__ import annotations

from typing import Any, Dict

from specsweep.data.speechcommands import CLASSES

GOOD_LR = 0.01
STARVED_LRS = (1.0e-9, 2.0e-9)


def asha_sweep(epochs: int) -> Dict[str, Any]:
    """Spec sections (``backbone``, ``train``, ``search``, ``scheduler``, ``resources``) of
    the sweep above: ``epochs`` epochs, ASHA from the first epoch on, one trial at a time."""
    return {
        "backbone": {"name": "simple"},
        "train": {"epochs": epochs, "batch_size": 16, "lr": GOOD_LR,
                  "class_weights": {name: float(name == "yes") for name in CLASSES}},
        "search": {"metric": "train_loss", "mode": "min", "space": {"train.lr": {"grid": [GOOD_LR, *STARVED_LRS]}}},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "max_concurrent": 1},
    }
