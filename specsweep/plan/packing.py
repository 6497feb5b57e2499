"""``resources.gpus: auto``: how many trials share a GPU, from each model measured on one.

Small models leave a GPU mostly idle: one compiled BC-ResNet-1 trial kept an H200 busy
19 % of the time, four side by side 96 %, and sixteen trained 22 % more clips/s than four
(docs/benchmarks.md). So trials are packed until their GPU work, measured alone, adds
up to :data:`GPU_LOAD` times the GPU's time, or until their memory fills the GPU,
whichever comes first.

Each distinct model of a sweep (:func:`specsweep.plan.cost.model_key`: task, front-end,
backbone, batch size, compile switch) is measured once by a Ray task that holds a whole
GPU (:func:`specsweep.trainables.calibrate.measure_steps`, :mod:`specsweep.sweep.gpus`): its peak GPU memory and the fraction of the
time the GPU ran its kernels (``busy``). Its trials then ask for ``1 / n`` of a GPU
(:func:`trials_per_gpu`), planned per model and data (:func:`packing_key`: the data a
trial holds on the device path adds to its memory); Ray places them, and a node's CPUs
may hold fewer.

Examples
--------
>>> n, why = trials_per_gpu(peak_mib=700, data_mib=3_300, busy=0.19, total_mib=81_559)
>>> n, gpu_share(n)
(11, 0.0909)
>>> print(why)
memory allows 15 (4.5 GiB each of 71.7 GiB usable), GPU time 11 (busy 19% alone, packed to 200%)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from specsweep.contract import StepMeasure, pydantic_problems
from specsweep.data.datasets import describe_dataset
from specsweep.plan.cost import model_key
from specsweep.spec import PlannedTrial, SweepSpec, TrialConfig

# Trials per GPU until their GPU time measured alone sums to this many GPUs: kernels of
# different processes take turns on a GPU, and a trial's CPU work leaves gaps that others fill.
GPU_LOAD = 2.0
# Per trial process, outside torch's allocator: the CUDA context, cuBLAS and cuDNN workspaces.
CONTEXT_MIB = 600.0
# Of the GPU's memory, what trials may fill; the rest is slack for fragmentation and the driver.
USABLE = 0.9
MAX_PER_GPU = 64
# Search keys that change what packing_key sees, and so a trial's GPU memory and time.
_PACKING_KEYS = ("task", "data.", "frontend.", "backbone.", "train.batch_size", "train.eval_batch_size",
                 "train.compile", "train.data_path")


class PackingError(RuntimeError):
    """``resources.gpus: auto`` could not be resolved; the message says why and what to do."""


@dataclass(frozen=True)
class Packing:
    """What ``auto`` chose for one model: ``per_gpu`` trials share a GPU, each asking for
    ``gpus``; ``why`` names the limits; ``measure`` is the model's measurement alone."""

    model: Annotated[str, Field(strict=True)]
    label: Annotated[str, Field(strict=True)]
    per_gpu: Annotated[int, Field(ge=1, strict=True)]
    gpus: Annotated[float, Field(ge=0, le=1, strict=True, allow_inf_nan=False)]
    why: Annotated[str, Field(strict=True)]
    measure: Dict[str, Any]

    # How packing_from_record reads a recorded row back: a key no sweep writes is damage.
    __pydantic_config__ = ConfigDict(extra="forbid")


def packing_key(trial: TrialConfig) -> str:
    """What a trial's packing depends on: its model (:func:`specsweep.plan.cost.model_key`),
    its data and its data path (the data it holds on the GPU), as one JSON string."""
    return json.dumps({"model": model_key(trial), "data": trial.value("data"),
                       "data_path": trial.value("train.data_path")}, sort_keys=True, default=str)


def gpu_share(per_gpu: int) -> float:
    """The GPU fraction each of ``per_gpu`` trials asks Ray for: rounded down to Ray's
    resource precision (1e-4), so that ``per_gpu`` of them fit on one GPU."""
    return 1.0 if per_gpu <= 1 else math.floor(10_000 / per_gpu) / 10_000


def device_data_mib(trial: TrialConfig) -> Optional[float]:
    """GPU memory a trial's data takes on the device data path: every split's int16 clips
    and int64 targets (one per clip). 0 where the trial uses the DataLoader on a GPU
    (:func:`specsweep.data.loaders.resolve_data_path`). Split sizes the dataset does not
    declare are counted from its prepared caches on this machine (a launch has prepared
    them); None when it is not prepared here."""
    import torch

    from specsweep.data.datasets import DatasetConfigError, prepare_dataset_once
    from specsweep.data.loaders import resolve_data_path
    from specsweep.data.speechcommands import DatasetMissingError

    info = describe_dataset(trial.data)
    if resolve_data_path(trial.train.data_path, info, torch.device("cuda")) != "device":
        return 0.0
    sizes = list(info.split_sizes.values())
    if any(n is None for n in sizes):
        try:
            prepared = prepare_dataset_once(trial.data)
        except (DatasetMissingError, DatasetConfigError, OSError):
            return None
        sizes = [len(prepared.dataset(split)) for split in prepared.splits]
    return sum(sizes) * (info.clip_samples * 2 + 8) / 2**20


