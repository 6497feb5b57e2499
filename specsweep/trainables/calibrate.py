"""Training steps of a trial's model timed on this machine's device: the rate and GPU
memory a sweep's plan prices (``specsweep inspect --calibrate``) and ``resources.gpus:
auto`` packs by (:mod:`specsweep.sweep.gpus`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Tuple

from specsweep.contract import StepMeasure
from specsweep.spec import TrialConfig


@contextmanager
def _trial_algorithms() -> Iterator[None]:
    """Deterministic algorithms as a trial's Trainer sets them (``deterministic=True``),
    restored afterwards: the kernels timed are the kernels trials run."""
    import torch

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.utils.deterministic.fill_uninitialized_memory,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"), torch.get_num_threads())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.utils.deterministic.fill_uninitialized_memory = saved[3]
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        torch.set_num_threads(saved[5])


def measure_steps(config: TrialConfig, cpus: float, seconds: float = 2.0, warmup: int = 3,
                  profiled: int = 10) -> StepMeasure:
    """Time ``config``'s model on this machine's device: forward, backward and optimizer
    steps on random batches of the trial's size, with the trial's torch threads and
    algorithms, after ``warmup`` untimed steps (where compiling and graph capture happen);
    on a GPU then ``profiled`` more steps under ``torch.profiler`` for the GPU's busy time,
    and two evaluation passes at ``train.eval_batch_size`` (validation and test run at that
    size, in another compiled graph) before the peak memory is read."""
    import torch

    from specsweep.data.datasets import PreparedData, describe_dataset
    from specsweep.trainables.trial import build_trial_task, trial_device

    # The steps timed are plain ones: no warm-up or schedule scales their learning rate.
    trial = config.model_copy(update={"train": config.train.model_copy(update={"schedule": "constant",
                                                                               "warmup_epochs": 0})})
    info = describe_dataset(trial.data)
    n_labels, clip_samples = len(info.labels), info.nominal_samples
    device = trial_device()
    cuda = device.type == "cuda"
    generator = torch.Generator().manual_seed(0)

    def random_batch(size: int) -> Tuple[Any, ...]:
        waves = (torch.randn(size, clip_samples, generator=generator) * 0.1).to(device)
        if trial.task_info.head == "utterance":
            return waves, torch.randint(0, n_labels, (size, 1), generator=generator).to(device)
        targets = torch.randint(0, n_labels, (size, 10), generator=generator).to(device)
        return (waves, torch.full((size,), clip_samples, device=device), targets,
                torch.full((size,), 10, device=device))

    with _trial_algorithms():
        torch.set_num_threads(max(1, int(cpus)))
        task = build_trial_task(trial, PreparedData.from_info(info, {})).to(device)
        task.train()
        optimizer = task.configure_optimizers()
        batch = trial.train.batch_size
        inputs = random_batch(batch)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            task._step(inputs)[0].backward()
            optimizer.step()
            task.net.frontend.after_optimizer_step()

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(device)

        for _ in range(warmup):
            step()
        sync()
        start, n = time.perf_counter(), 0
        # Synchronised once at the end, as in training: the CPU may run ahead of the GPU.
        while n < 3 or time.perf_counter() - start < seconds:
            step()
            n += 1
            if n % 10 == 0:
                sync()
        sync()
        wall = (time.perf_counter() - start) / n
        if not cuda:
            return StepMeasure(clips_per_s=batch / wall, device="cpu")
        busy = _busy_fraction(step, sync, profiled, wall)
        task.eval()
        evaluation = random_batch(trial.train.eval_batch_size or batch)
        with torch.no_grad():
            for _ in range(2):
                task._step(evaluation)
        sync()
        return StepMeasure(clips_per_s=batch / wall, device=torch.cuda.get_device_name(device),
                           total_mib=torch.cuda.get_device_properties(device).total_memory / 2**20,
                           peak_mib=torch.cuda.max_memory_reserved(device) / 2**20, busy=busy)


def _busy_fraction(step: Callable[[], None], sync: Callable[[], None], steps: int, wall: float) -> Optional[float]:
    """GPU time (kernels, copies, fills) per step from ``torch.profiler`` over ``steps``
    steps, as a fraction of ``wall`` seconds per step; None when the profiler recorded
    no GPU activity (no CUPTI)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        sync()
    gpu_us = sum(e.self_device_time_total for e in prof.key_averages())
    if gpu_us <= 0:
        return None
    return min(1.0, gpu_us / 1e6 / steps / wall)
