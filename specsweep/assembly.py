"""One way from a trial config to what trains: the front-end, the backbone sized from the
front-end's output for the task and the dataset, and the task's Lightning module.

The trial, ``specsweep inspect`` (parameter counts, memory), ``specsweep report`` (learned
filterbanks) and the benchmarks all assemble models here, from a validated
:class:`~specsweep.spec.TrialConfig` and what the dataset says of itself
(:class:`~specsweep.data.datasets.DatasetInfo`, or the :class:`PreparedData` of a trial).
Models need only the :class:`~specsweep.spec.ModelConfig` part of a trial.

Examples
--------
>>> import torch
>>> from specsweep.data.datasets import describe_dataset
>>> trial = TrialConfig.model_validate({"task": "kws", "data": {"name": "speechcommands", "root": "/nowhere"},
...                                      "frontend": {"name": "nnaudio", "setting": "B"},
...                                      "backbone": {"name": "simple"}, "seed": 0})
>>> data = describe_dataset(trial.data)
>>> model = build_model_for(trial, data)
>>> model(torch.randn(2, 16000)).shape
torch.Size([2, 12])
>>> model_footprint_for(trial, data).trainable == model.trainable_parameter_counts()
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

from specsweep.contract import Footprint
from specsweep.model import SpectrogramModel, build_model, model_footprint
from specsweep.spec import ModelConfig, TrialConfig
from specsweep.tasks import get_task

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

    from specsweep.data.datasets import PreparedData


class DescribedData(Protocol):
    """What sizing a model needs of a dataset: :class:`DatasetInfo` and :class:`PreparedData` have it."""

    labels: Sequence[str]

    @property
    def nominal_samples(self) -> int: ...


def _sizes(trial: ModelConfig, data: DescribedData) -> tuple[int, int, str]:
    task = get_task(trial.task)
    return data.nominal_samples, task.num_outputs(len(data.labels)), task.head


def build_model_for(trial: ModelConfig, data: DescribedData) -> SpectrogramModel:
    """The trial's front-end and backbone, the backbone sized from the front-end's output
    shape, with one output per label (plus the task's extra ones, e.g. the CTC blank)."""
    return build_model(trial.frontend, trial.backbone, *_sizes(trial, data))


def model_footprint_for(trial: ModelConfig, data: DescribedData) -> Footprint:
    """The sizes of the model :func:`build_model_for` would build, without building it."""
    return model_footprint(trial.frontend, trial.backbone, *_sizes(trial, data))


def build_task(trial: TrialConfig, data: "PreparedData") -> "LightningModule":
    """The trial's Lightning task module around :func:`build_model_for`'s model, trained
    with ``trial.train`` and scored as ``data``'s protocol says: the task's class in
    :mod:`specsweep.trainables.tasks`, which the task names (assembly does not import the
    trainables, which build on it)."""
    return get_task(trial.task).build(build_model_for(trial, data), trial.train, data)