def trials_per_gpu(peak_mib: float, data_mib: float, busy: Optional[float], total_mib: float) -> Tuple[int, str]:
    """Trials of one model per GPU, and why: the fewest of what the GPU's memory holds
    (each trial: ``peak_mib`` of its steps + ``data_mib`` + :data:`CONTEXT_MIB`, out of
    :data:`USABLE` of ``total_mib``) and of what fills :data:`GPU_LOAD` GPUs' time at
    ``busy`` each (memory alone when ``busy`` is unknown). Raises PackingError when not
    even one trial fits."""
    each = peak_mib + data_mib + CONTEXT_MIB
    usable = USABLE * total_mib
    by_memory = int(usable // each)
    memory = f"memory allows {by_memory} ({each / 1024:.1f} GiB each of {usable / 1024:.1f} GiB usable)"
    if by_memory < 1:
        raise PackingError(f"{memory}: a trial needs more GPU memory than the GPU has")
    if busy is None or busy <= 0:
        n = min(by_memory, MAX_PER_GPU)
        return n, f"{memory}, GPU time not measured (no profiler data)"
    by_load = max(1, math.ceil(GPU_LOAD / busy - 1e-9))
    n = min(by_memory, by_load, MAX_PER_GPU)
    return n, f"{memory}, GPU time {by_load} (busy {busy:.0%} alone, packed to {GPU_LOAD:.0%})"


def label(trial: TrialConfig) -> str:
    """The model of a packing in words: front-end, backbone, setting, batch, data."""
    return (f"{trial.frontend['name']}+{trial.backbone['name']} setting {trial.setting}, "
            f"batch {trial.train.batch_size}{', compiled' if trial.train.compile else ''}, {trial.data['name']}")


def plan_packing(measures: Mapping[str, StepMeasure], trials: Sequence[TrialConfig]) -> Dict[str, Packing]:
    """A :class:`Packing` per :func:`packing_key` of ``trials`` from the GPU measurement
    of its model (``measures`` by :func:`specsweep.plan.cost.model_key`)."""
    plans = {}
    for config in trials:
        key = packing_key(config)
        if key in plans:
            continue
        m = measures[model_key(config)]
        data = device_data_mib(config)
        if m.peak_mib is None or m.total_mib is None:
            raise PackingError(f"{label(config)}: measured on {m.device}, not a GPU")
        try:
            n, why = trials_per_gpu(m.peak_mib, data or 0.0, m.busy, m.total_mib)
        except PackingError as err:
            held = "unknown (not prepared here)" if data is None else f"{data:,.0f} MiB"
            raise PackingError(f"{label(config)} on {m.device}: {err} (steps {m.peak_mib:,.0f} MiB, data on the "
                               f"device {held}); lower train.batch_size or the model's size, or keep the data off "
                               f"the GPU with train.data_path: loader") from None
        if data is None:
            why += "; the data's size is unknown, so its GPU memory is not counted"
        plans[key] = Packing(key, label(config), n, gpu_share(n), why, asdict(m))
    return plans


def packing_trials(spec: SweepSpec, trials: Sequence[PlannedTrial]) -> List[PlannedTrial]:
    """One of ``trials`` (the plan of ``spec``) per distinct model the sweep can run. A
    sampled search dimension that shapes the model is represented by its choices, or by
    the two ends of its range (memory and GPU time grow with sizes); a trial whose model
    was not measured as such gets the most cautious packing (:class:`TrialResources`)."""
    from specsweep.plan.limits import sized_values, variant_combinations

    sampled = sized_values(spec, keys=_PACKING_KEYS, sampled_only=True)
    distinct: Dict[str, PlannedTrial] = {}
    for trial in trials:
        for _, setting in variant_combinations(sampled):
            variant = trial.with_values(setting)
            distinct.setdefault(packing_key(variant), variant)
    return list(distinct.values())


class TrialResources:
    """Tune's resource request of a trial, by its config: ``cpus`` each, and the GPU
    share its model's packing chose; a model that was not measured (a sampled value
    between the measured ends) gets the largest share any measured model got."""

    def __init__(self, cpus: float, plans: Mapping[str, Packing]) -> None:
        self.cpus = cpus
        self.shares = {key: p.gpus for key, p in plans.items()}
        self.cautious = max(self.shares.values(), default=0.0)

    def gpus(self, trial: TrialConfig) -> float:
        return self.shares.get(packing_key(trial), self.cautious)

    def __call__(self, config: Dict[str, Any]) -> Any:
        """The request for the trial Tune is about to start, whose ``config`` is a plain dict."""
        from ray.tune import PlacementGroupFactory

        gpus = self.gpus(TrialConfig.model_validate(config))
        return PlacementGroupFactory([{"CPU": self.cpus, **({"GPU": gpus} if gpus else {})}])


def packing_record(plans: Mapping[str, Packing]) -> List[Dict[str, Any]]:
    """The plans as JSON-ready rows, for the run directory."""
    return [asdict(p) for p in plans.values()]


def packing_from_record(rows: Any) -> Dict[str, Packing]:
    """The plans of :func:`packing_record`'s rows; ValueError naming what is wrong when
    they are not such rows (a damaged or hand-edited run file)."""
    if not isinstance(rows, list):
        raise ValueError(f"expected a list of plans, got {type(rows).__name__}")
    plans = {}
    for i, row in enumerate(rows):
        try:
            plan = _RECORD.validate_python(row)
        except ValidationError as err:
            raise ValueError(f"plan {i}: {'; '.join(pydantic_problems(err))}") from None
        plans[plan.model] = plan
    return plans


# Every field's type and range, as a run file read back must have them.
_RECORD = TypeAdapter(Packing)
