"""The ``specsweep`` command: run, resume, status, report, inspect, data prepare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from specsweep.spec import SpecError


def _cmd_run(args: argparse.Namespace) -> int:
    from specsweep.launcher import run_sweep

    outcome = run_sweep(Path(args.spec), storage=args.storage, name=args.name, address=args.address,
                        smoke=args.smoke_test, num_cpus=args.num_cpus)
    return outcome.exit_code


def _cmd_resume(args: argparse.Namespace) -> int:
    from specsweep.launcher import resume_sweep

    outcome = resume_sweep(Path(args.run_dir), address=args.address, restart_errored=args.restart_errored,
                           num_cpus=args.num_cpus)
    return outcome.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    from specsweep.launcher import format_table, load_run, summary_rows
    from specsweep.status import read_trials

    trials = read_trials(Path(args.run_dir))
    if args.json:
        print(json.dumps({"run_dir": str(Path(args.run_dir).resolve()),
                          "trials": [{k: t[k] for k in ("id", "status", "config", "metrics", "error")} for t in trials]},
                         indent=1, default=str))
        return 0
    spec = load_run(Path(args.run_dir))
    print(format_table(summary_rows(trials, spec), spec))
    counts = {s: sum(t["status"] == s for t in trials) for s in ("TERMINATED", "RUNNING", "PENDING", "ERROR")}
    print(", ".join(f"{v} {k.lower()}" for k, v in counts.items()))
    return 0


def _param_counts(config: Dict[str, Any]) -> Dict[str, int]:
    from specsweep.data.datasets import dataset_output_info
    from specsweep.model import build_model

    n_labels, clip_samples = dataset_output_info(config["data"])
    head = "utterance" if config["task"] == "kws" else "frames"
    outputs = n_labels if config["task"] == "kws" else n_labels + 1
    return build_model(config["frontend"], config["backbone"], clip_samples, outputs, head).trainable_parameter_counts()


def _cmd_inspect(args: argparse.Namespace) -> int:
    from specsweep.spec import expand_trials, load_spec
    from specsweep.status import describe_config

    spec = load_spec(Path(args.spec), smoke=args.smoke_test)
    trials = expand_trials(spec)
    plan = [{"config": config, "trainable_params": _param_counts(config)} for config in trials]
    cost = _sweep_cost(spec, trials, args.calibrate, args.smoke_test)
    if args.json:
        print(json.dumps({"name": spec.name, "metric": spec.metric, "mode": spec.mode, "trials": plan, "cost": cost},
                         indent=1))
        return 0
    rows = [{"#": i, **describe_config(p["config"], spec), **p["trainable_params"],
             "clip_steps": _count(c["clip_steps"]), "hours": _hours(c["hours"])}
            for i, (p, c) in enumerate(zip(plan, cost["per_trial"]))]
    print(f"{spec.name}: {len(plan)} trials, {spec.search.algorithm} search, {spec.scheduler.name} scheduler, "
          f"metric {spec.metric} ({spec.mode}), {spec.resources.cpus} CPU / {spec.resources.gpus} GPU per trial")
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
    return 0


def _sweep_cost(spec: Any, trials: List[Dict[str, Any]], calibrate: bool, smoke: bool) -> Dict[str, Any]:
    from specsweep.cost import calibrate as time_model
    from specsweep.cost import model_key, sweep_cost

    rates = None
    if calibrate:
        rates = {}
        for config in trials:
            key = model_key(config)
            if key not in rates:
                rates[key] = time_model(config, spec.resources.cpus)
    limit = spec.smoke.limit_train_batches if smoke else None
    return sweep_cost(trials, spec.resources.cpus, spec.resources.gpus, limit, rates)


def _count(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def _hours(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from specsweep.data.datasets import prepare_dataset

    config: Dict[str, Any] = {"name": args.dataset}
    if args.root:
        config["root"] = args.root
    if args.download:
        config["download"] = True
    prepared = prepare_dataset(config)
    for split, folder in prepared.splits.items():
        print(f"{split}: {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specsweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="launch a sweep spec with Ray Tune")
    run.add_argument("spec", help="sweep spec YAML (see sweeps/)")
    run.add_argument("--address", help="join this Ray cluster (default: start a local Ray on loopback)")
    run.add_argument("--storage", type=Path, help="parent folder or URI of run directories (default ./runs)")
    run.add_argument("--name", help="run directory name (default: spec name + time); never reused")
    run.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch, truncated grid")
    run.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser("resume", help="continue a killed or failed sweep")
    resume.add_argument("run_dir")
    resume.add_argument("--address")
    resume.add_argument("--restart-errored", action="store_true", help="restart errored trials from scratch")
    resume.add_argument("--num-cpus", type=int)
    resume.set_defaults(func=_cmd_resume)

    status = sub.add_parser("status", help="trial states and metrics of a run directory")
    status.add_argument("run_dir")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    inspect = sub.add_parser("inspect", help="validate a spec and print its trial plan")
    inspect.add_argument("spec")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--smoke-test", action="store_true")
    inspect.add_argument("--calibrate", action="store_true",
                         help="time a few training steps of each distinct model on this machine's device for the hours")
    inspect.set_defaults(func=_cmd_inspect)

    data = sub.add_parser("data", help="dataset preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prepare = data_sub.add_parser("prepare", help="download (when asked) and decode a dataset into the cache")
    prepare.add_argument("dataset")
    prepare.add_argument("--root")
    prepare.add_argument("--download", action="store_true", help="fetch the dataset from its public source")
    prepare.set_defaults(func=_cmd_data_prepare)

    from specsweep import report

    report.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from specsweep.data.speechcommands import DatasetMissingError
    from specsweep.launcher import RunDirError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"specsweep: {err}", file=sys.stderr)
        return 2
    except (RunDirError, DatasetMissingError, FileNotFoundError) as err:
        print(f"specsweep: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
