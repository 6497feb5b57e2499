"""Sweep efficiency: N identical short trials through Ray Tune versus one after another in one process.

* Ray Tune: ``specsweep.sweep.launcher.run_sweep`` on a temporary spec derived from
  ``sweeps/quickstart.yaml`` (setting A only, seeds 1..N, ``train.epochs`` epochs,
  W&B offline), local Ray with ``num_cpus`` = concurrency and 1 CPU per trial, so
  ``concurrency`` trials run at a time with 1 torch thread each.
* Sequential: the same trial configs run one after another in this process without Ray,
  as the original Hydra multirun did: ``build_task``, ``make_loaders`` and a Lightning
  ``Trainer`` with the options of ``train_trial`` (same callbacks, minus Tune's report; a
  checkpoint file written per epoch in its place), no W&B, torch's default thread count.

Reported: the wall time of each approach; the sweep efficiency
``sum(timing/fit_s) / (concurrency * wall time)``, i.e. the share of the CPU slots spent
fitting; the fixed cost per trial split by part from the ``timing/*`` metrics each
trial reports (data, model, W&B, per-epoch checkpoint + report, test) plus what lies
outside the trial function (actor start, Tune scheduling, result handling); Ray's start-up
time; and the start of a Ray task and of an actor that imports the trainable, first call
versus second call (a reused worker or actor skips process start and imports, which is
what ``reuse_actors=True`` buys each trial after the first on an actor).

Usage::

    python -m bench.bench_sweep                 # 8 trials x 1 epoch, 2 concurrent
    python -m bench.bench_sweep --epochs 2      # longer trials
    python -m bench.bench_sweep --tiny          # 2 trials, smoke mode (1 batch), no efficiency claim
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from bench.common import document, exit_on_sigterm, fmt, machine_line, out_path, parser, publish, table, versions_line

NAME = "sweep"
QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"
# Parts of a trial's fixed cost, as train_trial reports them in its final result.
PARTS = {
    "timing/data_s": "dataset attach + loaders",
    "timing/model_s": "model build",
    "timing/wandb_s": "W&B init + finish",
    "timing/checkpoint_s": "per-epoch checkpoint + Tune report",
    "timing/test_s": "test (best weights)",
}
FIT = "timing/fit_s"
# What each trial pays around its fit, whatever the sweep's size; the test evaluation is
# work on the test set, counted in the total fixed cost but not here.
OVERHEAD = ("timing/data_s", "timing/model_s", "timing/wandb_s", "timing/checkpoint_s")
ENTRY = "timing/entry_unix"
WORKER = "timing/worker_unix"


def write_spec(folder: Path, trials: int, epochs: int, tiny: bool) -> Path:
    """The quickstart spec reduced to ``trials`` identical trials of setting A."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["name"] = "bench-sweep"
    raw["search"]["space"] = {"frontend.setting": {"grid": ["A"]}}
    raw.setdefault("train", {})["epochs"] = epochs
    raw["resources"] = {"cpus": 1, "gpus": 0}
    # Offline: a benchmark never uploads, whatever credentials the machine has.
    raw["wandb"]["mode"] = "offline"
    if tiny:
        # Smoke mode keeps only the first seed, so repeat the sample instead.
        raw["seeds"] = [1]
        raw["search"]["num_samples"] = trials
        raw["smoke"]["limit_train_batches"] = raw["smoke"]["limit_eval_batches"] = 1
    else:
        raw["seeds"] = list(range(1, trials + 1))
    path = folder / "bench-sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def timed_ray_init(num_cpus: int) -> float:
    from specsweep.sweep.cluster import start_ray

    start = time.perf_counter()
    start_ray(num_cpus=num_cpus)
    return time.perf_counter() - start


