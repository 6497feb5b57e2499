"""What a sweep costs before it runs: training clip-steps per trial and estimated hours.

``clip_steps`` = epochs x training clips per epoch, from the dataset's declared split size
(:func:`specsweep.data.datasets.declared_train_clips`: no download, no preparation). Hours
divide clip-steps by a training rate (clips/s) of one trial: by default a figure the
benchmarks recorded for the model (docs/benchmarks.md), or the rate
of a few training steps of each distinct model timed on this machine's device
(:func:`specsweep.trainables.calibrate.measure_steps`, ``specsweep inspect --calibrate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from specsweep.contract import StepMeasure
from specsweep.data.datasets import declared_train_clips
from specsweep.spec import PlannedTrial, Sampled, TrialConfig

# Training clips/s of one trial with one torch thread on a CPU: the bare training step of
# bench/bench_trials.py (batch 32, nnAudio front-end, 2-core AMD EPYC, bench/recorded/trials.md).
# Keyed by (task, backbone, setting): the figures are of one-second keyword clips.
CPU_RATES: Dict[Tuple[str, str, str], float] = {
    ("kws", "bcresnet", "A"): 118, ("kws", "bcresnet", "B"): 135, ("kws", "bcresnet", "C"): 107,
    ("kws", "bcresnet", "D"): 99, ("kws", "simple", "A"): 1_511, ("kws", "simple", "B"): 1_893,
    ("kws", "simple", "C"): 350, ("kws", "simple", "D"): 358,
}


@dataclass(frozen=True)
class GpuRate:
    """A trial's training clips/s alone on a GPU, and all trials' together on one GPU
    with ``trials`` of them sharing it (None: not measured; the trial's own rate is then
    used at any share)."""

    alone: float
    per_gpu: Optional[float]
    source: str
    trials: Optional[int] = None


# Whole trials on an NVIDIA H200, batch 32 (bench/recorded/gpu_packing_h200*.md, gpu_trials_h200.md).
GPU_RATES: Dict[Tuple[str, str, bool], GpuRate] = {
    ("kws", "bcresnet", True): GpuRate(2_946, 12_199, "H200, compiled, device data path (gpu_packing)", 16),
    ("kws", "bcresnet", False): GpuRate(1_053, 3_523, "H200, eager, DataLoader (gpu_packing)", 8),
    ("kws", "simple", False): GpuRate(8_636, None, "H200, eager bare step, setting D (gpu_trials)"),
    ("kws", "simple", True): GpuRate(8_636, None, "H200, eager bare step, setting D (gpu_trials); compiled not measured"),
}


def shared_rate(alone: float, busy: Optional[float], share: float) -> float:
    """Training clips/s of a trial holding ``share`` of a GPU beside trials like it: its
    rate ``alone`` while the GPU has time for all of them, else its share of what the
    GPU does when always busy (``alone / busy``; ``busy`` unknown: ``alone``)."""
    if share >= 1 or share <= 0 or not busy:
        return alone
    return min(alone, alone / busy * share)


def model_key(trial: TrialConfig) -> str:
    """What sets a trial's training speed and its GPU memory apart from its data: task,
    front-end, backbone, batch sizes (training, and evaluation, which validation and
    test run at) and compile switch (not the seed, learning rate or data), as one JSON
    string (a sampled value as its draw)."""
    frontend, backbone = trial.value("frontend"), trial.value("backbone")
    return json.dumps({"task": trial.task, "data": trial.data["name"], "frontend": frontend, "backbone": backbone,
                       "batch_size": trial.value("train.batch_size"), "eval_batch_size": trial.value("train.eval_batch_size"),
                       "compile": _flag(trial.value("train.compile"))}, sort_keys=True, default=str)


def _flag(value: Any) -> Any:
    return value if isinstance(value, Sampled) else bool(value)


def train_clips(trial: TrialConfig) -> Optional[int]:
    """Declared training clips per epoch of a trial's data; None when unknown, also when
    a value drawn per trial sets one of the dataset's arguments that the count needs."""
    try:
        return declared_train_clips(trial.value("data"))
    except (TypeError, ValueError):
        return None


def clip_steps(trial: TrialConfig, limit_train_batches: Optional[int] = None) -> Optional[int]:
    """Epochs x training clips per epoch of a trial; None when either is unknown (an
    epoch count or batch size drawn per trial, an undeclared dataset size).

    ``limit_train_batches`` caps the batches per epoch (smoke tests)."""
    clips = train_clips(trial)
    if _drawn(trial, "train.epochs", "train.batch_size") or clips is None:
        return None
    if limit_train_batches is not None:
        clips = min(clips, limit_train_batches * trial.train.batch_size)
    return trial.train.epochs * clips


