"""What a sweep costs before it runs: training clip-steps per trial and estimated hours.

``clip_steps`` = epochs x training clips per epoch, from the dataset's declared split size
(:func:`specsweep.data.datasets.declared_train_clips`: no download, no preparation). Hours
divide clip-steps by a training rate (clips/s) of one trial: by default a figure the
benchmarks recorded for the model (README, "Benchmarks"), or with ``calibrate`` the rate
of a few training steps of each distinct model timed on this machine's device.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from specsweep.data.datasets import declared_train_clips

# Training clips/s of one trial with one torch thread on a CPU: the bare training step of
# bench/bench_trials.py (batch 32, nnAudio front-end, 2-core AMD EPYC, bench/recorded/trials.md).
CPU_RATES: Dict[Tuple[str, str], float] = {
    ("bcresnet", "A"): 118, ("bcresnet", "B"): 135, ("bcresnet", "C"): 107, ("bcresnet", "D"): 99,
    ("simple", "A"): 1_511, ("simple", "B"): 1_893, ("simple", "C"): 350, ("simple", "D"): 358,
}


@dataclass(frozen=True)
class GpuRate:
    """A trial's training clips/s alone on a GPU, and all trials' together on one GPU
    (None: not measured; the trial's own rate is then used at any share)."""

    alone: float
    per_gpu: Optional[float]
    source: str


# Whole trials on an NVIDIA H200, batch 32 (bench/recorded/gpu_packing_h200*.md, gpu_trials_h200.md).
GPU_RATES: Dict[Tuple[str, bool], GpuRate] = {
    ("bcresnet", True): GpuRate(2_946, 12_199, "H200, compiled, device data path (gpu_packing)"),
    ("bcresnet", False): GpuRate(1_053, 3_523, "H200, eager, DataLoader (gpu_packing)"),
    ("simple", False): GpuRate(8_636, None, "H200, eager bare step, setting D (gpu_trials)"),
    ("simple", True): GpuRate(8_636, None, "H200, eager bare step, setting D (gpu_trials); compiled not measured"),
}


def model_key(config: Dict[str, Any]) -> str:
    """What sets a trial's training speed: task, front-end, backbone, batch size and
    compile switch (not the seed, learning rate or data), as one JSON string."""
    train = config["train"]
    return json.dumps({"task": config["task"], "data": config["data"]["name"], "frontend": config["frontend"],
                       "backbone": config["backbone"], "batch_size": train["batch_size"],
                       "compile": bool(train["compile"])}, sort_keys=True, default=str)


def clip_steps(config: Dict[str, Any], limit_train_batches: Optional[int] = None) -> Optional[int]:
    """Epochs x training clips per epoch of a trial config; None when either is unknown
    (a sampled epoch count or batch size, an undeclared dataset size).

    ``limit_train_batches`` caps the batches per epoch (smoke tests)."""
    epochs, batch = config["train"]["epochs"], config["train"]["batch_size"]
    clips = declared_train_clips(config["data"])
    if not isinstance(epochs, int) or not isinstance(batch, int) or clips is None:
        return None
    if limit_train_batches is not None:
        clips = min(clips, limit_train_batches * batch)
    return epochs * clips


def recorded_rate(config: Dict[str, Any], gpus: float) -> Tuple[Optional[float], str]:
    """A trial's training clips/s from the recorded figures, and where it comes from.

    On a GPU share ``gpus`` (< 1: that many trials share a GPU) the rate is the trial's
    own, at most its share of what the GPU did for all trials together."""
    from specsweep.frontends import frontend_setting

    backbone = config["backbone"]["name"]
    setting = frontend_setting(config["frontend"])
    if config["task"] != "kws":
        # The figures are of one-second keyword clips; utterances are longer and vary.
        return None, f"no recorded figure for task {config['task']}: use --calibrate"
    if gpus > 0:
        rate = GPU_RATES.get((backbone, bool(config["train"]["compile"])))
        if rate is None:
            return None, "no recorded GPU figure for this model: use --calibrate"
        share = rate.alone if rate.per_gpu is None else min(rate.alone, rate.per_gpu * min(1.0, gpus))
        return share, f"recorded: {rate.source}"
    cpu = CPU_RATES.get((backbone, setting))
    if cpu is None:
        return None, "no recorded CPU figure for this model: use --calibrate"
    return cpu, f"recorded: CPU one thread, {backbone} setting {setting} (bench_trials)"


def calibrate(config: Dict[str, Any], cpus: float, seconds: float = 2.0, warmup: int = 2) -> float:
    """Training clips/s of ``config``'s model on this machine's device: forward,
    backward and optimizer steps on random batches of the trial's size, with the
    trial's torch threads, after ``warmup`` untimed steps (where compiling happens)."""
    import torch

    from specsweep.data.datasets import PreparedData, describe_dataset
    from specsweep.spec import TrialConfig
    from specsweep.trainables.trial import build_trial_task, trial_device

    torch.set_num_threads(max(1, int(cpus)))
    trial = TrialConfig.model_validate({**config, "train": {**config["train"], "schedule": "constant", "warmup_epochs": 0}})
    info = describe_dataset(trial.data)
    n_labels, clip_samples = len(info.labels), info.nominal_samples
    device = trial_device()
    task = build_trial_task(trial, PreparedData.from_info(info, {})).to(device)
    task.train()
    optimizer = task.configure_optimizers()
    batch = trial.train.batch_size
    generator = torch.Generator().manual_seed(0)
    waves = (torch.randn(batch, clip_samples, generator=generator) * 0.1).to(device)
    if trial.task_info.head == "utterance":
        inputs: Tuple[Any, ...] = (waves, torch.randint(0, n_labels, (batch, 1), generator=generator).to(device))
    else:
        targets = torch.randint(0, n_labels, (batch, 10), generator=generator).to(device)
        inputs = (waves, torch.full((batch,), clip_samples, device=device), targets,
                  torch.full((batch,), 10, device=device))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        task._step(inputs)[0].backward()
        optimizer.step()
        task.net.frontend.after_optimizer_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    start, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - start)


def sweep_cost(configs: List[Dict[str, Any]], cpus: float, gpus: float, limit_train_batches: Optional[int] = None,
               rates: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """Per trial and in total: clip-steps, clips/s and hours; ``rates`` maps
    :func:`model_key` to calibrated clips/s (others use the recorded figures).

    Totals: ``clip_steps``; ``trial_hours`` (the trials one after another);
    ``cpu_hours`` and ``gpu_hours`` (trial hours x the CPUs and GPUs each holds). A total
    is None when any trial's part is unknown."""
    per_trial = []
    for i, config in enumerate(configs):
        steps = clip_steps(config, limit_train_batches)
        key = model_key(config)
        if rates is not None and key in rates:
            rate, source = rates[key], "calibrated on this machine"
        else:
            rate, source = recorded_rate(config, gpus)
        hours = steps / rate / 3600 if steps is not None and rate else None
        per_trial.append({"trial": i, "epochs": config["train"]["epochs"],
                          "train_clips": declared_train_clips(config["data"]), "clip_steps": steps,
                          "clips_per_s": rate, "hours": hours, "rate_source": source})

    def total(field: str, factor: int | float = 1) -> Optional[float]:
        values = [t[field] for t in per_trial]
        return None if any(v is None for v in values) else sum(values) * factor

    return {"per_trial": per_trial,
            "total": {"trials": len(per_trial), "clip_steps": total("clip_steps"), "trial_hours": total("hours"),
                      "cpu_hours": total("hours", cpus), "gpu_hours": total("hours", gpus) if gpus > 0 else 0.0},
            "calibrated": rates is not None}
