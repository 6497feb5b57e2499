"""Tasks, selected by name in sweep specs (``task: kws``).

A task says what a model needs to solve it and how it is judged: the head of the backbone,
how many outputs ``n`` labels need, the metrics it reports with the direction in which each
improves, the default one a search optimises, whether its clips have one length, and the
Lightning module that trains it. This module imports neither torch nor Lightning: spec
validation, ``inspect`` and the driver read these facts; only trials build the module.

Examples
--------
>>> kws = TASKS.get("kws")
>>> kws.head, kws.num_outputs(12), kws.metric, kws.mode(kws.metric)
('utterance', 12, 'val_acc', 'max')
>>> asr = TASKS.get("asr")
>>> asr.head, asr.num_outputs(61), asr.mode("val_per")
('frames', 62, 'min')
>>> sorted(asr.metrics)
['train_loss', 'val_loss', 'val_per']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Literal, Optional

from specsweep.registry import Registry

TASKS = Registry("task")


@dataclass(frozen=True)
class Task:
    """What a task is, apart from its training code.

    Parameters
    ----------
    head : {"utterance", "frames"}
        The backbone's head: one prediction per clip (classification) or per frame (CTC).
    extra_outputs : int
        Outputs beyond one per label (the CTC blank).
    val_metrics : dict
        Validation metrics the task reports, each with ``"max"`` or ``"min"``.
    train_metrics : dict
        Training metrics reported per epoch, likewise.
    metric : str
        The validation metric a sweep optimises unless its spec names another.
    fixed_length : bool
        Clips of one length: batches can be gathered on the device without padding.
    class_sampling : bool
        Training clips can be drawn with per-class weights (classification).
    module : str
        ``"package.module:Class"`` of the Lightning module, imported only when built.
    data_task : str, optional
        The task whose datasets this one trains on (None: its own): a variant of a task,
        e.g. keyword spotting scored otherwise, keeps its datasets.
    """

    name: str
    head: Literal["utterance", "frames"]
    extra_outputs: int
    val_metrics: Dict[str, str]
    train_metrics: Dict[str, str]
    metric: str
    fixed_length: bool
    class_sampling: bool
    module: str
    data_task: Optional[str] = None

    @property
    def datasets_of(self) -> str:
        """The task its datasets are registered for."""
        return self.data_task or self.name

    def num_outputs(self, n_labels: int) -> int:
        """Outputs of the model for ``n_labels`` labels."""
        return n_labels + self.extra_outputs

    @property
    def metrics(self) -> FrozenSet[str]:
        """Every metric a search may optimise."""
        return frozenset(self.val_metrics) | frozenset(self.train_metrics)

    def mode(self, metric: str) -> str:
        """``"max"`` or ``"min"``: the direction in which ``metric`` improves."""
        modes = {**self.train_metrics, **self.val_metrics}
        if metric not in modes:
            raise KeyError(f"task {self.name} reports no metric {metric!r}; it reports {', '.join(sorted(modes))}")
        return modes[metric]

    def build(self, net: Any, train: Any, data: Any) -> Any:
        """The Lightning module training ``net`` (a :class:`~specsweep.model.SpectrogramModel`)
        with the optimiser of ``train`` (a :class:`~specsweep.spec.TrainConfig`) on ``data``
        (a :class:`~specsweep.data.datasets.PreparedData`: its labels and its protocol's scoring)."""
        module, _, cls = self.module.partition(":")
        return getattr(importlib.import_module(module), cls).for_data(net, train, data)


def register_task(task: Task) -> Task:
    return TASKS.register(task.name)(task)


register_task(Task(
    name="kws", head="utterance", extra_outputs=0,
    val_metrics={"val_acc": "max", "val_loss": "min"},
    train_metrics={"train_acc": "max", "train_loss": "min"},
    metric="val_acc", fixed_length=True, class_sampling=True,
    module="specsweep.trainables.tasks:KWSTask",
))
# Class 0 is the CTC blank, so the model has one output more than there are phones.
register_task(Task(
    name="asr", head="frames", extra_outputs=1,
    val_metrics={"val_per": "min", "val_loss": "min"},
    train_metrics={"train_loss": "min"},
    metric="val_per", fixed_length=False, class_sampling=False,
    module="specsweep.trainables.tasks:ASRTask",
))


def get_task(name: str) -> Task:
    return TASKS.get(name)
