"""Launch, resume and summarise sweeps with Ray Tune."""

from __future__ import annotations

import importlib
import io
import os
import pickle
import shlex
import sys
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from specsweep.layout import CHECKPOINT_FILE
from specsweep.plan.limits import DEFAULT_MAX_TRIALS
from specsweep.plan.plan import SweepPlan, plan_sweep
from specsweep.results.status import DamagedRunError, format_table, last_result, read_trials, summary_rows
from specsweep.rundir import (EXPERIMENT_STATE, RUN_FILE, SPEC_FILE, TRIALS, DamagedFileError, RunDirError, RunLocation,
                              check_free, check_run_name, claim_run_dir, load_run, released_on_failure, run_info,
                              read_bounded, trial_dirname, trial_folder, write_run)
from specsweep.spec import SweepSpec, load_spec, param_space
from specsweep.sweep.cluster import LaunchError, check_cluster, cluster_address, join_ray

# Tune pickles the experiment's ``trial_dirname_creator`` by name: run directories written
# before the layout moved to rundir.py name it here, and status, report and resume unpickle it.
_trial_dirname = trial_dirname
# Modules that a run directory's tuner.pkl names (Tune pickles the callbacks, the trial
# folder namer and the trials' resource request by module and name) and that have moved
# since: older runs still resume.
MOVED_MODULES = {"specsweep.launcher": "specsweep.sweep.launcher", "specsweep.progress": "specsweep.sweep.progress",
                 "specsweep.index": "specsweep.sweep.index", "specsweep.packing": "specsweep.plan.packing"}


@contextmanager
def _moved_modules() -> Iterator[None]:
    """The old names of :data:`MOVED_MODULES` resolve to the modules' places while Tune
    unpickles a run's tuner.pkl (pickle finds a class through ``sys.modules``)."""
    added = [old for old in MOVED_MODULES if old not in sys.modules]
    for old in added:
        sys.modules[old] = importlib.import_module(MOVED_MODULES[old])
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)


def default_storage() -> RunLocation:
    return RunLocation(os.environ.get("SPECSWEEP_STORAGE", "runs"))


def _storage_dir(storage: Union[Path, str, None]) -> RunLocation:
    location = RunLocation(storage) if storage else default_storage()
    location.check_can_hold_runs()
    return location


def _prepare_data(plan: SweepPlan) -> None:
    """Prepare every distinct dataset the sweep uses before trials start: downloads and
    synthesis happen once, and a missing dataset fails here with its message."""
    from specsweep.data.datasets import prepare_dataset

    for data in plan.data_configs:
        prepare_dataset(data)


@dataclass
class SweepOutcome:
    run_dir: Union[Path, str]
    rows: List[Dict[str, Any]]
    errored: int
    unfinished: int

    @property
    def exit_code(self) -> int:
        return 1 if self.errored or self.unfinished else 0


