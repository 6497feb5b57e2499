"""Trials on a GPU: training clips/s per setting and backbone, and a small Ray sweep sharing one GPU.

1. The ``bench_trials`` measurement on ``--device`` (default ``cuda``): a training step
   (data, forward, backward, optimizer step) of batch 32 for BC-ResNet-1 and the simple
   model behind the nnAudio front-end, settings A-D.
2. A Ray Tune sweep of the quickstart on the embedded keyword set, settings A-D x
   ``--sweep-seeds`` seeds (default 1: 4 trials) of ``--sweep-epochs`` epochs (default 2)
   with ``resources: {cpus: 1, gpus: 1 / k}`` for ``--trials-per-gpu`` k (default 4), so
   that k trials at a time share the GPU.
   While it runs, ``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv``
   is sampled every 0.5 s. Reported: the GPU's name, each trial's training clips/s
   (train clips x epochs / ``timing/fit_s``), the sweep's clips/s (all trials' training
   clips / wall time) and the GPU utilisation and memory over the sweep.

Exits with a message (status 2) when no CUDA GPU or no ``nvidia-smi`` is available.

Usage::

    python -m bench.gpu_trials              # both parts, writes bench/results/gpu_trials.md
    python -m bench.gpu_trials --tiny       # 2 steps per cell; sweep in smoke mode
    python -m bench.gpu_trials --no-sweep   # only the per-cell throughput
    python -m bench.gpu_trials --sweep-seeds 2 --sweep-epochs 10   # 8 longer trials
    python -m bench.gpu_trials --sweep-seeds 2 --sweep-epochs 10 --trials-per-gpu 8
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import yaml

from bench.bench_trials import BATCH, build_parser, measure, resolve, result_table
from bench.common import document, fmt, machine_line, out_path, publish, table, versions_line

NAME = "gpu_trials"
QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"
SAMPLE_EVERY = 0.5


def gpu_missing(device: str) -> Optional[str]:
    """Why the GPU benchmark cannot run here, or None."""
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return "no CUDA GPU is available to torch (torch.cuda.is_available() is False)"
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not on PATH; it is needed to sample GPU utilisation"
    return None


class GpuSampler:
    """Samples utilisation (%) and memory used (MiB) of every GPU with nvidia-smi in a thread."""

    QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self.samples: List[List[tuple[float, float]]] = []
        # Unix time of each sample, to summarise a window (e.g. only the timed epochs).
        self.times: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            out = subprocess.run(self.QUERY, capture_output=True, text=True, timeout=10).stdout
            try:
                self.samples.append([(float(u), float(m)) for u, m in
                                     (line.split(",") for line in out.strip().splitlines() if line.strip())])
                self.times.append(time.time())
            except ValueError:
                # "[N/A]" or an error line: skip the sample rather than end the sampling.
                pass
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))

    def __enter__(self) -> "GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, start: float = 0.0, end: float = float("inf")) -> List[Dict[str, float]]:
        """Per GPU: mean, median and max utilisation, max memory, number of samples, over
        the samples taken between the Unix times ``start`` and ``end`` (default: all)."""
        out = []
        samples = [s for s, t in zip(self.samples, self.times) if start <= t <= end]
        for gpu in range(len(samples[0]) if samples else 0):
            util = [s[gpu][0] for s in samples if len(s) > gpu]
            mem = [s[gpu][1] for s in samples if len(s) > gpu]
            out.append({"gpu": gpu, "mean": statistics.fmean(util), "median": statistics.median(util),
                        "max": max(util), "mem_max": max(mem), "samples": len(util)})
        return out


def write_sweep_spec(folder: Path, tiny: bool, seeds: int, epochs: int, per_gpu: int) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["name"] = "bench-gpu-sweep"
    raw["seeds"] = list(range(1, seeds + 1))
    raw.setdefault("train", {})["epochs"] = epochs
    raw["resources"] = {"cpus": 1, "gpus": 1 / per_gpu}
    raw["wandb"]["mode"] = os.environ.get("WANDB_MODE", "offline")
    if tiny:
        raw["data"]["clips_per_word"] = 6
    path = folder / "bench-gpu-sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def gpu_sweep(tiny: bool, seeds: int, epochs: int, per_gpu: int) -> str:
    import ray

    from specsweep.data.datasets import prepare_dataset
    from specsweep.results.status import read_trials
    from specsweep.sweep.cluster import start_ray
    from specsweep.sweep.launcher import run_sweep

    os.environ.setdefault("WANDB_MODE", "offline")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-sweep-") as tmp:
        spec_path = write_sweep_spec(Path(tmp), tiny, seeds, epochs, per_gpu)
        spec = yaml.safe_load(spec_path.read_text())
        # Prepared before the clock starts: the sweep driver would do it once anyway.
        train_clips = len(prepare_dataset(spec["data"]).dataset("train"))
        start_ray(num_cpus=per_gpu, num_gpus=1)
        with GpuSampler() as sampler:
            start = time.perf_counter()
            outcome = run_sweep(spec_path, storage=Path(tmp) / "runs", name="gpu", smoke=tiny)
            wall = time.perf_counter() - start
        trials = read_trials(outcome.run_dir)
        ray.shutdown()
    epochs = 1 if tiny else spec["train"]["epochs"]
    # Full batches only (the train loader drops the last one); smoke mode stops after a few.
    batches = train_clips // BATCH
    if tiny:
        batches = min(batches, int(spec.get("smoke", {}).get("limit_train_batches", 3)))
    clips = batches * BATCH * epochs
    rows, total_clips = [], 0
    for t in trials:
        m = t["metrics"]
        fit = m.get("timing/fit_s")
        total_clips += clips
        rows.append([t["config"]["frontend"]["setting"], str(t["config"]["seed"]), t["status"], fmt(fit, 1),
                     fmt(clips / fit if fit else None, 0), fmt(m.get("val_acc"), 3)])
    gpu_rows = [[str(g["gpu"]), fmt(g["mean"], 0), fmt(g["median"], 0), fmt(g["max"], 0), fmt(g["mem_max"], 0),
                 str(g["samples"])] for g in sampler.summary()]
    note = f" (smoke mode: {batches} batches per trial)" if tiny else ""
    return "\n\n".join([
        f"## Ray sweep sharing the GPU ({len(trials)} trials, 1 CPU + 1/{per_gpu} GPU each, {per_gpu} at a time)",
        f"Quickstart, settings A-D, seeds 1-{seeds}, {epochs} epoch(s) of {batches} batches of {BATCH} "
        f"({train_clips:,} train clips); wall {wall:.1f} s; "
        f"sweep clips/s = {fmt(total_clips / wall, 0)}{note}; {outcome.errored} errored.",
        table(["setting", "seed", "status", "fit s", "train clips/s", "val_acc"], rows),
        f"GPU utilisation over the sweep, `nvidia-smi` every {SAMPLE_EVERY} s:",
        table(["GPU", "util mean %", "util median %", "util max %", "memory max MiB", "samples"], gpu_rows),
    ])


def main(argv: Optional[List[str]] = None) -> None:
    p = build_parser(NAME, __doc__.split("\n\n")[0], "cuda")
    p.add_argument("--no-sweep", action="store_true", help="only the per-cell throughput")
    p.add_argument("--sweep-seeds", type=int, default=1, help="seeds per setting in the sweep (4 trials per seed)")
    p.add_argument("--sweep-epochs", type=int, default=2, help="epochs per sweep trial")
    p.add_argument("--trials-per-gpu", type=int, default=4, help="sweep trials sharing the GPU at a time")
    args = resolve(p.parse_args(argv))
    missing = gpu_missing(args.device)
    if missing:
        print(f"gpu_trials: {missing}; nothing measured.", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    results, data = measure(args.data, args.settings, device, args.seconds, args.warmup, args.min_steps, args.data_path)
    train_clips = len(data.dataset("train"))
    sections = ["## Training clips/s per cell (data + forward + backward + optimizer step)\n\n"
                + result_table(results, args.settings, train_clips)]
    if not args.no_sweep:
        sections.append(gpu_sweep(args.tiny, args.sweep_seeds, args.sweep_epochs, args.trials_per_gpu))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    header = [
        machine_line(),
        f"- GPU: {name}" + (f", {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
                            if device.type == "cuda" else ""),
        versions_line("torch", "nnAudio", "ray"),
        f"- data `{args.data}` ({train_clips:,} train clips); batch 32; {args.warmup} warm-up steps, then "
        f"{args.seconds:g} s (at least {args.min_steps} steps) per cell",
        f"- benchmark wall time {time.perf_counter() - start:.0f} s" + ("; --tiny: numbers mean nothing" if args.tiny else ""),
    ]
    publish(document("Trials on a GPU", header, sections), out_path(args.out, NAME))


if __name__ == "__main__":
    main()
