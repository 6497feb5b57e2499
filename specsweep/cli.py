"""The ``specsweep`` command: run, resume, status, report, inspect, export, data prepare.

Exit status: 0 success, 1 trials errored or did not finish, 2 bad input (spec, flags,
run directory, dataset) or environment (Ray would not start), with a message naming the
field, file or value and no traceback (``--debug`` shows it), 130 interrupted (Ctrl-C)
before the sweep started (a claimed run directory is removed again, partial dataset
folders are never used).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from specsweep import __version__
from specsweep.contract import UsageError
from specsweep.plan.limits import DEFAULT_MAX_TRIALS

# Each command's function, by "module:name", takes the parsed arguments and returns the exit
# status. It is imported when its command runs: `--help`, `--version` and argument errors
# answer without loading torch (seconds).
COMMANDS = {"run": "specsweep.sweep.launcher:run_command", "resume": "specsweep.sweep.launcher:resume_command",
            "status": "specsweep.results.status:status_command", "report": "specsweep.results.report:report_command",
            "export": "specsweep.results.export:export_command", "data": "specsweep.spec:data_prepare_command"}


def _cmd_inspect(args: argparse.Namespace) -> int:
    from specsweep.plan.show import inspect_specs
    from specsweep.trainables.calibrate import measure_steps

    inspect_specs(args.spec, args.json, smoke=args.smoke_test, overrides=args.set, max_trials=args.max_trials,
                  measure=measure_steps if args.calibrate else None)
    return 0


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    module, _, function = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), function)


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


def _options(*arguments: Any) -> argparse.ArgumentParser:
    """A parent parser holding ``arguments``: ``(flags, add_argument's keywords)`` pairs."""
    options = argparse.ArgumentParser(add_help=False)
    for flags, keywords in arguments:
        options.add_argument(*flags, **keywords)
    return options


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the command; SUPPRESS keeps a subcommand from
    # resetting a --debug given before it.
    common = _options((["--debug"], dict(action="store_true", default=argparse.SUPPRESS,
                                         help="show the traceback of an error")))
    ray = _options(
        (["--address"], dict(type=_address, help="join the Ray cluster whose head is at HOST:PORT (default: "
                                                 "$RAY_ADDRESS, else a new local Ray on loopback)")),
        (["--num-cpus"], dict(type=_positive_int, help="CPUs for a local Ray (default: all)")),
        (["-v", "--verbose"], dict(action="store_true", help="stream what the trials print (Lightning, Ray, W&B) to "
                                                             "the console; it is always in each trial's trial.log")))
    plan = _options(
        (["--max-trials"], dict(type=_positive_int, default=DEFAULT_MAX_TRIALS,
                                help=f"refuse specs with more trials than this (default {DEFAULT_MAX_TRIALS})")),
        (["--set"], dict(action="append", default=[], metavar="KEY=VALUE",
                         help="change the spec's value at a dotted KEY (value as YAML), e.g. train.lr=0.01, seeds=[1,2], "
                              "search.space.train.lr={grid: [0.01, 0.1]}; validated like the spec and kept in the run "
                              "directory's spec")))
    run_dir = _options((["run_dir"], dict(help="run directory: local folder or URI")))
    parser = argparse.ArgumentParser(prog="specsweep", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print specsweep's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common, *parents], help=help)
        command.set_defaults(func=func)
        return command

    run = add("run", None, "launch a sweep spec with Ray Tune", ray, plan)
    run.add_argument("spec", help="sweep spec YAML (see sweeps/)")
    run.add_argument("--storage", type=_not_empty, help="parent folder or URI (s3://BUCKET/PATH, gs://..., any pyarrow "
                     "filesystem URI) of run directories (default ./runs or $SPECSWEEP_STORAGE)")
    run.add_argument("--name", help="run directory name (default: spec name + time); never reused")
    run.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch, truncated grid")

    resume = add("resume", None, "continue a killed or failed sweep", run_dir, ray)
    resume.add_argument("--restart-errored", action="store_true",
                        help="restart errored trials from scratch (default: from their last checkpoint)")

    status = add("status", None, "trial states and metrics of a run directory", run_dir)
    status.add_argument("--json", action="store_true", help="print JSON (trials, configs, metrics) instead of a table")

    inspect = add("inspect", _cmd_inspect, "validate a spec and print its trial plan", plan)
    inspect.add_argument("spec", nargs="+", help="sweep spec YAML file(s); several give a JSON list with --json")
    inspect.add_argument("--json", action="store_true", help="print the plan as JSON (trial configs, parameter counts)")
    inspect.add_argument("--smoke-test", action="store_true", help="the plan of `run --smoke-test`")
    inspect.add_argument("--calibrate", action="store_true",
                         help="time a few training steps of each distinct model on this machine's device for the hours")

    data = sub.add_parser("data", parents=[common], help="dataset preparation").add_subparsers(
        dest="data_command", required=True)
    prepare = data.add_parser("prepare", parents=[common], help="download (when asked) and decode a dataset into the cache")
    prepare.set_defaults(func=None)
    prepare.add_argument("dataset", help="dataset name, as in a spec's data.name (e.g. speechcommands, timit)")
    prepare.add_argument("--root", type=_not_empty, help="the dataset's folder (as a spec's data.root)")
    prepare.add_argument("--download", action="store_true", help="fetch the dataset from its public source")
    prepare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="another argument of the dataset, as in a spec's data section (e.g. test_set=archive)")

    report = add("report", None, "tables (Markdown, CSV), effects against A, claims' verdicts and figures of one "
                 "or several run directories")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory: local folder or URI; several give "
                        "one report, grouped by what differs between their trials")
    report.add_argument("--out", type=lambda text: Path(_not_empty(text)), help="local output folder (default RUN_DIR/report "
                        "of one run directory, also in cloud storage; needed for several)")
    report.add_argument("--wandb", action="store_true",
                        help="also log the report as a W&B run when the sweep's W&B mode is offline (an offline run to "
                             "upload with the printed `wandb sync` command); online sweeps always get one")

    export = add("export", None, "write the model a trial tested (front-end + backbone) to a file torch loads",
                 run_dir)
    export.add_argument("trial_id", help="trial id (as status shows it), or best: the best finished trial by the "
                        "sweep's metric")
    export.add_argument("--out", required=True, type=lambda text: Path(_not_empty(text)),
                        help="new file (e.g. model.pt2), never overwritten: a torch.export program with the trial's "
                             "config and labels, or for a model torch.export cannot capture at every length (ASR) its "
                             "weights and description for specsweep.load_trial (docs/run-directory.md)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv``; return the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    from specsweep.data.cache import AudioDecodeError
    from specsweep.data.datasets import DatasetConfigError
    from specsweep.data.speechcommands import DatasetMissingError
    from specsweep.plan.packing import PackingError
    from specsweep.results.report import ReportError
    from specsweep.rundir import RunDirError, StorageError
    from specsweep.spec import SpecError
    from specsweep.sweep.cluster import LaunchError

    try:
        status = (args.func or _command(args.command))(args)
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