def _trial_resources(spec: SweepSpec, gpu_packing: Optional[List[Dict[str, Any]]]) -> Any:
    """Tune's resources of a trial: the spec's, or with ``gpus: auto`` each model's share."""
    if not spec.resources.auto_gpus:
        return {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    from specsweep.plan.packing import TrialResources, packing_from_record

    return TrialResources(spec.resources.cpus, packing_from_record(gpu_packing or []))


def _resolve_gpus(plan: SweepPlan) -> Optional[List[Dict[str, Any]]]:
    """What ``resources.gpus: auto`` chooses on the joined Ray (None for a fixed number)."""
    if not plan.spec.resources.auto_gpus:
        return None
    from specsweep.plan.packing import packing_record
    from specsweep.sweep.gpus import resolve_gpus

    return packing_record(resolve_gpus(plan.packing_trials, plan.spec.resources.cpus))


def _build_tuner(plan: SweepPlan, run_dir: RunLocation, smoke: bool, restore: bool = False,
                 restart_errored: bool = False, verbose: bool = False,
                 gpu_packing: Optional[List[Dict[str, Any]]] = None):
    from ray import tune

    from specsweep import tracking
    from specsweep.search import build_scheduler, build_searcher, stops_early
    from specsweep.sweep.index import TrialIndexCallback
    from specsweep.sweep.progress import SchedulerState, SweepProgress, set_console
    from specsweep.trainables.trainable import RunContext, train_trial

    spec = plan.spec

    limits = {}
    if smoke:
        limits = {"limit_train_batches": spec.smoke.limit_train_batches, "limit_eval_batches": spec.smoke.limit_eval_batches}
    wandb_mode = spec.wandb.mode
    if wandb_mode != "disabled":
        # wandb validates its WANDB_* variables in every trial's wandb.init: a bad one would
        # fail every trial.
        problem = tracking.environment_problem()
        if problem:
            raise LaunchError(problem)
    if tracking.resolve_mode(wandb_mode) == "online":
        unreachable = tracking.unreachable_server()
        if unreachable:
            # Each trial would otherwise wait out wandb's init timeout before logging offline.
            print(f"[specsweep] W&B server unreachable ({unreachable}): trials log offline; upload them "
                  f"afterwards with the printed `wandb sync` command")
            wandb_mode = "offline"
    context = RunContext(
        sweep_dir=str(run_dir), metric=spec.metric, mode=spec.mode,
        wandb=tracking.WandbSettings(project=spec.wandb.project, entity=spec.wandb.entity,
                                     group=spec.wandb.group or run_dir.name, mode=wandb_mode,
                                     tags=spec.wandb.tags, log_checkpoints=spec.wandb.log_checkpoints),
        stream_output=verbose, swept_keys=tuple(spec.search.space), repeats=spec.search.num_samples > 1,
        **limits,
    )
    set_console(verbose=verbose)
    # Tune's legacy console engine at verbosity 0 prints nothing; the newer one still
    # prints its start banner. SweepProgress is the sweep's console.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # A failed trial's traceback is in its error.txt and trial.log, and the console says
    # which trial failed and where to look; -v prints Tune's tracebacks as well.
    os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "1" if verbose else "0"
    if run_dir.is_local:
        # Tune snapshots the experiment after every `checkpoint.num_to_keep` checkpoints of
        # a trial so that a resume finds the checkpoints it names, and warns when that
        # happens within seconds; short epochs do that by design, and a local run
        # directory's snapshot is a file write.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(tune.with_parameters(train_trial, run=context),
                                    _trial_resources(spec, gpu_packing))
    if restore:
        try:
            with _moved_modules():
                return tune.Tuner.restore(run_dir.uri, trainable, resume_unfinished=True,
                                          resume_errored=not restart_errored, restart_errored=restart_errored)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
                ValueError) as err:
            # Tune reads its pickled tuner.pkl and the experiment state before it writes anything.
            raise RunDirError(f"{run_dir}: Tune's saved state cannot be read ({type(err).__name__}: "
                              f"{str(err)[:200]}); tuner.pkl or {EXPERIMENT_STATE} is damaged, or was written by "
                              f"another version of Ray or specsweep; the run is untouched") from None
    scheduler = build_scheduler(spec)
    early_stopping = stops_early(scheduler)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=build_searcher(spec), scheduler=scheduler,
            num_samples=spec.search.num_samples, max_concurrent_trials=spec.resources.max_concurrent,
            trial_dirname_creator=trial_dirname,
            # A trial's process keeps torch, Lightning and the memory-mapped caches loaded
            # for the next trial; trials share no other state (each seeds and sets up anew).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_dir.name, storage_path=run_dir.parent.uri,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep,
                                                    checkpoint_score_attribute=spec.metric,
                                                    checkpoint_score_order=spec.mode),
            # Figures, best weights and offline W&B runs live in the trial's working
            # directory; syncing artifacts brings them to the run directory (or cloud storage).
            sync_config=tune.SyncConfig(sync_artifacts=True),
            # SchedulerState first: Tune keeps callback states by position in this list.
            callbacks=[*([SchedulerState(scheduler)] if early_stopping else []),
                       SweepProgress(spec.metric, spec.mode, spec.train.epochs, plan.count, labels=plan.labels,
                                     early_stopping=early_stopping),
                       TrialIndexCallback(run_dir.uri, spec)],
            verbose=0,
        ),
    )


