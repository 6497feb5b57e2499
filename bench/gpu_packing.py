"""Trials packed on one GPU: training clips/s per trial and per GPU, GPU utilisation and
memory, for the DataLoader against the device-resident data path, eager against compiled
(``train.compile``: CUDA graphs), 1 to 16 trials at a time.

Each trial is a process running what a sweep trial runs: ``trial_data`` and
``build_trial_task`` from :mod:`specsweep.trainables.trial`, then a Lightning fit with the
trial's trainer options (one torch thread), without Ray, W&B or checkpoints, whose costs
are per epoch, not per step (``bench_sweep`` measures those). The data is a synthetic
Speech Commands v2 tree written at start (tones in noise, 12 classes, ``--clips-per-word``
clips per word, so no download and no speech synthesis is needed). Every trial trains
``--epochs`` epochs of ``batches`` batches (set per run); the first epoch, where compiling
and graph capture happen, is not timed. A trial's clips/s is its timed clips over its timed
epochs; the GPU's clips/s is all trials' timed clips over the time from the first timed
epoch's start to the last one's end (so trials that do not overlap count against it);
utilisation and memory are ``nvidia-smi`` samples in that window.

Runs, in order, until ``--budget-s`` is spent (a run that would not fit is skipped and
named): see :data:`RUNS`. ``quickstart`` is BC-ResNet-1 + nnAudio at batch 32 over
settings A-D (as ``sweeps/quickstart.yaml``), ``paper`` the same models at the paper grid's
batch of 100 (issue 17's targets); ``kws`` cycles the eight models of
``sweeps/paper/kws_settings.yaml`` ({nnaudio, fastaudio} x {bcresnet, simple} x settings
A, D) at its batch of 100.

Usage::

    python -m bench.gpu_packing                 # on a GPU machine, writes bench/results/gpu_packing.md
    python -m bench.gpu_packing --tiny          # CPU smoke run, seconds; numbers mean nothing
    python -m bench.gpu_packing --only q1-loader,q1-device-compiled
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from bench.common import document, fmt, machine_line, out_path, parser, publish, table, versions_line

NAME = "gpu_packing"
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat")
QUICKSTART = [("nnaudio", "bcresnet", s) for s in "ABCD"]
KWS_MODELS = [(fe, bb, s) for s in "AD" for bb in ("bcresnet", "simple") for fe in ("nnaudio", "fastaudio")]


@dataclass(frozen=True)
class Run:
    """``trials`` processes at a time on the GPU, cycling through ``models``."""

    name: str
    models: str  # "quickstart", "paper" (the quickstart's models at the paper's batch) or "kws"
    trials: int
    data_path: str
    compile: bool
    batches: int  # training batches per epoch

    @property
    def batch_size(self) -> int:
        return 32 if self.models == "quickstart" else 100


def _runs() -> List[Run]:
    q, k, p = "quickstart", "kws", "paper"
    return [
        # Issue 17's targets at the paper grid's batch of 100: one trial alone, then 16 per GPU.
        Run("p1-device-compiled", p, 1, "device", True, 150),
        Run("p16-device-compiled", p, 16, "device", True, 80),
        Run("p1-device", p, 1, "device", False, 60),
        Run("p8-device-compiled", p, 8, "device", True, 100),
        Run("q1-loader", q, 1, "loader", False, 60),
        Run("q1-device", q, 1, "device", False, 80),
        Run("q1-device-compiled", q, 1, "device", True, 300),
        Run("q4-device-compiled", q, 4, "device", True, 300),
        Run("q8-loader", q, 8, "loader", False, 60),
        Run("q8-device-compiled", q, 8, "device", True, 300),
        Run("q16-device-compiled", q, 16, "device", True, 200),
        Run("q16-loader", q, 16, "loader", False, 40),
        Run("q8-device", q, 8, "device", False, 80),
        Run("k8-loader", k, 8, "loader", False, 20),
        Run("k8-device", k, 8, "device", False, 30),
        Run("k8-device-compiled", k, 8, "device", True, 80),
        Run("q1-loader-compiled", q, 1, "loader", True, 150),
        Run("q4-loader", q, 4, "loader", False, 60),
        Run("q4-device", q, 4, "device", False, 80),
    ]


RUNS = _runs()


def write_tree(root: Path, clips_per_word: int, seed: int = 0) -> Path:
    """A Speech Commands v2 layout of one-second tones in noise: ``clips_per_word`` clips
    of each of 12 words (10 keywords, 2 unknown), 80/10/10 % train/validation/test, and
    two background-noise files for the silence class."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    val, test = [], []
    for w, word in enumerate(WORDS):
        (root / word).mkdir(parents=True, exist_ok=True)
        for i in range(clips_per_word):
            rel = f"{word}/s{i:05d}_nohash_0.wav"
            audio = 0.3 * np.sin(2 * np.pi * (200 + 60 * w + rng.uniform(-20, 20)) * t) + 0.05 * rng.standard_normal(16000)
            soundfile.write(root / rel, (audio * 32767).astype(np.int16), 16000, subtype="PCM_16")
            if i % 10 == 8:
                val.append(rel)
            elif i % 10 == 9:
                test.append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "_background_noise_").mkdir(exist_ok=True)
    for i, name in enumerate(["white_noise.wav", "pink_noise.wav"]):
        noise = 0.1 * rng.standard_normal(16000 * 60)
        soundfile.write(root / "_background_noise_" / name, (noise * 32767).astype(np.int16), 16000, subtype="PCM_16")
    return root


