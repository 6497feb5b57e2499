"""The Ray Tune trainable: one trial = one Lightning fit of a front-end + backbone on a task.

Tune hands the trial its config as the plain nested dict it sampled from the sweep spec
(``task``, ``data``, ``frontend``, ``backbone``, ``train``, ``seed``); the trial validates
it into a :class:`~specsweep.spec.TrialConfig` first and reads nothing else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import lightning.pytorch as pl
import torch

from specsweep import tracking
from specsweep.assembly import build_task
from specsweep.data.datasets import PreparedData, prepare_dataset_once
from specsweep.data.loaders import make_loaders, resolve_data_path
from specsweep.frontends.plot import plot_frontend, snapshot_frontend
from specsweep.layout import BEST_FILE, CHECKPOINT_FILE, FIGURES_DIR, FILTERBANK_FILE, LOG_FILE
from specsweep.spec import TrainConfig, TrialConfig
from specsweep.trainables.callbacks import (
    BestWeights,
    EpochEndTimer,
    FrontendDrift,
    FrontendFigures,
    ReportCheckpoint,
    RNGState,
    StepWandbLogger,
    TaskFigures,
)
from specsweep.trainables.context import RunContext
from specsweep.trainables.tasks import SpeechTask
from specsweep.trainables.tested import save_tested_weights

_LOG_EVERY_N_STEPS = 10


def build_trial_task(trial: TrialConfig, data: PreparedData) -> SpeechTask:
    """:func:`~specsweep.assembly.build_task`, its model compiled when ``train.compile`` is
    set: in place, so parameter names, checkpoints and the front-end's figures stay as in
    eager mode. On a GPU the compiled forward and backward replay as CUDA graphs
    (``reduce-overhead``): one launch instead of hundreds of small kernels per step."""
    task = build_task(trial, data)
    if trial.train.compile:
        task.net.compile(mode="reduce-overhead" if trial_device().type == "cuda" else None)
    return task


def trial_device() -> torch.device:
    """The device a trial trains on: Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPU (or GPU
    share) it assigned, which the trial sees as its first GPU."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def trial_data(trial: TrialConfig) -> tuple[PreparedData, Dict[str, Any], torch.Generator]:
    """The prepared dataset, its loaders and the seeded generator that orders training batches."""
    train = trial.train
    # Each node prepares for itself, since caches are local to the node.
    data = prepare_dataset_once(trial.data)
    generator = torch.Generator().manual_seed(trial.seed)
    on_device = resolve_data_path(train.data_path, data, trial_device()) == "device"
    by_class = trial.task_info.class_sampling
    loaders = make_loaders(
        data, train.batch_size, generator, train.num_workers,
        balance_classes=train.balance_classes and by_class,
        class_weights=train.class_weights if by_class else None,
        eval_batch_size=train.eval_batch_size, device=trial_device() if on_device else None,
        shuffle=train.shuffle, drop_last=train.drop_last,
    )
    return data, loaders, generator


def set_up_trial(config: Dict[str, Any], lap: "Laps") -> Tuple[TrialConfig, PreparedData, Dict[str, Any],
                                                                 torch.Generator, SpeechTask]:
    """A trial up to its fit: the config validated, every generator seeded, the data
    prepared with its loaders (and the generator that orders training batches), the task
    assembled; ``lap`` times the data and model parts (``timing/data_s``, ``timing/model_s``)."""
    trial = TrialConfig.model_validate(config)
    pl.seed_everything(trial.seed, workers=True, verbose=False)
    data, loaders, generator = trial_data(trial)
    lap("timing/data_s")
    task = build_trial_task(trial, data)
    lap("timing/model_s")
    return trial, data, loaders, generator, task


