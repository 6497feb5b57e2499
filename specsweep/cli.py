"""The ``specsweep`` command: run, resume, status, report, inspect, export, data prepare.

Exit status: 0 success, 1 trials errored or did not finish, 2 bad input (spec, flags,
run directory, dataset) or environment (Ray would not start), with a message naming the
field, file or value and no traceback (``--debug`` shows it), 130 interrupted (Ctrl-C)
before the sweep started (a claimed run directory is removed again, partial dataset
folders are never used).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from specsweep.plan.limits import DEFAULT_MAX_TRIALS

# The command's modules are imported by the commands that use them: `--help`, `--version`
# and argument errors answer without loading torch (seconds).


class UsageError(ValueError):
    """A command's arguments are wrong in a way argparse cannot see."""


def _cmd_run(args: argparse.Namespace) -> int:
    from specsweep.sweep.launcher import run_sweep

    outcome = run_sweep(Path(args.spec), storage=args.storage, name=args.name, address=args.address,
                        smoke=args.smoke_test, num_cpus=args.num_cpus, max_trials=args.max_trials,
                        verbose=args.verbose, overrides=args.set)
    return outcome.exit_code


def _cmd_resume(args: argparse.Namespace) -> int:
    from specsweep.sweep.launcher import resume_sweep

    outcome = resume_sweep(args.run_dir, address=args.address, restart_errored=args.restart_errored,
                           num_cpus=args.num_cpus, verbose=args.verbose)
    return outcome.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    from specsweep.rundir import RunLocation, load_run
    from specsweep.results.status import DamagedRunError, format_table, read_trials, summary_rows

    run_dir = RunLocation(args.run_dir)
    spec = load_run(run_dir)
    damage = None
    try:
        trials = read_trials(run_dir)
    except DamagedRunError as err:
        damage, trials = err, err.trials
    if args.json:
        print(json.dumps({"run_dir": run_dir.uri,
                          "trials": [{k: t[k] for k in ("id", "status", "config", "metrics", "error")} for t in trials],
                          **({"damaged": damage.damaged} if damage else {})},
                         indent=1, default=str))
    else:
        print(format_table(summary_rows(trials, spec), spec))
        counts = {s: sum(t["status"] == s for t in trials) for s in ("TERMINATED", "RUNNING", "PENDING", "ERROR")}
        print(", ".join(f"{v} {k.lower()}" for k, v in counts.items()))
    if damage:
        print(f"specsweep: {damage}\nthe table shows what could still be read; `specsweep resume` refuses this "
              f"run until the damaged files are restored or moved aside", file=sys.stderr)
        return 2
    return 0