def trial_config(run: Run, index: int, root: Path, epochs: int) -> Dict[str, Any]:
    from specsweep.spec import TrainConfig

    models = KWS_MODELS if run.models == "kws" else QUICKSTART
    frontend, backbone, setting = models[index % len(models)]
    lr = {"lr": 0.001} if run.models == "kws" else {"lr": 0.02, "frontend_lr": 0.0005}
    return {
        "task": "kws", "seed": 1 + index // len(models),
        "data": {"name": "speechcommands", "root": str(root)},
        "frontend": {"name": frontend, "n_fft": 480, "hop_length": 160, "n_mels": 40, "setting": setting},
        "backbone": {"name": backbone, **({"width": 1.0} if backbone == "bcresnet" else {})},
        "train": TrainConfig(epochs=epochs, batch_size=run.batch_size, optimizer="adam", **lr, schedule="cosine",
                             warmup_epochs=1, balance_classes=True, data_path=run.data_path,
                             compile=run.compile).model_dump(),
    }


def worker(config: Dict[str, Any], batches: int, result: Path, trials: int) -> None:
    """One trial's fit; writes the Unix times and batches of each training epoch to ``result``.

    After its first (untimed) epoch the trial waits until all ``trials`` trials of the run
    have finished theirs, so that the timed epochs of all of them run side by side even
    when their compile times differ."""
    import lightning.pytorch as pl
    import torch

    from specsweep.spec import TrialConfig
    from specsweep.trainables.trial import build_trial_task, trainer_options, trial_data, trial_device

    class EpochClock(pl.Callback):
        def __init__(self) -> None:
            self.epochs: List[tuple[float, float, int]] = []

        def _sync(self) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._sync()
            self._start = time.time()

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._sync()
            self.epochs.append((self._start, time.time(), int(trainer.num_training_batches)))
            if len(self.epochs) == 1:
                (result.parent / f"{result.stem}.ready").touch()
                # Bounded, so that a trial that died before this point holds the others up only so long.
                waited = time.time()
                while len(list(result.parent.glob("*.ready"))) < trials and time.time() - waited < 150:
                    time.sleep(0.05)

    started = time.time()
    torch.set_num_threads(1)
    trial = TrialConfig.model_validate(config)
    pl.seed_everything(trial.seed, workers=True, verbose=False)
    data, loaders, _ = trial_data(trial)
    task = build_trial_task(trial, data)
    clock = EpochClock()
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as root:
        trainer = pl.Trainer(logger=False, callbacks=[clock],
                             **trainer_options(trial.train, batches, 2, Path(root)))
        ready = time.time()
        trainer.fit(task, loaders["train"], loaders["val"])
    cuda = torch.cuda.is_available()
    result.write_text(json.dumps({
        "model": f"{config['frontend']['name']}+{config['backbone']['name']} {config['frontend']['setting']}",
        "epochs": clock.epochs, "setup_s": ready - started, "batch_size": config["train"]["batch_size"],
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
        "device": str(trial_device()), "train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
    }))