def ray_start_costs(with_task: bool = True) -> List[Tuple[str, float, float, int]]:
    """``(what, seconds from submit to result, seconds importing inside, pid)`` for a task
    (unless not ``with_task``) and an actor that import the trainable module, each called twice."""
    import ray

    def import_trainable() -> float:
        start = time.perf_counter()
        import specsweep.trainables.trial  # noqa: F401  (the import is what is measured)

        return time.perf_counter() - start

    @ray.remote(num_cpus=1)
    def probe_task() -> Tuple[float, int]:
        return import_trainable(), os.getpid()

    @ray.remote(num_cpus=1)
    class ProbeActor:
        def __init__(self) -> None:
            self.import_s = import_trainable()

        def ping(self) -> Tuple[float, int]:
            seconds, self.import_s = self.import_s, 0.0
            return seconds, os.getpid()

    rows = []
    for label in ("task, 1st call", "task, 2nd call") if with_task else ():
        start = time.perf_counter()
        import_s, pid = ray.get(probe_task.remote())
        rows.append((label, time.perf_counter() - start, import_s, pid))
    start = time.perf_counter()
    actor = ProbeActor.remote()
    import_s, pid = ray.get(actor.ping.remote())
    rows.append(("actor, create + 1st call", time.perf_counter() - start, import_s, pid))
    start = time.perf_counter()
    import_s, pid = ray.get(actor.ping.remote())
    rows.append(("actor, 2nd call (reused)", time.perf_counter() - start, import_s, pid))
    ray.kill(actor)
    return rows


def ray_sweep(spec_path: Path, storage: Path, concurrency: int, tiny: bool) -> Dict[str, Any]:
    from specsweep.results.status import last_result, read_trials
    from specsweep.rundir import RunLocation, trial_folder
    from specsweep.sweep.launcher import run_sweep

    init_s = timed_ray_init(concurrency)
    start_unix, start = time.time(), time.perf_counter()
    outcome = run_sweep(spec_path, storage=storage, name="bench-sweep", smoke=tiny, num_cpus=concurrency)
    wall = time.perf_counter() - start
    trials = read_trials(outcome.run_dir)
    for t in trials:
        # The final result's pid, which the status summary leaves out.
        t["pid"] = last_result(RunLocation(outcome.run_dir), trial_folder(t["id"])).get("pid")
    # --tiny skips the task probe: a fresh worker's imports take seconds and the actor shows the same.
    probes = ray_start_costs(with_task=not tiny)
    return {"init_s": init_s, "start_unix": start_unix, "wall": wall, "trials": trials,
            "errored": outcome.errored, "unfinished": outcome.unfinished, "probes": probes}


def epoch_checkpoint(path: Path) -> Any:
    """A Lightning callback that writes a checkpoint at the end of each training epoch,
    standing in for Tune's per-epoch checkpoint, and adds up the seconds it takes.

    Built here rather than at module level so that Lightning is imported inside the
    timed part of the sequential run, as its process start."""
    import lightning.pytorch as pl

    class EpochCheckpoint(pl.Callback):
        def __init__(self) -> None:
            self.seconds = 0.0

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            start = time.perf_counter()
            trainer.save_checkpoint(str(path))
            self.seconds += time.perf_counter() - start

    return EpochCheckpoint()


def sequential_trial(config: Dict[str, Any], limits: Dict[str, int], folder: Path) -> Dict[str, float]:
    """One trial as ``train_trial`` runs it, minus Ray and W&B; seconds per part."""
    import lightning.pytorch as pl

    from specsweep.trainables.callbacks import BestWeights, FrontendFigures, RNGState, TaskFigures
    from specsweep.trainables.trial import Laps, set_up_trial, trainer_options

    lap = Laps()
    times = lap.seconds
    trial, data, loaders, generator, task = set_up_trial(config, lap)
    train = trial.train
    best = BestWeights("val_acc", "max")
    checkpoint = epoch_checkpoint(folder / "checkpoint.ckpt")
    figures = folder / "figures"
    options = trainer_options(train, limits.get("limit_train_batches"), limits.get("limit_eval_batches"),
                              folder)
    # The Ray trials of this benchmark get no GPU; neither does the sequential run.
    options.update(accelerator="cpu", devices=1)
    trainer = pl.Trainer(
        logger=False,
        callbacks=[best, FrontendFigures(figures), RNGState(generator), TaskFigures(figures), checkpoint],
        **options,
    )
    trainer.fit(task, loaders["train"], loaders["val"])
    lap(FIT)
    times[FIT] -= checkpoint.seconds
    times["timing/checkpoint_s"] = checkpoint.seconds
    if best.weights is not None:
        task.load_state_dict(best.weights)
    trainer.test(task, loaders["test"], verbose=False)
    lap("timing/test_s")
    return times


