"""The CPU kernel path (docs/reproducibility.md): ``ATEN_CPU_CAPABILITY`` set for the
driver reaches the Ray workers that run trials, so a pinned sweep is pinned throughout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A local Ray started as a sweep starts it; one worker reports the kernels torch picked there.
WORKER_PATH = """
import ray, torch
from specsweep.sweep.cluster import start_ray


@ray.remote
def kernel_path():
    import torch

    return torch.backends.cpu.get_cpu_capability()


start_ray(num_cpus=1)
print("driver", torch.backends.cpu.get_cpu_capability())
print("worker", ray.get(kernel_path.remote()))
"""


@pytest.mark.kernel_path
def test_trial_workers_take_the_kernel_path_the_driver_was_started_with():
    # DEFAULT (no SIMD) exists on every CPU and is never the one torch picks by itself on x86.
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", WORKER_PATH], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = dict(line.split() for line in done.stdout.splitlines() if line.startswith(("driver ", "worker ")))
    assert lines == {"driver": "DEFAULT", "worker": "DEFAULT"}, done.stdout