def run_trials(run: Run, root: Path, epochs: int, folder: Path, limit_s: float, sample: bool) -> Dict[str, Any]:
    """Start ``run.trials`` trial processes at once, wait for them, summarise."""
    from bench.gpu_trials import GpuSampler

    folder.mkdir(parents=True, exist_ok=True)
    procs = []
    with GpuSampler() if sample else _NoSampler() as sampler:
        for i in range(run.trials):
            config = trial_config(run, i, root, epochs)
            command = [sys.executable, "-m", "bench.gpu_packing", "--worker", json.dumps(config), "--worker-trials",
                       str(run.trials), "--worker-batches", str(run.batches), "--worker-result", str(folder / f"{i}.json")]
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(folder / f"{i}.log", "w")))
        deadline = time.time() + limit_s
        timed_out = False
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                timed_out = True
                p.kill()
                p.wait()
    results = [json.loads((folder / f"{i}.json").read_text()) for i in range(run.trials)
               if (folder / f"{i}.json").exists()]
    failed = run.trials - len(results)
    if failed:
        tails = [(folder / f"{i}.log").read_text()[-1500:] for i in range(run.trials) if not (folder / f"{i}.json").exists()]
        print(f"[{run.name}] {failed} trial(s) failed{' (timed out)' if timed_out else ''}; last log:\n{tails[0]}",
              file=sys.stderr)
    rates, clips, starts, ends, first = [], 0, [], [], []
    for r in results:
        timed = r["epochs"][1:]
        n = sum(b for _, _, b in timed) * r["batch_size"]
        seconds = sum(e - s for s, e, _ in timed)
        rates.append(n / seconds)
        clips += n
        starts.append(timed[0][0])
        ends.append(timed[-1][1])
        first.append(r["epochs"][0][1] - r["epochs"][0][0])
    summary: Dict[str, Any] = {"run": asdict(run), "failed": failed, "trials": results}
    if results:
        window = (min(starts), max(ends))
        gpu = sampler.summary(*window)
        summary.update({
            "trial_rate_mean": statistics.fmean(rates), "trial_rate_min": min(rates), "trial_rate_max": max(rates),
            "gpu_rate": clips / (window[1] - window[0]), "gpu_rate_sum": sum(rates),
            "first_epoch_s": max(first), "setup_s": max(r["setup_s"] for r in results),
            "util_mean": gpu[0]["mean"] if gpu else None, "util_median": gpu[0]["median"] if gpu else None,
            "mem_max_mib": gpu[0]["mem_max"] if gpu else None, "samples": gpu[0]["samples"] if gpu else 0,
            "peak_reserved_mib": max((r["peak_reserved_mib"] or 0) for r in results) or None,
        })
    return summary