def _param_counts(spec: Any, configs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Trainable parameters by part of each trial's model, counted from the components'
    footprints (no model is built, no data prepared), once per distinct model. Where a
    sampled search value shapes the model (``frontend.setting: {choice: [A, B]}``,
    ``frontend.n_mels: {randint: ...}``), a part whose count depends on it is given as
    ``"LOW..HIGH"`` over the choices or the range's ends."""
    from specsweep.assembly import model_footprint_for
    from specsweep.data.datasets import describe_dataset
    from specsweep.plan.limits import sized_values, variants
    from specsweep.spec import ModelConfig

    sampled = sized_values(spec, keys=("data.", "frontend.", "backbone."), sampled_only=True)
    counts: Dict[str, Dict[str, int]] = {}

    def count(config: Dict[str, Any]) -> Dict[str, int]:
        key = json.dumps([config["task"], config["data"], config["frontend"], config["backbone"]], sort_keys=True)
        if key not in counts:
            counts[key] = model_footprint_for(ModelConfig.of(config), describe_dataset(config["data"])).trainable
        return counts[key]

    plan = []
    for config in configs:
        # Few combinations per trial: a plan may hold 10,000 trials.
        each = [count(variant) for _, variant in variants(sampled, config, max_combinations=64)]
        plan.append({part: _span([c[part] for c in each]) for part in each[0]})
    return plan


def _span(counts: List[int]) -> Any:
    low, high = min(counts), max(counts)
    return low if low == high else f"{low}..{high}"


def _cmd_inspect(args: argparse.Namespace) -> int:
    """Plan (and cost) of each spec given; several specs give a JSON list with ``--json``."""
    plans = []
    for i, path in enumerate(args.spec):
        if i and not args.json:
            print()
        plans.append(_inspect_spec(Path(path), args))
    if args.json:
        print(json.dumps(plans[0] if len(plans) == 1 else plans, indent=1))
    return 0


def _inspect_spec(path: Path, args: argparse.Namespace) -> Dict[str, Any]:
    from specsweep.plan.limits import local_resource_problems, plan_problems, trial_count
    from specsweep.spec import SpecError, expand_trials, load_spec
    from specsweep.results.status import describe_config

    spec = load_spec(path, smoke=args.smoke_test, overrides=args.set)
    count, makeup = trial_count(spec)
    if not args.json:
        print(f"{spec.name}: {count} trials ({makeup})", flush=True)
    problems = plan_problems(spec, args.max_trials)
    if problems:
        raise SpecError(str(path), problems)
    for note in local_resource_problems(spec):
        print(f"note (for a local Ray on this machine): {note}", file=sys.stderr)
    trials = expand_trials(spec)
    plan = [{"config": config, "trainable_params": params} for config, params in zip(trials, _param_counts(spec, trials))]
    cost = _sweep_cost(spec, trials, args.calibrate, args.smoke_test)
    result = {"spec": str(path), "name": spec.name, "metric": spec.metric, "mode": spec.mode, "recipe": spec.recipe,
              "trials": plan, "cost": cost}
    if args.json:
        return result
    rows = [{"#": i, **describe_config(p["config"], spec), **{f"{k} params": v for k, v in p["trainable_params"].items()},
             **({"gpus": f"{c['gpus']:g}"} if spec.resources.auto_gpus else {}),
             "clip_steps": _count(c["clip_steps"]), "hours": _hours(c["hours"])}
            for i, (p, c) in enumerate(zip(plan, cost["per_trial"]))]
    recipe = f"recipe {spec.recipe}, " if spec.recipe else ""
    print(f"{recipe}{spec.search.algorithm} search, {spec.scheduler.name} scheduler, "
          f"metric {spec.metric} ({spec.mode}), {spec.resources.cpus:g} CPU / {_gpus_text(spec.resources.gpus)} per trial")
    total = cost["total"]
    sources = sorted({c["rate_source"] for c in cost["per_trial"]})
    print(f"cost: {_count(total['clip_steps'])} training clip-steps (epochs x training clips), about "
          f"{_hours(total['trial_hours'])} trial-hours = {_hours(total['cpu_hours'])} CPU-hours, "
          f"{_hours(total['gpu_hours'])} GPU-hours; clips/s {'; '.join(sources)}")
    columns = list(rows[0]) if rows else []
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(str(c).rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(columns, widths)))
    return result