def run_sweep(
    spec_path: Path,
    storage: Union[Path, str, None] = None,
    name: Optional[str] = None,
    address: Optional[str] = None,
    smoke: bool = False,
    num_cpus: Optional[int] = None,
    max_trials: int = DEFAULT_MAX_TRIALS,
    verbose: bool = False,
    overrides: Sequence[str] = (),
) -> SweepOutcome:
    """Validate ``spec_path`` and what it would cost, claim a fresh run directory under
    ``storage`` (a local folder or a pyarrow URI such as ``s3://bucket/runs``), run the
    sweep, summarise it. Every refusal comes before the run directory exists.
    ``verbose`` streams what trials print to the console as well as to their logs;
    ``overrides`` (``--set KEY=VALUE``) change the spec before it is validated, and the
    run directory keeps the changed spec."""
    spec = load_spec(spec_path, smoke=smoke, overrides=overrides)
    name = check_run_name(f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}" if name is None else name)
    cluster = cluster_address(address)
    plan = plan_sweep(spec)
    plan.check(str(spec_path), max_trials, local=cluster is None, num_cpus=num_cpus)
    storage = _storage_dir(storage)
    check_free(storage.child(name))
    _prepare_data(plan)
    # Ray is started or joined before the run directory exists: a cluster that cannot be
    # joined or is too small leaves nothing to clean up.
    join_ray(address, num_cpus)
    if cluster:
        check_cluster(spec, cluster)
    gpu_packing = _resolve_gpus(plan)
    storage_existed = storage.is_dir()
    claimed = claim_run_dir(storage, name)
    run_dir = RunLocation(claimed)
    with released_on_failure(claimed, storage_existed):
        write_run(run_dir, spec, spec_path, smoke, gpu_packing, overrides=overrides)
        tuner = _build_tuner(plan, run_dir, smoke, verbose=verbose, gpu_packing=gpu_packing)
    return _finish(tuner, spec, run_dir)


def run_command(args: Any) -> int:
    """``specsweep run``: :func:`run_sweep` with the command's arguments; its exit status."""
    return run_sweep(Path(args.spec), storage=args.storage, name=args.name, address=args.address, smoke=args.smoke_test,
                     num_cpus=args.num_cpus, max_trials=args.max_trials, verbose=args.verbose,
                     overrides=args.set).exit_code


def resume_command(args: Any) -> int:
    """``specsweep resume``: :func:`resume_sweep` with the command's arguments; its exit status."""
    return resume_sweep(args.run_dir, address=args.address, restart_errored=args.restart_errored,
                        num_cpus=args.num_cpus, verbose=args.verbose).exit_code