def profile_step(root: Path, steps: int = 20) -> str:
    """GPU kernel time per training step of one quickstart trial (BC-ResNet-1, setting D,
    batch 32, device data path, eager, no Lightning), with deterministic algorithms (as
    trials run) and without (cuDNN's benchmark mode), from ``torch.profiler``: where a
    GPU shared by many trials spends its time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from specsweep.spec import TrialConfig
    from specsweep.trainables.trial import build_trial_task, trial_data, trial_device

    cuda = trial_device().type == "cuda"
    # On a CPU (--tiny) the same table is of CPU operator time: a check of this code, not a figure.
    activity, attr = (ProfilerActivity.CUDA, "self_device_time_total") if cuda else (ProfilerActivity.CPU,
                                                                                     "self_cpu_time_total")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    sections = []
    variants = {"deterministic algorithms filling new memory with NaN (trials before this change)": (True, True),
                "deterministic algorithms, no filling (as trials run now)": (True, False),
                "no deterministic algorithms, cuDNN benchmark mode": (False, False)}
    for label, (deterministic, fill) in variants.items():
        torch.use_deterministic_algorithms(deterministic)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, not deterministic
        config = trial_config(Run("profile", "quickstart", 1, "device", False, steps), 3, root, 1)
        config["train"].update(schedule="constant", warmup_epochs=0)
        trial = TrialConfig.model_validate(config)
        data, loaders, _ = trial_data(trial)
        task = build_trial_task(trial, data).to(trial_device())
        optimizer = task.configure_optimizers()
        batches = itertools.chain.from_iterable(itertools.repeat(loaders["train"]))

        def step() -> None:
            waveform, targets = next(batches)
            optimizer.zero_grad(set_to_none=True)
            task.loss_fn(task(waveform), targets[:, 0]).backward()
            optimizer.step()
            task.net.frontend.after_optimizer_step()

        for _ in range(5):
            step()
        sync()
        with profile(activities=[activity]) as prof:
            for _ in range(steps):
                step()
            sync()
        events = [e for e in prof.key_averages() if getattr(e, attr) > 0]
        total = sum(getattr(e, attr) for e in events)
        kernels = sum(e.count for e in events)
        top = sorted(events, key=lambda e: getattr(e, attr), reverse=True)[:8]
        rows = [[e.key[:90].replace("|", "/"), f"{getattr(e, attr) / steps / 1000:.3f}",
                 f"{100 * getattr(e, attr) / total:.0f}", f"{e.count / steps:.0f}"] for e in top]
        sections.append(
            f"With {label}: "
            f"GPU kernel time {total / steps / 1000:.3f} ms per step ({32 * steps / (total / 1e6):,.0f} clips/s if "
            f"the GPU did nothing else), {kernels / steps:.0f} kernels and copies per step.\n\n"
            + table(["kernel", "ms per step", "% of GPU time", "calls per step"], rows))
    torch.use_deterministic_algorithms(False)
    return "## GPU time of one training step (BC-ResNet-1, setting D, batch 32, eager)\n\n" + "\n\n".join(sections)


class _NoSampler:
    """Stands in for :class:`GpuSampler` where there is no ``nvidia-smi`` (``--tiny`` on a CPU)."""

    def __enter__(self) -> "_NoSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def summary(self, start: float = 0.0, end: float = float("inf")) -> List[Dict[str, float]]:
        return []


def result_table(summaries: List[Dict[str, Any]]) -> str:
    rows = []
    for s in summaries:
        run = s["run"]
        rows.append([run["name"], f"{run['models']} (batch {32 if run['models'] == 'quickstart' else 100})",
                     run["data_path"], "compiled" if run["compile"] else "eager", str(run["trials"]),
                     fmt(s.get("trial_rate_mean"), 0), f"{fmt(s.get('trial_rate_min'), 0)}-{fmt(s.get('trial_rate_max'), 0)}",
                     fmt(s.get("gpu_rate"), 0), fmt(s.get("gpu_rate_sum"), 0), fmt(s.get("util_mean"), 0),
                     fmt(s.get("util_median"), 0), fmt(s.get("mem_max_mib"), 0), fmt(s.get("peak_reserved_mib"), 0),
                     fmt(s.get("first_epoch_s"), 1), str(s["failed"])])
    return table(["run", "models", "data path", "step", "trials", "clips/s per trial (mean)", "per trial min-max",
                  "clips/s per GPU", "sum of trial rates", "GPU util mean %", "util median %", "GPU memory MiB",
                  "peak reserved per trial MiB", "first epoch s (max)", "failed"], rows)


def main(argv: Optional[List[str]] = None) -> None:
    p = parser(__doc__.split("\n\n")[0], NAME)
    p.add_argument("--clips-per-word", type=int, default=700)
    p.add_argument("--epochs", type=int, default=4, help="epochs per trial; the first is not timed")
    p.add_argument("--budget-s", type=float, default=480.0, help="stop starting runs after this many seconds")
    p.add_argument("--only", default=None, help="comma-separated run names, run in that order (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write every trial's figures to this JSON file")
    p.add_argument("--profile", action="store_true", help="first profile the GPU time of one eager training step")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-batches", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--worker-trials", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker), args.worker_batches, args.worker_result, args.worker_trials)
        return
    import torch

    from bench.gpu_trials import gpu_missing
    from specsweep.data.datasets import prepare_dataset

    cuda = torch.cuda.is_available()
    missing = gpu_missing("cuda")
    if missing and not args.tiny:
        print(f"gpu_packing: {missing}; nothing measured (--tiny runs a CPU smoke test).", file=sys.stderr)
        raise SystemExit(2)
    runs = RUNS
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {r.name for r in RUNS})
        if unknown:
            p.error(f"unknown runs {unknown}; choose from {', '.join(r.name for r in RUNS)}")
        runs = [next(r for r in RUNS if r.name == n) for n in names]
    if args.tiny:
        args.clips_per_word, args.epochs = 6, 2
        runs = [Run(r.name, r.models, min(r.trials, 2), r.data_path, r.compile, 2) for r in runs
                if not r.compile][: 4 if args.only is None else None]
    start = time.perf_counter()
    summaries: List[Dict[str, Any]] = []
    skipped: List[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        os.environ["SPECSWEEP_CACHE"] = str(Path(tmp) / "cache")
        root = write_tree(Path(tmp) / "sc", args.clips_per_word)
        train_clips = len(prepare_dataset({"name": "speechcommands", "root": str(root)}).dataset("train"))
        prep_s = time.perf_counter() - start
        sections = [profile_step(root, 2 if args.tiny else 20)] if args.profile else []
        for i, run in enumerate(runs):
            left = args.budget_s - (time.perf_counter() - start)
            if left < 30:
                skipped = [r.name for r in runs[i:]]
                break
            t0 = time.perf_counter()
            summaries.append(run_trials(run, root, args.epochs, Path(tmp) / run.name, left, cuda and not missing))
            s = summaries[-1]
            print(f"[{run.name}] {time.perf_counter() - t0:.0f} s: per trial {fmt(s.get('trial_rate_mean'), 0)}, "
                  f"per GPU {fmt(s.get('gpu_rate'), 0)} clips/s, util {fmt(s.get('util_mean'), 0)} %, "
                  f"failed {s['failed']}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(summaries, indent=1))
    name = torch.cuda.get_device_name(0) if cuda else "none (CPU)"
    header = [
        machine_line(torch_threads=1),
        f"- GPU: {name}" + (f", {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if cuda else ""),
        versions_line("torch", "lightning", "nnAudio"),
        f"- data: synthetic Speech Commands tree, {args.clips_per_word} clips per word, {train_clips:,} train clips "
        f"(prepared in {prep_s:.0f} s); {args.epochs} epochs per trial, the first untimed; validation 2 batches per epoch",
        f"- benchmark wall time {time.perf_counter() - start:.0f} s" + ("; --tiny: numbers mean nothing" if args.tiny else ""),
    ]
    if skipped:
        header.append(f"- not run (budget of {args.budget_s:.0f} s spent): {', '.join(skipped)}")
    publish(document("Trials packed on one GPU", header, [result_table(summaries), *sections]), out_path(args.out, NAME))


if __name__ == "__main__":
    main()