def sequential(configs: Sequence[Dict[str, Any]], limits: Dict[str, int], folder: Path) -> Dict[str, Any]:
    start = time.perf_counter()
    # Imported here so that their cost shows, as the one-time start of the single process.
    import lightning.pytorch  # noqa: F401
    import specsweep.trainables.trial  # noqa: F401
    import torch

    import_s = time.perf_counter() - start
    print(f"[bench] sequential: {len(configs)} trials in one process", flush=True)
    trials = [sequential_trial(config, limits, folder / f"trial_{i}") for i, config in enumerate(configs)]
    return {"wall": time.perf_counter() - start, "import_s": import_s, "trials": trials,
            "threads": torch.get_num_threads()}


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _max(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def in_trial_seconds(m: Dict[str, Any]) -> Optional[float]:
    """Seconds the trial function spent in its measured parts (None without timing metrics)."""
    keys = [FIT, *PARTS]
    return sum(m[k] for k in keys) if all(k in m for k in keys) else None


def slot_runs(trials: Sequence[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    """The trials' metrics per actor process (slot), in the order they ran on it."""
    by_pid: Dict[Any, List[Dict[str, Any]]] = {}
    for t in trials:
        if t.get("pid") is not None and ENTRY in t["metrics"] and in_trial_seconds(t["metrics"]) is not None:
            by_pid.setdefault(t["pid"], []).append(t["metrics"])
    return [sorted(runs, key=lambda m: m[ENTRY]) for runs in by_pid.values()]


def actor_gaps(trials: Sequence[Dict[str, Any]]) -> List[float]:
    """Seconds between the end of a trial's measured parts and the entry of the next trial
    on the same actor process (Tune's reset, result handling and scheduling)."""
    return [nxt[ENTRY] - (prev[ENTRY] + in_trial_seconds(prev))
            for runs in slot_runs(trials) for prev, nxt in zip(runs, runs[1:])]


def overhead(m: Dict[str, Any]) -> float:
    return sum(m.get(k, 0.0) for k in OVERHEAD)


def sections(ray_res: Dict[str, Any], seq: Dict[str, Any], concurrency: int, n: int, tiny: bool) -> List[str]:
    metrics = [t["metrics"] for t in ray_res["trials"]]
    has_timing = bool(metrics) and all(FIT in m for m in metrics)
    wall = ray_res["wall"]
    fit_sum = sum(m[FIT] for m in metrics) if has_timing else None
    efficiency = fit_sum / (concurrency * wall) if fit_sum is not None else None
    seq_fit_sum = sum(t[FIT] for t in seq["trials"])

    overview = [
        ["Ray Tune sweep", f"{concurrency} x 1 thread", fmt(wall, 1), fmt(wall / n, 1), fmt(fit_sum, 1),
         fmt(efficiency, 2), fmt(seq["wall"] / wall, 2)],
        ["sequential, one process", f"1 x {seq['threads']} threads", fmt(seq["wall"], 1), fmt(seq["wall"] / n, 1),
         fmt(seq_fit_sum, 1), fmt(seq_fit_sum / seq["wall"], 2), "1.00"],
    ]
    claim = ("--tiny: smoke trials of a few batches; no efficiency claim." if tiny else
             "Target: efficiency >= 0.85 for one-minute trials on 2 cores, fixed cost < 3 s per trial.")
    first = [
        "## Wall time and efficiency",
        f"{n} trials; efficiency = sum(fit s) / (slots x wall s), the share of the trial slots' time spent "
        f"fitting ({concurrency} slots for Ray, 1 for the sequential process, which fits with all threads); "
        f"speed-up = sequential wall / wall. Ray wall time is the `run_sweep` call (Ray already started, {fmt(ray_res['init_s'], 1)} s "
        f"before); sequential wall time includes its imports ({fmt(seq['import_s'], 1)} s). {claim}",
        table(["approach", "concurrency", "wall s", "wall s / trial", "sum fit s", "efficiency", "speed-up"],
              overview),
    ]
    if ray_res["errored"] or ray_res["unfinished"]:
        first.append(f"**{ray_res['errored']} trial(s) errored, {ray_res['unfinished']} unfinished.**")

    rows = []
    for key, label in {**PARTS, FIT: "fit (train + val)"}.items():
        rows.append([label, f"`{key}`", fmt(_mean([m.get(key) for m in metrics])), fmt(_max([m.get(key) for m in metrics])),
                     fmt(_mean([t.get(key) for t in seq["trials"]]))])
    if has_timing:
        firsts = [runs[0] for runs in slot_runs(ray_res["trials"])]
        first_entries = [m[ENTRY] - ray_res["start_unix"] for m in firsts]
        worker_loads = [m[WORKER] - ray_res["start_unix"] for m in firsts if WORKER in m]
        worker_imports = [m[ENTRY] - m[WORKER] for m in firsts if WORKER in m]
        busy = [in_trial_seconds(m) for m in metrics]
        # Whatever the slots did not spend inside trial functions: actor start, Tune's
        # scheduling and bookkeeping, and the tail where one slot idles at the end.
        outside = (concurrency * wall - sum(b for b in busy if b is not None)) / n
        gaps = actor_gaps(ray_res["trials"])
        fixed = (concurrency * wall - fit_sum) / n
        slots = slot_runs(ray_res["trials"])
        later = _mean([overhead(m) for runs in slots for m in runs[1:]])
        first_extra = (_mean([overhead(runs[0]) for runs in slots]) or 0.0) - (later or 0.0)
        per_trial = (later or 0.0) + (_mean(gaps) or 0.0)
        slot_once = (_mean(first_entries) or 0.0) + first_extra
        rows += [
            ["first trials' entry after `run_sweep` start (Tune setup, actor start, imports)", f"`{ENTRY}`",
             fmt(_mean(first_entries)), fmt(_max(first_entries)), "n/a"],
            ["- of which: until the new worker has loaded the trainable (Tune set-up, process start, "
             "Ray in the worker)", f"`{WORKER}`", fmt(_mean(worker_loads)), fmt(_max(worker_loads)), "n/a"],
            ["- of which: the first trial's imports in that worker (torch, Lightning, nnAudio)",
             f"`{ENTRY}` - `{WORKER}`", fmt(_mean(worker_imports)), fmt(_max(worker_imports)), "n/a"],
            ["gap between trials on a reused actor", f"`{ENTRY}`, pid", fmt(_mean(gaps)), fmt(_max(gaps)), "n/a"],
            ["outside trial functions (slots x wall - in-trial s) / N", "", fmt(outside), "", "n/a"],
            ["**per-trial overhead**, a slot's later trials: data + model + W&B + checkpoints + gap", "",
             f"**{fmt(per_trial)}**", "", fmt(_mean([overhead(t) for t in seq["trials"][1:]]))],
            ["**once per slot**: first entry + the first trial's extra overhead (importing wandb, starting "
             "its service)", "", f"**{fmt(slot_once)}**", "", fmt(seq["import_s"])],
            [f"slot start per trial: once per slot x {concurrency} slots / {n} trials", "",
             fmt(slot_once * concurrency / n), "", fmt(seq["import_s"] / n)],
            ["**total fixed cost** (slots x wall - sum fit) / N: overheads, slot start, test, idle tail", "",
             f"**{fmt(fixed)}**", "", fmt((seq["wall"] - seq_fit_sum) / n)],
        ]
    second = [
        "## Fixed cost per trial",
        "Seconds per trial; Ray columns from the `timing/*` metrics of each trial's final report "
        "(`specsweep.results.status.read_trials`), sequential from the same parts timed in-process (its total: "
        "(wall - sum fit) / N, imports included). Fit runs with 1 thread in Ray trials and all threads "
        "in the sequential process, so fit times differ by design. A slot (one trial actor, reused by "
        "the trials that follow on it) starts once: a worker process that imports torch, Lightning and "
        "Ray Tune, so its share per trial shrinks as trials per slot grow; the per-trial overhead does not."
        + ("" if has_timing else " **The trials reported no `timing/*` metrics.**"),
        table(["part", "metric", "Ray mean s", "Ray max s", "sequential mean s"], rows),
    ]
    probe_rows = [["`ray.init` (local, num_cpus " + str(concurrency) + ")", fmt(ray_res["init_s"]), "", ""]]
    probe_rows += [[label, fmt(total), fmt(import_s), str(pid)] for label, total, import_s, pid in ray_res["probes"]]
    third = [
        "## Ray start-up",
        "A remote task and an actor that import `specsweep.trainables.trial`: seconds from submit to result, "
        "and seconds of that spent importing. The second call reuses the worker process (same pid): no "
        "process start, the import is already done.",
        table(["what", "submit to result s", "import s", "pid"], probe_rows),
    ]
    return ["\n\n".join(first), "\n\n".join(second), "\n\n".join(third)]


def main(argv: Optional[List[str]] = None) -> None:
    p = parser(__doc__.split("\n\n")[0], NAME)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=2, help="Ray's num_cpus; 1 CPU per trial")
    p.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    args = p.parse_args(argv)
    exit_on_sigterm()
    if args.tiny:
        args.trials, args.epochs = 2, 1
    # Trial workers inherit the driver's environment: no W&B upload, no prompts.
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        from specsweep.spec import load_spec, plan_trials

        spec_path = write_spec(folder, args.trials, args.epochs, args.tiny)
        spec = load_spec(spec_path, smoke=args.tiny)
        limits = ({"limit_train_batches": spec.smoke.limit_train_batches,
                   "limit_eval_batches": spec.smoke.limit_eval_batches} if args.tiny else {})
        configs = [trial.as_dict() for trial in plan_trials(spec)]
        start = time.perf_counter()
        seq = sequential(configs, limits, folder / "sequential")
        ray_res = ray_sweep(spec_path, folder / "ray", args.concurrency, args.tiny)
        total = time.perf_counter() - start
        import ray

        ray.shutdown()
    header = [
        machine_line(torch_threads=1),
        versions_line("torch", "lightning", "ray"),
        f"- trials: quickstart spec, setting A, {spec.backbone['name']}, data `{spec.data}`, {args.epochs} epoch(s), "
        f"batch {spec.train.batch_size}, seeds {sorted({c['seed'] for c in configs})}, {len(configs)} trials"
        + (f"; smoke limits {limits}" if limits else ""),
        f"- Ray trials: 1 CPU and 1 torch thread each, {args.concurrency} at a time, reuse_actors, W&B offline; "
        f"sequential: torch threads {seq['threads']}, no W&B",
        f"- benchmark wall time {total:.0f} s" + ("; --tiny: numbers mean nothing" if args.tiny else ""),
    ]
    text = document("Sweep efficiency: Ray Tune vs one process", header,
                    sections(ray_res, seq, args.concurrency, len(configs), args.tiny))
    publish(text, out_path(args.out, NAME))


if __name__ == "__main__":
    main()
