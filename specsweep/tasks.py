"""Tasks, selected by name in sweep specs (``task: kws``).

A task says what a model needs to solve it and how it is judged: the head of the backbone,
how many outputs ``n`` labels need, the metrics it reports with the direction in which each
improves, the default one a search optimises, whether its clips have one length (a
:class:`Task`, the description given beside its registration), and the Lightning module that
trains it (what its registered builder makes). This module imports neither torch nor
Lightning: spec validation, ``inspect`` and the driver read these facts; only trials build
the module.

Examples
--------
>>> kws = get_task("kws")
>>> kws.head, kws.num_outputs(12), kws.metric, kws.mode(kws.metric)
('utterance', 12, 'val_acc', 'max')
>>> asr = get_task("asr")
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


@dataclass(frozen=True)
class Task:
    """What a task is, apart from its training code: the description of a registered task,
    whose builder makes its Lightning module.

    Parameters
    ----------
    name : str
        The registered name (given by the registry).
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
        (a :class:`~specsweep.data.datasets.PreparedData`: its labels and its protocol's scoring),
        made by the task's registered builder."""
        return TASKS.build(self.name, net=net, train=train, data=data)


TASKS = Registry("task", about=Task)


def _lightning_task(cls: str) -> Any:
    """The class ``cls`` of :mod:`specsweep.trainables.tasks`."""
    # The Lightning modules sit in the layer above (they import torch and Lightning, which
    # spec validation and the driver must not load): found by name when a trial builds one.
    return getattr(importlib.import_module("specsweep.trainables.tasks"), cls)


@TASKS.register("kws", head="utterance", extra_outputs=0,
                val_metrics={"val_acc": "max", "val_loss": "min"},
                train_metrics={"train_acc": "max", "train_loss": "min"},
                metric="val_acc", fixed_length=True, class_sampling=True)
def keyword_spotting(net: Any, train: Any, data: Any) -> Any:
    """Keyword spotting: one class per clip, cross-entropy, accuracy (``KWSTask``)."""
    return _lightning_task("KWSTask").for_data(net, train, data)


# Class 0 is the CTC blank, so the model has one output more than there are phones.
@TASKS.register("asr", head="frames", extra_outputs=1,
                val_metrics={"val_per": "min", "val_loss": "min"},
                train_metrics={"train_loss": "min"},
                metric="val_per", fixed_length=False, class_sampling=False)
def phoneme_recognition(net: Any, train: Any, data: Any) -> Any:
    """Phoneme recognition: CTC over frames, phone error rate (``ASRTask``)."""
    return _lightning_task("ASRTask").for_data(net, train, data)


def get_task(name: str) -> Task:
    """The description of the task registered as ``name``."""
    return TASKS.about(name)
