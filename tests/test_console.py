"""What a user sees: the command line's help and version, the console of a sweep run from
the command line with its output piped (as in CI), and the trials' own output in their
log files and W&B runs."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import yaml

from specsweep.cli import build_parser
from specsweep.results.status import read_trials
from wandb_records import read_run

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, **options) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("WANDB_API_KEY", None)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, **options)


def test_help_loads_no_torch():
    for command in ([], ["run"], ["resume"], ["report"], ["data", "prepare"]):
        done = _cli("-X", "importtime", "-m", "specsweep.cli", *command, "--help", timeout=120)
        assert done.returncode == 0, done.stderr
        assert "usage: specsweep" in done.stdout
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert "specsweep.plan.limits" in imported
        assert not imported & {"torch", "lightning", "ray", "wandb", "specsweep.spec"}, command


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`specsweep inspect SPEC | head -1`: the pipe closes after the first line; the command
    ends with 141 (128 + SIGPIPE, as a shell tool would) and no traceback."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, "-m", "specsweep", "inspect", str(ROOT / "sweeps" / "quickstart.yaml")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("quickstart:")
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_version_from_package_metadata():
    for module in ("specsweep", "specsweep.cli"):
        done = _cli("-m", module, "--version", timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"specsweep {version('specsweep')}"


def _actions(parser: argparse.ArgumentParser) -> Iterator[tuple]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {where}", a) for where, a in _actions(sub))
        else:
            yield parser.prog, action


def test_every_flag_and_argument_has_help():
    missing = [f"{where}: {'/'.join(action.option_strings) or action.dest}" for where, action in _actions(build_parser())
               if not action.help]
    assert not missing


def test_trial_output_goes_to_its_log_file_and_streams_on_request(tmp_path):
    """Output of Python, of C code writing to the file descriptors, and of child processes
    all reach the log; with streaming also the process's original stdout."""
    code = textwrap.dedent(
        """
        import os, subprocess, sys
        from specsweep.trainables.output import capture_output
        capture_output(sys.argv[1], stream=sys.argv[2] == "stream")
        print("from python")
        os.write(2, b"from the descriptor\\n")
        subprocess.run(["echo", "from a child"], check=True)
        sys.stdout.flush()
        capture_output(sys.argv[1] + "/next", stream=sys.argv[2] == "stream")
        print("next trial")
        """
    )
    for mode in ("quiet", "stream"):
        folder = tmp_path / mode
        done = _cli("-c", code, str(folder), mode, timeout=60)
        assert done.returncode == 0, done.stderr
        assert (folder / "trial.log").read_text().splitlines() == ["from python", "from the descriptor", "from a child"]
        assert (folder / "next" / "trial.log").read_text() == "next trial\n"
        streamed = done.stdout + done.stderr
        if mode == "quiet":
            assert streamed == ""
        else:
            for line in ("from python", "from the descriptor", "from a child", "next trial"):
                assert line in streamed