def resume_sweep(run_dir: Union[Path, str], address: Optional[str] = None, restart_errored: bool = False,
                 num_cpus: Optional[int] = None, verbose: bool = False) -> SweepOutcome:
    """Continue a killed or failed sweep in place: finished trials are kept, unfinished
    ones continue from their latest checkpoints, errored ones are retried.

    A damaged run directory is refused before Ray starts, so that Tune never writes over
    what is left of it.
    """
    from ray import tune

    run_dir = RunLocation(run_dir)
    spec = load_run(run_dir)
    info = run_info(run_dir)
    if spec.resources.auto_gpus and info.gpu_packing is not None:
        from specsweep.plan.packing import packing_from_record

        try:
            packing_from_record(info.gpu_packing)
        except ValueError as err:
            raise RunDirError(f"{run_dir.child(RUN_FILE)}: its gpu_packing record is damaged ({err}); remove that "
                              f"entry to have resume measure the GPUs again") from None
    try:
        trials = read_trials(run_dir)
    except DamagedRunError as err:
        raise RunDirError(f"{err}\nresume refuses to write over a damaged run: `specsweep status {shlex.quote(str(run_dir))}` shows "
                          f"what can still be read; move the damaged files aside to resume the rest") from None
    _check_tuner_pickle(run_dir)
    # Errored trials restarted from scratch never read their checkpoints.
    damaged = _damaged_checkpoints(run_dir, [t for t in trials if not (restart_errored and t["status"] == "ERROR")])
    if damaged:
        raise RunDirError("\n".join(damaged) + "\nresume refuses to continue a trial from a damaged checkpoint: move "
                          "that checkpoint folder aside to continue from the one before (or from the start)")
    # Without its experiment state Tune would start the sweep anew inside the old run.
    if not tune.Tuner.can_restore(run_dir.uri) or not run_dir.glob(EXPERIMENT_STATE):
        raise RunDirError(f"{run_dir} has no Tune experiment state to resume (was the sweep started?)")
    # Trials a search has not generated yet (max_concurrent, optuna) are not in the run
    # directory: the sweep is done only when every planned trial is there and finished.
    plan = plan_sweep(spec)
    if len(trials) >= plan.count and all(t["status"] == "TERMINATED" for t in trials):
        print(f"[specsweep] {run_dir}: all {len(trials)} trials already finished; nothing to resume")
        return SweepOutcome(run_dir.display, summary_rows(trials, spec), 0, 0)
    # The trial count was accepted when the sweep started (perhaps with --max-trials).
    plan.check(str(run_dir.child(SPEC_FILE)), max_trials=plan.count, local=cluster_address(address) is None,
               num_cpus=num_cpus)
    _prepare_data(plan)
    join_ray(address, num_cpus)
    # The resources the sweep started with; a run from before gpus: auto was recorded measures anew.
    gpu_packing = info.gpu_packing
    if gpu_packing is None:
        gpu_packing = _resolve_gpus(plan)
    else:
        _require_recorded_gpus(gpu_packing, run_dir)
    tuner = _build_tuner(plan, run_dir, info.smoke, restore=True, restart_errored=restart_errored, verbose=verbose,
                         gpu_packing=gpu_packing)
    return _finish(tuner, spec, run_dir)


# Tune's pickle of the Tuner (Ray 2.60 writes it with pickle protocol 2 or higher: it starts
# with the PROTO opcode).
TUNER_FILE = "tuner.pkl"


def _check_tuner_pickle(run_dir: RunLocation) -> None:
    """RunDirError naming ``tuner.pkl`` when it is not a pickle Tune could have written
    (empty, a folder, too large, no pickle header), before Ray starts; Tune's restore
    names what it cannot unpickle later (see :func:`_build_tuner`)."""
    if not run_dir.exists(TUNER_FILE):
        return  # Tune's can_restore names a run without one
    try:
        head = read_bounded(run_dir, TUNER_FILE)[:2]
        reason = None if len(head) == 2 and head[0] == pickle.PROTO[0] else "empty or not a pickle"
    except DamagedFileError as err:
        reason = err.reason
    if reason:
        raise RunDirError(f"{run_dir}: Tune's saved state cannot be read ({run_dir.child(TUNER_FILE)}: {reason}); "
                          f"it is damaged, or was written by another version of Ray or specsweep; the run is untouched")


def _damaged_checkpoints(run_dir: RunLocation, trials: List[Dict[str, Any]]) -> List[str]:
    """The checkpoint Tune would restore an unfinished trial from, where it is not a whole
    torch file (a zip archive): Tune would load it, fail, and retry until the trial errors.
    A later checkpoint Tune's state does not name (a sweep killed while saving) is not used."""
    damaged = []
    for trial in trials:
        if trial["status"] == "TERMINATED" or not trial.get("checkpoint"):
            continue
        relative = f"{trial_folder(trial['id'])}/{trial['checkpoint']}/{CHECKPOINT_FILE}"
        if not run_dir.exists(relative):
            continue
        try:
            whole = zipfile.is_zipfile(io.BytesIO(read_bounded(run_dir, relative)))
        except DamagedFileError:
            whole = False
        if not whole:
            damaged.append(f"{run_dir.child(relative)}: the checkpoint trial {trial['id']} would continue from is "
                           f"damaged (not a whole torch checkpoint)")
    return damaged


