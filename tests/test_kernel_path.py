"""The CPU kernel path (docs/reproducibility.md): ``ATEN_CPU_CAPABILITY``, and the caps of
oneDNN and MKL, set for the driver reach the Ray workers that run trials, so a pinned sweep
is pinned throughout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# A local Ray started as a sweep starts it; one worker reports the kernels torch picked there.
WORKER_PATH = """
import ray, torch
from specsweep.sweep.cluster import start_ray


@ray.remote
def kernel_path():
    import os, torch

    return torch.backends.cpu.get_cpu_capability(), os.environ.get("ONEDNN_MAX_CPU_ISA"), os.environ.get("MKL_ENABLE_INSTRUCTIONS")


start_ray(num_cpus=1)
print("driver", torch.backends.cpu.get_cpu_capability())
print("worker", *ray.get(kernel_path.remote()))
"""
# The three settings docs/reproducibility.md tells a user to pin.
PINNED = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


# Not marked kernel_path: it pins the path itself, so CI's rerun under the portable path
# would repeat it unchanged.
def test_trial_workers_take_the_kernel_path_the_driver_was_started_with():
    # DEFAULT (no SIMD) exists on every CPU and is never the one torch picks by itself on x86.
    env = {**os.environ, **PINNED}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", WORKER_PATH], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.startswith(("driver ", "worker "))}
    assert lines == {"driver": ["DEFAULT"], "worker": ["DEFAULT", "AVX2", "AVX2"]}, done.stdout
