"""The ``specsweep`` command: run, resume, status, report, inspect, data prepare.

Exit status: 0 success, 1 trials errored or did not finish, 2 bad input (spec, flags,
run directory, dataset) or environment (Ray would not start), with a message naming the
field, file or value and no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from specsweep.limits import DEFAULT_MAX_TRIALS

# The command's modules are imported by the commands that use them: `--help`, `--version`
# and argument errors answer without loading torch (seconds).


class UsageError(ValueError):
    """A command's arguments are wrong in a way argparse cannot see."""


def _cmd_run(args: argparse.Namespace) -> int:
    from specsweep.launcher import run_sweep

    outcome = run_sweep(Path(args.spec), storage=args.storage, name=args.name, address=args.address,
                        smoke=args.smoke_test, num_cpus=args.num_cpus, max_trials=args.max_trials,
                        verbose=args.verbose)
    return outcome.exit_code


def _cmd_resume(args: argparse.Namespace) -> int:
    from specsweep.launcher import resume_sweep

    outcome = resume_sweep(Path(args.run_dir), address=args.address, restart_errored=args.restart_errored,
                           num_cpus=args.num_cpus, verbose=args.verbose)
    return outcome.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    from specsweep.launcher import format_table, load_run, summary_rows
    from specsweep.status import DamagedRunError, read_trials

    spec = load_run(Path(args.run_dir))
    damage = None
    try:
        trials = read_trials(Path(args.run_dir))
    except DamagedRunError as err:
        damage, trials = err, err.trials
    if args.json:
        print(json.dumps({"run_dir": str(Path(args.run_dir).resolve()),
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


def _param_counts(configs: List[Dict[str, Any]]) -> List[Dict[str, int]]:
    """Trainable parameters by part of each trial's model, counted from the components'
    footprints (no model is built), once per distinct model."""
    from specsweep.data.datasets import dataset_output_info
    from specsweep.model import model_footprint

    counts: Dict[str, Dict[str, int]] = {}
    outputs: Dict[str, tuple] = {}
    plan = []
    for config in configs:
        data_key = json.dumps(config["data"], sort_keys=True)
        if data_key not in outputs:
            outputs[data_key] = dataset_output_info(config["data"])
        n_labels, clip_samples = outputs[data_key]
        head = "utterance" if config["task"] == "kws" else "frames"
        n_outputs = n_labels if config["task"] == "kws" else n_labels + 1
        key = json.dumps([config["frontend"], config["backbone"], clip_samples, n_outputs, head], sort_keys=True)
        if key not in counts:
            counts[key] = model_footprint(config["frontend"], config["backbone"], clip_samples, n_outputs,
                                          head).trainable
        plan.append(counts[key])
    return plan


def _cmd_inspect(args: argparse.Namespace) -> int:
    from specsweep.limits import local_resource_problems, plan_problems, trial_count
    from specsweep.spec import SpecError, expand_trials, load_spec
    from specsweep.status import describe_config

    spec = load_spec(Path(args.spec), smoke=args.smoke_test)
    count, makeup = trial_count(spec)
    if not args.json:
        print(f"{spec.name}: {count} trials ({makeup})", flush=True)
    problems = plan_problems(spec, args.max_trials)
    if problems:
        raise SpecError(args.spec, problems)
    for note in local_resource_problems(spec):
        print(f"note (for a local Ray on this machine): {note}", file=sys.stderr)
    trials = expand_trials(spec)
    plan = [{"config": config, "trainable_params": params} for config, params in zip(trials, _param_counts(trials))]
    if args.json:
        print(json.dumps({"name": spec.name, "metric": spec.metric, "mode": spec.mode, "trials": plan}, indent=1))
        return 0
    rows = [{"#": i, **describe_config(p["config"], spec), **p["trainable_params"]} for i, p in enumerate(plan)]
    print(f"{spec.search.algorithm} search, {spec.scheduler.name} scheduler, "
          f"metric {spec.metric} ({spec.mode}), {spec.resources.cpus} CPU / {spec.resources.gpus} GPU per trial")
    columns = list(rows[0]) if rows else []
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(str(c).rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(columns, widths)))
    return 0


def _data_settings(name: str, settings: Sequence[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` arguments as a data config, values read as YAML scalars."""
    import yaml

    from specsweep.data.datasets import DATASETS, DatasetConfigError, dataset_param_names

    if name not in DATASETS:
        raise DatasetConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS.names())}")
    allowed = dataset_param_names(name)
    config: Dict[str, Any] = {"name": name}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in allowed:
            raise DatasetConfigError(f"--set {setting}: expected KEY=VALUE with KEY one of {', '.join(sorted(allowed))}")
        config[key] = yaml.safe_load(value)
    return config


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


def _cmd_report(args: argparse.Namespace) -> int:
    from specsweep.report import build_report

    files = build_report(Path(args.run_dir), args.out)
    print(files["markdown"].read_text())
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("specsweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from specsweep import __version__

        return __version__


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
    run.add_argument("--address", help="join this Ray cluster (default: start a local Ray on loopback)")
    run.add_argument("--storage", type=Path, help="parent folder or URI of run directories (default ./runs)")
    run.add_argument("--name", help="run directory name (default: spec name + time); never reused")
    run.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch, truncated grid")
    run.add_argument("--num-cpus", type=_positive_int, help="CPUs for a local Ray (default: all)")
    run.add_argument("--max-trials", type=_positive_int, default=DEFAULT_MAX_TRIALS,
                     help=f"refuse specs with more trials than this (default {DEFAULT_MAX_TRIALS})")
    run.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    run.set_defaults(func=_cmd_run)

    resume = add("resume", help="continue a killed or failed sweep")
    resume.add_argument("run_dir", help="the run directory of the sweep (RUNS/NAME)")
    resume.add_argument("--address", help="join this Ray cluster (default: start a local Ray on loopback)")
    resume.add_argument("--restart-errored", action="store_true",
                        help="restart errored trials from scratch (default: from their last checkpoint)")
    resume.add_argument("--num-cpus", type=_positive_int, help="CPUs for a local Ray (default: all)")
    resume.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    resume.set_defaults(func=_cmd_resume)

    status = add("status", help="trial states and metrics of a run directory")
    status.add_argument("run_dir", help="the run directory of the sweep (RUNS/NAME)")
    status.add_argument("--json", action="store_true", help="print JSON (trials, configs, metrics) instead of a table")
    status.set_defaults(func=_cmd_status)

    inspect = add("inspect", help="validate a spec and print its trial plan")
    inspect.add_argument("spec", help="sweep spec YAML (see sweeps/)")
    inspect.add_argument("--json", action="store_true", help="print the plan as JSON (trial configs, parameter counts)")
    inspect.add_argument("--smoke-test", action="store_true", help="the plan of `run --smoke-test`")
    inspect.add_argument("--max-trials", type=_positive_int, default=DEFAULT_MAX_TRIALS,
                         help=f"refuse specs with more trials than this (default {DEFAULT_MAX_TRIALS})")
    inspect.set_defaults(func=_cmd_inspect)

    data = add("data", help="dataset preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prepare = data_sub.add_parser("prepare", parents=[common], help="download (when asked) and decode a dataset into the cache")
    prepare.add_argument("dataset", help="dataset name, as in a spec's data.name (e.g. speech_commands, timit)")
    prepare.add_argument("--root", help="the dataset's folder (as a spec's data.root)")
    prepare.add_argument("--download", action="store_true", help="fetch the dataset from its public source")
    prepare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="another argument of the dataset, as in a spec's data section (e.g. test_set=archive)")
    prepare.set_defaults(func=_cmd_data_prepare)

    report = add("report", help="tables (Markdown, CSV) and figures of a run directory")
    report.add_argument("run_dir", help="the run directory of the sweep (RUNS/NAME)")
    report.add_argument("--out", type=Path, help="output folder (default RUN_DIR/report)")
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv``; return the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    from specsweep.data.datasets import DatasetConfigError
    from specsweep.data.speechcommands import DatasetMissingError
    from specsweep.launcher import LaunchError, RunDirError
    from specsweep.report import ReportError
    from specsweep.spec import SpecError

    try:
        return args.func(args)
    except (SpecError, UsageError, RunDirError, LaunchError, ReportError, DatasetMissingError, DatasetConfigError,
            FileNotFoundError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"specsweep: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