def _drawn(trial: TrialConfig, *keys: str) -> bool:
    return isinstance(trial, PlannedTrial) and trial.is_sampled(*keys)


def recorded_rate(trial: TrialConfig, gpus: Union[float, str]) -> Tuple[Optional[float], str, float]:
    """A trial's training clips/s from the recorded figures, where it comes from, and the
    GPU share it holds.

    On a GPU share ``gpus`` (< 1: that many trials share a GPU) the rate is the trial's
    own, at most its share of what the GPU did for all trials together; ``auto`` shares
    a GPU as the recorded figure's trials did."""
    from specsweep.frontends import frontend_setting

    backbone = trial.backbone["name"]
    share = 0.0 if gpus == "auto" else float(gpus)
    try:
        setting = frontend_setting(trial.value("frontend"))
    except ValueError:
        return None, "the front-end's setting is sampled: no recorded figure for one setting", share
    if not any(task == trial.task for task, *_ in [*CPU_RATES, *GPU_RATES]):
        return None, f"no recorded figure for task {trial.task}: use --calibrate", share
    if gpus == "auto" or share > 0:
        rate = GPU_RATES.get((trial.task, backbone, _flag(trial.value("train.compile"))))
        if rate is None:
            return None, "no recorded GPU figure for this model: use --calibrate", share
        source = f"recorded: {rate.source}"
        if gpus == "auto":
            share = 1.0 / rate.trials if rate.trials else 1.0
            source += f", {rate.trials or 1} per GPU"
        own = rate.alone if rate.per_gpu is None else min(rate.alone, rate.per_gpu * min(1.0, share))
        return own, source, share
    cpu = CPU_RATES.get((trial.task, backbone, setting))
    if cpu is None:
        return None, "no recorded CPU figure for this model: use --calibrate", share
    return cpu, f"recorded: CPU one thread, {backbone} setting {setting} (bench_trials)", share


def sweep_cost(trials: Sequence[TrialConfig], cpus: float, gpus: Union[float, str],
               limit_train_batches: Optional[int] = None, measures: Optional[Dict[str, StepMeasure]] = None,
               share_of: Optional[Callable[[TrialConfig], float]] = None) -> Dict[str, Any]:
    """Per trial and in total: clip-steps, clips/s, GPU share and hours. ``measures`` maps
    :func:`model_key` to a calibration on this machine (others use the recorded
    figures); ``share_of`` gives a trial's GPU share as ``gpus: auto`` chose it from a GPU
    calibration (:class:`specsweep.plan.packing.TrialResources`).

    Totals: ``clip_steps``; ``trial_hours`` (the trials one after another);
    ``cpu_hours`` and ``gpu_hours`` (trial hours x the CPUs and GPUs each holds). A total
    is None when any trial's part is unknown."""
    per_trial = []
    for i, config in enumerate(trials):
        steps = clip_steps(config, limit_train_batches)
        key = model_key(config)
        measure = (measures or {}).get(key)
        if measure is None:
            rate, source, share = recorded_rate(config, gpus)
        elif measure.device == "cpu":
            # On this machine, auto finds no GPU and trials run on CPUs.
            share = 0.0 if gpus == "auto" else float(gpus)
            rate, source = measure.clips_per_s, "calibrated on this machine (CPU)"
        else:
            share = (share_of(config) if share_of else 1.0) if gpus == "auto" else float(gpus)
            rate = shared_rate(measure.clips_per_s, measure.busy, share)
            source = f"calibrated on this machine ({measure.device})"
        hours = steps / rate / 3600 if steps is not None and rate else None
        epochs = config.value("train.epochs")
        per_trial.append({"trial": i, "epochs": str(epochs) if isinstance(epochs, Sampled) else epochs,
                          "train_clips": train_clips(config), "clip_steps": steps,
                          "clips_per_s": rate, "gpus": share, "hours": hours, "rate_source": source})

    def total(field: str, factor: int | float = 1) -> Optional[float]:
        values = [t[field] for t in per_trial]
        return None if any(v is None for v in values) else sum(values) * factor

    gpu_hours = None if any(t["hours"] is None for t in per_trial) else sum(t["hours"] * t["gpus"] for t in per_trial)
    return {"per_trial": per_trial,
            "total": {"trials": len(per_trial), "clip_steps": total("clip_steps"), "trial_hours": total("hours"),
                      "cpu_hours": total("hours", cpus), "gpu_hours": gpu_hours},
            "calibrated": measures is not None}