def test_piped_sweep_console_is_short_and_ends_with_the_summary(tmp_path):
    spec = {
        "name": "console", "task": "kws",
        "data": {"name": "embedded_kws", "clips_per_word": 6},
        "frontend": {"name": "nnaudio", "n_mels": 20},
        "backbone": {"name": "simple"},
        "train": {"epochs": 2, "batch_size": 16},
        "seeds": [1],
        "search": {"space": {"frontend.setting": {"grid": ["A", "B"]}}},
        "wandb": {"log_checkpoints": True},
    }
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = _cli("-m", "specsweep.cli", "run", str(path), "--storage", str(tmp_path / "runs"), "--name", "c",
                "--num-cpus", "2", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    console = done.stdout.splitlines() + done.stderr.splitlines()
    assert len(console) <= 30, "\n".join(console)
    assert not [line for line in console if "\r" in line or "\x1b" in line]
    # No Tune status tables, no trial output, no notice of Ray's default token authentication.
    assert not re.search(r"[╭│]|Trial status|GPU available|pid=\d+|Checkpoint successfully|Token authentication",
                         done.stdout + done.stderr)
    run_dir = tmp_path / "runs" / "c"
    progress = [line for line in done.stdout.splitlines() if line.startswith("[specsweep]") and " eta " in line]
    # One line per epoch report and per finished trial.
    assert len(progress) == 2 * 2 + 2, progress
    assert "epoch 1/2" in progress[0] and "2/2 done, 0 running, 0 pending, 0 errored" in progress[-1]
    trials = read_trials(run_dir)
    offline = sorted(run_dir.glob("trial_*/wandb/offline-run-*"))
    assert len(trials) == 2 == len(offline)
    out = done.stdout.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("trial "))
    assert out[start].split() == ["trial", "setting", "seed", "status", "best", "val_acc", "test_acc"]
    # After the results table (header, rule, two trials): B's effect against A, one seed so no interval.
    effects = out[start + 4:]
    assert effects[0] == "Effects of B, C, D against A (paired by seed, 95 % interval):"
    assert effects[3].split()[:6] == ["all", "trials", "test_acc", "B", "-", "A"] and "one pair" in effects[3]
    assert any(line.startswith("With one seed per setting there is no interval") for line in effects)
    assert out[-4:] == [
        f"[specsweep] run directory: {run_dir}",
        "[specsweep] W&B runs of 2 trial session(s) are offline; upload them with:",
        "  wandb sync " + " ".join(str(f) for f in offline),
        f"[specsweep] tables and figures: specsweep report {run_dir}",
    ]
    for t in trials:
        trial_dir = run_dir / f"trial_{t['id']}"
        log = (trial_dir / "trial.log").read_text()
        # Lightning's own lines, without the notices specsweep configures away.
        assert "GPU available" in log and "`Trainer.fit` stopped: `max_epochs=2` reached." in log
        assert "limit_train_batches" not in log and "weights_only" not in log and "log_every_n_steps" not in log
        (run_folder,) = trial_dir.glob("wandb/offline-run-*")
        assert "GPU available" in (run_folder / "files" / "trial.log").read_text()
        (artifact,) = [a for a in read_run(run_folder)["artifacts"] if a["type"] == "model"]
        assert "best" in artifact["aliases"] and artifact["files"] == ["best.ckpt"]


def _trials():
    from ray.tune.experiment import Trial

    trials = [Trial("train_trial", config={"train": {"epochs": 3}, "seed": 1, "frontend": {"setting": s}},
                    stub=True, trial_id=f"t{i}") for i, s in enumerate("AB")]
    trials[0].set_status(Trial.RUNNING)
    return trials


def test_progress_view_lines_counts_and_eta(capsys):
    from specsweep.sweep.progress import SweepProgress, set_console

    set_console(live=False)
    view = SweepProgress("val_acc", "max", epochs=3, total_trials=3, labels=["frontend.setting", "seed"])
    view.setup()
    trials = _trials()
    view.on_trial_result(0, trials, trials[0], {"training_iteration": 1, "val_acc": 0.5, "time_this_iter_s": 2.0})
    view.on_trial_error(0, trials, trials[0])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[specsweep] t0 setting=A seed=1: epoch 1/3 val_acc 0.5000 | 0/3 done, 1 running, "
                               "2 pending, 0 errored | best val_acc 0.5000 | ")
    # Left: 3 reports of t0 (epochs 2, 3 and its test report), 4 of t1 and 4 of the trial
    # Tune has not created yet, at the measured 2 s each, one at a time.
    assert lines[0].endswith("elapsed, eta ~22s"), lines[0]
    assert "t0 setting=A seed=1: errored" in lines[1] and "0 running, 2 pending, 1 errored" in lines[1]
    assert len(lines) == 2


def test_progress_view_redraws_in_place_on_a_terminal(capsys):
    from specsweep.sweep.progress import SweepProgress, set_console

    set_console(live=True)
    try:
        view = SweepProgress("val_acc", "max", epochs=3, total_trials=2, labels=["frontend.setting"])
        view.setup()
        trials = _trials()
        view.on_trial_result(0, trials, trials[0], {"training_iteration": 1, "val_acc": 0.5, "time_this_iter_s": 2.0})
        view.on_trial_complete(0, trials, trials[0])
    finally:
        set_console()
    out = capsys.readouterr().out
    first, second = out.split("\x1b[2F")
    # The first view: headline and the running trial; the second rewrites both lines, the
    # trial is done, and the line it held is cleared.
    assert first.count("\n") == 2 and "  t0 setting=A: epoch 1/3 val_acc 0.5000" in first
    assert "1/2 done, 0 running, 1 pending" in second and "t0 setting=A" not in second
    assert second.endswith("\x1b[2K\n\x1b[1F")