class Laps:
    """Seconds spent per named part: each call charges the time since the previous call
    (or since construction) to ``name``; ``seconds`` holds the sums."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._clock
        self._clock = now


def trainer_options(train: TrainConfig, limit_train_batches: Optional[Union[int, float]],
                    limit_eval_batches: Optional[Union[int, float]], root: Path,
                    train_batches: Optional[int] = None) -> Dict[str, Any]:
    """The Lightning ``Trainer`` options of a trial, apart from loggers and callbacks.

    Limits are batch counts or fractions as Lightning takes them; ``None`` means every
    batch without Lightning's notice about it. ``train_batches`` (batches in one training
    epoch) caps the logging interval so that every epoch logs its training metrics.

    Trials run with deterministic algorithms, but without that mode's filling of every new
    tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging
    aid that changes no result of ops that write their outputs and costs a kernel per
    allocation: about 1,100 per BC-ResNet-1 training step.
    """
    torch.utils.deterministic.fill_uninitialized_memory = False
    per_epoch = min(n for n in (train_batches, limit_train_batches, _LOG_EVERY_N_STEPS) if isinstance(n, int))
    return dict(
        max_epochs=train.epochs,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_eval_batches,
        limit_test_batches=limit_eval_batches,
        log_every_n_steps=max(1, per_epoch),
        deterministic=True,
        default_root_dir=str(root),
        **_accelerator(),
    )


def _accelerator() -> Dict[str, Any]:
    return {"accelerator": "gpu" if trial_device().type == "cuda" else "cpu", "devices": 1}


def _best_weights_file(best: BestWeights, trial_dir: Path, run: RunContext) -> Optional[Path]:
    """``best.ckpt`` in the trial folder (the best epoch's ``state_dict``, its epoch and
    score) when the sweep logs checkpoints to W&B and a best epoch exists."""
    if not run.wandb.log_checkpoints or best.weights is None:
        return None
    path = trial_dir / BEST_FILE
    torch.save({"state_dict": best.weights, "epoch": best.best_epoch, run.metric: best.best_score}, path)
    return path


def _final_filterbank(task: SpeechTask, initial: Dict[str, torch.Tensor], trial_dir: Path) -> List[Path]:
    """The tested front-end's bases in the trial folder: ``filterbank.pt`` (``filterbank``
    ``(n_bins, n_freq)``, ``stft_kernels`` ``(n_freq, n_fft)`` when trainable, and their
    values at the start of the trial as ``initial_filterbank`` / ``initial_stft_kernels``)
    and ``filterbank.png``, drawn over the initial values."""
    frontend = task.net.frontend
    tensors = {**snapshot_frontend(frontend), **{f"initial_{k}": v for k, v in initial.items()}}
    paths = [trial_dir / FILTERBANK_FILE, trial_dir / "filterbank.png"]
    torch.save(tensors, paths[0])
    plot_frontend(frontend, initial=initial, path=paths[1])
    return paths


def train_trial(config: Dict[str, Any], run: RunContext, worker_unix: float) -> None:
    """One trial inside Tune: fit, checkpoint and report every epoch, test at the end.

    Tune calls it through :func:`specsweep.trainables.trainable.train_trial`.

    The final report adds the test metrics, ``best_<metric>``, ``best_epoch`` and the
    trial's fixed costs as ``timing/*`` (seconds; ``timing/entry_unix`` and
    ``timing/worker_unix`` are the Unix times the trial started and its worker loaded the
    trainable, ``worker_unix``), which ``bench/bench_sweep.py`` reads.
    """
    # Ray is imported here, not above, so that a trial's set-up (build_trial_task, trial_data)
    # loads without it: benchmarks on a bare GPU machine and ``specsweep inspect --calibrate``.
    import ray
    from ray import tune

    entry = time.time()
    lap = Laps()
    timings = lap.seconds
    context = tune.get_context()
    trial_dir = Path(context.get_trial_dir())
    log_file = trial_dir / LOG_FILE
    cpus = context.get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    trial, data, loaders, sampler_generator, task = set_up_trial(config, lap)
    train = trial.train

    trial_id = context.get_trial_id()
    # Tune's trial ids end in the trial's number in the sweep.
    name = tracking.run_name(trial, config, run.swept_keys, sample=trial_id.rsplit("_", 1)[-1] if run.repeats else None)
    run_obj = tracking.init_run(
        run.wandb, trial_dir, tracking.run_id(run.sweep_dir, trial_id), name, config,
        tags=[f"setting-{trial.setting}", trial.task, trial.frontend["name"], trial.backbone["name"]],
    )
    if run_obj is not None:
        tracking.define_metrics(run_obj, {**trial.task_info.val_metrics, run.metric: run.mode},
                                per_epoch=trial.task_info.train_metrics)
    loggers: List[Any] = [] if run_obj is None or run.wandb.mode == "disabled" else [StepWandbLogger(experiment=run_obj)]
    lap("timing/wandb_s")
    # The sweep's metric is tracked for its best value; the tested weights are the last
    # epoch's or those of the best epoch by train.best_by (default: the sweep's metric).
    monitor = train.best_by or run.metric
    test_best = train.test_weights == "best"
    best = BestWeights(run.metric, run.mode,
                       keep_weights=(test_best and monitor == run.metric) or run.wandb.log_checkpoints)
    tested = None
    if test_best:
        tested = best if monitor == run.metric else BestWeights(monitor, trial.task_info.mode(monitor))
    report_timer = EpochEndTimer()
    figures = trial_dir / FIGURES_DIR
    frontend_figures = FrontendFigures(figures)
    trainer = pl.Trainer(
        logger=loggers or False,
        callbacks=[
            *([best] if tested in (None, best) else [best, tested]),
            FrontendDrift(),
            frontend_figures,
            RNGState(sampler_generator),
            TaskFigures(figures),
            report_timer.start,
            ReportCheckpoint(CHECKPOINT_FILE),
            report_timer.stop,
        ],
        **trainer_options(train, run.limit_train_batches, run.limit_eval_batches, trial_dir,
                          train_batches=len(loaders["train"])),
    )
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            trainer.fit(task, loaders["train"], loaders["val"])
        else:
            with checkpoint.as_directory() as folder:
                trainer.fit(task, loaders["train"], loaders["val"], ckpt_path=os.path.join(folder, CHECKPOINT_FILE))
        lap("timing/fit_s")
        timings["timing/fit_s"] -= report_timer.total
        timings["timing/checkpoint_s"] = report_timer.total
        final = {**best.last_metrics, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
        if tested is not None and tested.weights is not None:
            task.load_state_dict(tested.weights)
        # After fit, current_epoch counts the epochs run; the last one's index is one less.
        tested_epoch = tested.best_epoch if tested is not None else trainer.current_epoch - 1
        # Tune keeps only the best checkpoints by the sweep's metric, which need not hold the tested weights.
        save_tested_weights(trial_dir, task.net, tested_epoch)
        final.update({k: float(v) for k, v in trainer.test(task, loaders["test"], verbose=False)[0].items()})
        final["best_" + run.metric] = best.best_score if best.best_score is not None else final.get(run.metric)
        final["best_epoch"] = best.best_epoch
        final["tested_epoch"] = tested_epoch
        examples = task.examples_table()
        if examples is not None and loggers:
            loggers[0].log_text("decoded_examples", columns=examples[0], data=examples[1])
        lap("timing/test_s")
        wandb_url = None
        if run_obj is not None:
            run_obj.summary.update({k: v for k, v in final.items() if k.startswith(("test_", "best_", "frontend/"))})
            tracking.log_trial_files(run_obj, log_file, _best_weights_file(best, trial_dir, run), final)
            tracking.log_filterbank(run_obj, _final_filterbank(task, frontend_figures.initial, trial_dir),
                                    {"frontend": trial.frontend, "setting": trial.setting,
                                     "tested_epoch": final["tested_epoch"]})
            wandb_url = None if run_obj.offline else run_obj.url
        tracking.finish_run(run_obj)
        run_obj = None
        lap("timing/wandb_s")
        # The node id tells where a trial ran when several nodes share one IP (tests, laptops).
        tune.report({**final, **timings, "timing/entry_unix": entry, "timing/worker_unix": worker_unix,
                     "node_id": ray.get_runtime_context().get_node_id(),
                     **({"wandb_url": wandb_url} if wandb_url else {})})
    finally:
        tracking.finish_run(run_obj)