def _data_settings(name: str, settings: Sequence[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` arguments as a data config, values read as YAML."""
    from specsweep.contract import number_problems
    from specsweep.data.datasets import DATASETS, DatasetConfigError, dataset_param_names
    from specsweep.overrides import OverrideError, parse_setting
    from specsweep.spec import UniqueKeyLoader

    if name not in DATASETS:
        raise DatasetConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS.names())}")
    allowed = dataset_param_names(name)
    config: Dict[str, Any] = {"name": name}
    for setting in settings:
        key = setting.partition("=")[0]
        if "=" not in setting or key not in allowed:
            raise DatasetConfigError(f"--set {setting}: expected KEY=VALUE with KEY one of {', '.join(sorted(allowed))}")
        try:
            config[key] = parse_setting(setting, UniqueKeyLoader)[1]
        except OverrideError as err:
            raise DatasetConfigError(str(err)) from None
    problems = number_problems(config)
    if problems:
        raise DatasetConfigError("; ".join(f"--set {p.removeprefix('name').lstrip('.')}" for p in problems))
    return config


def _sweep_cost(spec: Any, trials: List[Dict[str, Any]], calibrate: bool, smoke: bool) -> Dict[str, Any]:
    from specsweep.plan.cost import model_key, sweep_cost
    from specsweep.trainables.calibrate import measure_steps

    measures, share_of = None, None
    if calibrate:
        measures = {}
        # A model whose shape is sampled has no one set of steps to time.
        shaping = ("task", "data.", "frontend.", "backbone.", "train.batch_size", "train.eval_batch_size",
                   "train.compile")
        if not any(p.form != "grid" and key.startswith(shaping) for key, p in spec.search.space.items()):
            for config in trials:
                key = model_key(config)
                if key not in measures:
                    measures[key] = measure_steps(config, spec.resources.cpus)
        else:
            measures = None
            print("note: a sampled search value shapes the model: --calibrate times nothing, the recorded "
                  "figures are used", file=sys.stderr)
        if measures and spec.resources.auto_gpus and all(m.device != "cpu" for m in measures.values()):
            from specsweep.plan.packing import TrialResources, plan_packing

            share_of = TrialResources(spec.resources.cpus, plan_packing(measures, trials)).gpus
    limit = spec.smoke.limit_train_batches if smoke else None
    return sweep_cost(trials, spec.resources.cpus, spec.resources.gpus, limit, measures, share_of)


def _gpus_text(gpus: Any) -> str:
    if gpus == "auto":
        return "GPUs auto (each model measured on a GPU at launch; CPUs where Ray has none)"
    return f"{gpus:g} GPU"


def _count(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def _hours(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from specsweep.data.datasets import prepare_dataset
    from specsweep.spec import _section_problems

    config = _data_settings(args.dataset, args.set)
    if args.root:
        config["root"] = args.root
    if args.download:
        config["download"] = True
    problems = _section_problems("data", config, None)
    if problems:
        flags = {"data.name": "dataset", "data.root": "--root", "data.download": "--download"}
        raise UsageError("data prepare: " + "; ".join(
            next((p.replace(k, v, 1) for k, v in flags.items() if p.startswith(k)), p) for p in problems))
    prepared = prepare_dataset(config)
    for split, folder in prepared.splits.items():
        print(f"{split}: {folder}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def _not_empty(text: str) -> str:
    # An empty folder or address would silently mean the default (./runs, a local Ray, here).
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the flag out for the default)")
    return text


def _address(text: str) -> str:
    """An ``--address`` that :func:`~specsweep.contract.address_problem` takes."""
    from specsweep.contract import address_problem

    problem = address_problem(_not_empty(text))
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _cmd_export(args: argparse.Namespace) -> int:
    from specsweep.results.export import EXPORT_EXTRA_FILE, EXPORT_FORMAT, export_trial

    # Checked before the model is loaded; export_trial's exclusive open covers a race.
    if args.out.exists() or args.out.is_symlink():
        raise UsageError(f"--out {args.out} exists; give a new file name (export never overwrites)")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: the folder {args.out.parent} does not exist")
    try:
        written = export_trial(args.run_dir, args.trial_id, args.out)
    except FileExistsError:
        raise UsageError(f"--out {args.out} exists; give a new file name (export never overwrites)") from None
    if written == EXPORT_FORMAT:
        print(f"{args.out}: trial {args.trial_id} of {args.run_dir} as a torch.export program; load it with "
              f"torch.export.load({str(args.out)!r}).module() (its description: extra file {EXPORT_EXTRA_FILE})")
    else:
        print(f"{args.out}: trial {args.trial_id} of {args.run_dir} as weights and description (torch.export cannot "
              f"capture this model for every length); load it with specsweep.load_trial({str(args.out)!r})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from specsweep.results.report import report_command

    return report_command(args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("specsweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from specsweep import __version__

        return __version__


_SET_OPTIONS: Dict[str, Any] = dict(
    action="append", default=[], metavar="KEY=VALUE",
    help="change the spec's value at a dotted KEY (value as YAML), e.g. train.lr=0.01, seeds=[1,2], "
         "search.space.train.lr={grid: [0.01, 0.1]}; validated like the spec and kept in the run directory's spec")
_VERBOSE_HELP = "stream what the trials print (Lightning, Ray, W&B) to the console; it is always in each trial's trial.log"


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the command; SUPPRESS keeps a subcommand from
    # resetting a --debug given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    parser = argparse.ArgumentParser(prog="specsweep", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print specsweep's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])

    run = add("run", help="launch a sweep spec with Ray Tune")
    run.add_argument("spec", help="sweep spec YAML (see sweeps/)")
    run.add_argument("--address", type=_address, help="join the Ray cluster whose head is at HOST:PORT (default: $RAY_ADDRESS, "
                     "else a new local Ray on loopback)")
    run.add_argument("--storage", type=_not_empty, help="parent folder or URI (s3://BUCKET/PATH, gs://..., any pyarrow filesystem URI) "
                     "of run directories (default ./runs or $SPECSWEEP_STORAGE)")
    run.add_argument("--name", help="run directory name (default: spec name + time); never reused")
    run.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch, truncated grid")
    run.add_argument("--num-cpus", type=_positive_int, help="CPUs for a local Ray (default: all)")
    run.add_argument("--max-trials", type=_positive_int, default=DEFAULT_MAX_TRIALS,
                     help=f"refuse specs with more trials than this (default {DEFAULT_MAX_TRIALS})")
    run.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    run.add_argument("--set", **_SET_OPTIONS)
    run.set_defaults(func=_cmd_run)

    resume = add("resume", help="continue a killed or failed sweep")
    resume.add_argument("run_dir", help="run directory: local folder or URI")
    resume.add_argument("--address", type=_address, help="as for run")
    resume.add_argument("--restart-errored", action="store_true",
                        help="restart errored trials from scratch (default: from their last checkpoint)")
    resume.add_argument("--num-cpus", type=_positive_int, help="CPUs for a local Ray (default: all)")
    resume.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    resume.set_defaults(func=_cmd_resume)

    status = add("status", help="trial states and metrics of a run directory")
    status.add_argument("run_dir", help="run directory: local folder or URI")
    status.add_argument("--json", action="store_true", help="print JSON (trials, configs, metrics) instead of a table")
    status.set_defaults(func=_cmd_status)

    inspect = add("inspect", help="validate a spec and print its trial plan")
    inspect.add_argument("spec", nargs="+", help="sweep spec YAML file(s); several give a JSON list with --json")
    inspect.add_argument("--json", action="store_true", help="print the plan as JSON (trial configs, parameter counts)")
    inspect.add_argument("--smoke-test", action="store_true", help="the plan of `run --smoke-test`")
    inspect.add_argument("--max-trials", type=_positive_int, default=DEFAULT_MAX_TRIALS,
                         help=f"refuse specs with more trials than this (default {DEFAULT_MAX_TRIALS})")
    inspect.add_argument("--calibrate", action="store_true",
                         help="time a few training steps of each distinct model on this machine's device for the hours")
    inspect.add_argument("--set", **_SET_OPTIONS)
    inspect.set_defaults(func=_cmd_inspect)

    data = add("data", help="dataset preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prepare = data_sub.add_parser("prepare", parents=[common], help="download (when asked) and decode a dataset into the cache")
    prepare.add_argument("dataset", help="dataset name, as in a spec's data.name (e.g. speechcommands, timit)")
    prepare.add_argument("--root", type=_not_empty, help="the dataset's folder (as a spec's data.root)")
    prepare.add_argument("--download", action="store_true", help="fetch the dataset from its public source")
    prepare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="another argument of the dataset, as in a spec's data section (e.g. test_set=archive)")
    prepare.set_defaults(func=_cmd_data_prepare)

    report = add("report", help="tables (Markdown, CSV), effects against A, claims' verdicts and figures of one or "
                                "several run directories")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory: local folder or URI; several give "
                        "one report, grouped by what differs between their trials")
    report.add_argument("--out", type=lambda text: Path(_not_empty(text)), help="local output folder (default RUN_DIR/report "
                        "of one run directory, also in cloud storage; needed for several)")
    report.add_argument("--wandb", action="store_true",
                        help="also log the report as a W&B run when the sweep's W&B mode is offline (an offline run to "
                             "upload with the printed `wandb sync` command); online sweeps always get one")
    report.set_defaults(func=_cmd_report)

    export = add("export", help="write the model a trial tested (front-end + backbone) to a file torch loads")
    export.add_argument("run_dir", help="run directory: local folder or URI")
    export.add_argument("trial_id", help="trial id (as status shows it), or best: the best finished trial by the "
                        "sweep's metric")
    export.add_argument("--out", required=True, type=lambda text: Path(_not_empty(text)),
                        help="new file (e.g. model.pt2), never overwritten: a torch.export program with the trial's "
                             "config and labels, or for a model torch.export cannot capture at every length (ASR) its "
                             "weights and description for specsweep.load_trial (docs/run-directory.md)")
    export.set_defaults(func=_cmd_export)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv``; return the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    from specsweep.data.cache import AudioDecodeError
    from specsweep.data.datasets import DatasetConfigError
    from specsweep.data.speechcommands import DatasetMissingError
    from specsweep.sweep.launcher import LaunchError
    from specsweep.plan.packing import PackingError
    from specsweep.results.report import ReportError
    from specsweep.rundir import RunDirError, StorageError
    from specsweep.spec import SpecError

    try:
        status = args.func(args)
        # Flushed here, where a reader that went away is caught below, not at exit.
        sys.stdout.flush()
        return status
    except (SpecError, UsageError, RunDirError, LaunchError, PackingError, StorageError, ReportError,
            DatasetMissingError, DatasetConfigError, AudioDecodeError, FileNotFoundError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"specsweep: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C inside a sweep is Tune's to handle (the sweep stops and can be resumed);
        # one that reaches here came before, where nothing worth a traceback had started.
        if getattr(args, "debug", False):
            raise
        print(f"specsweep {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`specsweep inspect ... | head`): what it wanted was printed.
        # Python's own recipe: point stdout at devnull so the flush at exit raises nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