def _require_recorded_gpus(gpu_packing: List[Dict[str, Any]], run_dir: RunLocation) -> None:
    """Refuse to resume trials packed onto GPUs on a Ray without GPUs, where Tune would
    wait for them forever."""
    import ray

    shares = [row["gpus"] for row in gpu_packing if row.get("gpus")]
    if shares and ray.cluster_resources().get("GPU", 0) <= 0:
        raise LaunchError(f"{run_dir}: its trials were packed onto GPUs when the sweep started (resources.gpus: auto, "
                          f"up to {max(shares):g} GPU each, recorded in {RUN_FILE}), and the Ray here has no GPU; "
                          f"resume it on a machine with GPUs, or join a cluster with them (--address)")


def _finish(tuner: Any, spec: SweepSpec, run_dir: RunLocation) -> SweepOutcome:
    from specsweep.sweep.index import write_index

    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    trials = read_trials(run_dir)
    # Also for runs whose pickled tuner predates the index callback.
    write_index(run_dir, [(t["id"], t["config"]) for t in trials], spec)
    rows = summary_rows(trials, spec)
    errored = sum(t["status"] == "ERROR" for t in trials)
    unfinished = sum(t["status"] not in ("TERMINATED", "ERROR") for t in trials)
    print(format_table(rows, spec))
    print(_effects(run_dir, spec, trials))
    if errored:
        print(f"[specsweep] {errored} trial(s) errored:")
        for t in trials:
            if t["status"] == "ERROR":
                print(f"  {t['id']}: {t.get('error') or 'see its error.txt'}")
    print(f"[specsweep] run directory: {run_dir}")
    for line in _wandb_lines(run_dir, spec.wandb.group or run_dir.name):
        print(f"[specsweep] {line}")
    print(f"[specsweep] tables and figures: specsweep report {shlex.quote(str(run_dir))}")
    if interrupted or unfinished or errored:
        print(f"[specsweep] resume with: specsweep resume {shlex.quote(str(run_dir))}")
    return SweepOutcome(run_dir.display, rows, errored, unfinished)


def _effects(run_dir: RunLocation, spec: SweepSpec, trials: List[Dict[str, Any]]) -> str:
    """The effects of B, C, D against A with their intervals, per group of trials."""
    from specsweep.results.study import Run, effects_summary, group_trials

    run = Run(run_dir.name, spec, trials, run_dir)
    return effects_summary(group_trials([run]), [spec])


def _wandb_lines(run_dir: RunLocation, group: str) -> List[str]:
    """Where the trials' W&B runs are: the group's page for online runs (from the run
    URLs the trials report), the ``wandb sync`` command for offline ones."""
    from specsweep.tracking import group_url, sync_command

    lines = []
    urls = sorted({row["wandb_url"] for row in map(lambda d: last_result(run_dir, d), run_dir.glob(TRIALS))
                   if row.get("wandb_url")})
    if urls:
        lines.append(f"W&B: {group_url(urls[0], group)}")
    offline = run_dir.glob(f"{TRIALS}/wandb/offline-run-*")
    if offline and run_dir.is_local:
        lines.append(f"W&B runs of {len(offline)} trial session(s) are offline; upload them with:\n  "
                     + sync_command([Path(run_dir.path, folder) for folder in offline]))
    elif offline:
        lines.append(f"W&B runs of {len(offline)} trial session(s) are offline in {run_dir}/{TRIALS}/wandb/; "
                     f"copy them to this machine and upload them with `wandb sync FOLDER...`")
    return lines
