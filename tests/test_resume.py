"""Fault tolerance with real processes: killed trial workers, a SIGKILLed driver,
deterministic resumption, and non-finite losses. Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import torch
import yaml

from asha_trials import GOOD_LR, STARVED_LRS, asha_sweep
from specsweep.results.status import read_trials
from specsweep.rundir import RunDirError
from specsweep.sweep.launcher import run_sweep
from wandb_records import read_run

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, name: str, **changes: Any) -> Path:
    """A small real sweep: embedded keywords, a few epochs of several batches each."""
    spec: Dict[str, Any] = {
        "name": name,
        "task": "kws",
        "data": {"name": "embedded_kws", "clips_per_word": 6},
        "frontend": {"name": "nnaudio", "n_mels": 20},
        "backbone": {"name": "bcresnet"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.003},
        "seeds": [1],
        "search": {"space": {"frontend.setting": {"grid": ["A"]}}},
        "failure": {"max_failures": 2},
    }
    for key, value in changes.items():
        node = spec
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _results(trial_dir: Path) -> List[Dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _statuses(run_dir: Path) -> List[str]:
    try:
        return [t["status"] for t in read_trials(run_dir)]
    except (RunDirError, OSError, ValueError):
        # The driver has not written its run directory or Tune's state yet.
        return []


def _finished(rows: List[Dict[str, Any]]) -> bool:
    # A trial's last report, after testing, carries the test metrics.
    return bool(rows) and "test_acc" in rows[-1]


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _final_weights(trial_dir: Path) -> Dict[str, torch.Tensor]:
    last = sorted(trial_dir.glob("checkpoint_*"))[-1] / "checkpoint.ckpt"
    return torch.load(last, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.kernel_path
def test_killed_worker_resumes_from_checkpoint_deterministically(ray_session, tmp_path):
    import threading

    baseline = run_sweep(_spec(tmp_path, "baseline"), storage=tmp_path / "runs", name="baseline")
    assert baseline.exit_code == 0

    killed: Dict[str, int] = {}

    def kill_after_first_epoch() -> None:
        trial_dir = _wait_for(lambda: next((tmp_path / "runs" / "killed").glob("trial_*"), None), 120, "trial dir")
        row = _wait_for(lambda: next((r for r in _results(trial_dir) if r["training_iteration"] == 1), None), 120,
                        "the first epoch report")
        os.kill(row["pid"], signal.SIGKILL)
        killed["pid"] = row["pid"]

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    outcome = run_sweep(_spec(tmp_path, "killed"), storage=tmp_path / "runs", name="killed")
    killer.join(timeout=5)
    assert "pid" in killed, "the worker was not killed"
    assert outcome.exit_code == 0

    (trial,) = read_trials(outcome.run_dir)
    assert trial["status"] == "TERMINATED"
    rows = _results(outcome.run_dir / f"trial_{trial['id']}")
    # After the restore the epoch count continues from the checkpoint instead of restarting.
    restored = [r for r in rows if r["iterations_since_restore"] == 1 and r["training_iteration"] > 1]
    assert restored, [(r["training_iteration"], r["iterations_since_restore"]) for r in rows]
    assert {r["pid"] for r in rows} - {killed["pid"]}, "a new worker process finished the trial"

    (base,) = read_trials(baseline.run_dir)
    for key in ("val_acc", "val_loss", "train_loss", "test_acc", "best_val_acc"):
        assert trial["metrics"][key] == pytest.approx(base["metrics"][key], abs=1e-6), key
    ours = _final_weights(outcome.run_dir / f"trial_{trial['id']}")
    theirs = _final_weights(baseline.run_dir / f"trial_{base['id']}")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)


def test_nonfinite_loss_ends_trial_as_error_and_sweep_goes_on(ray_session, tmp_path, capsys):
    path = _spec(tmp_path, "nan", train__optimizer="sgd", failure__max_failures=0,
                 search={"space": {"train.lr": {"grid": [0.003, 1e30]}}})
    outcome = run_sweep(path, storage=tmp_path / "runs", name="nan")
    assert outcome.exit_code == 1
    trials = {t["config"]["train"]["lr"]: t for t in read_trials(outcome.run_dir)}
    assert trials[0.003]["status"] == "TERMINATED"
    assert trials[1e30]["status"] == "ERROR"
    assert "NonFiniteLossError" in trials[1e30]["error"] or "training loss is" in trials[1e30]["error"]
    out = capsys.readouterr().out
    assert "1 trial(s) errored" in out and "specsweep resume" in out
    assert "errored (see its error.txt and trial.log)" in out


def test_an_errored_trial_is_named_on_the_console_without_tunes_traceback(tmp_path):
    """The command line: Tune's own "Trial task failed" traceback stays in the trial's
    error.txt and trial.log (with -v it is printed too)."""
    path = _spec(tmp_path, "nan", train__optimizer="sgd", train__lr=1e30, train__epochs=1, failure__max_failures=0)
    for verbose in (False, True):
        done = subprocess.run(_cli("run", str(path), "--storage", str(tmp_path / "runs"),
                                   *(["-v"] if verbose else [])), capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, done.stdout + done.stderr
        console = done.stdout + done.stderr
        assert "errored (see its error.txt and trial.log)" in console
        assert ("Trial task failed" in console) == verbose, console
        if not verbose:
            assert "Traceback" not in console


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "specsweep.cli", *args]


def test_sigkilled_driver_then_resume_loses_nothing(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("WANDB_API_KEY", None)
    path = _spec(tmp_path, "killdriver", search={"space": {"frontend.setting": {"grid": ["A", "B", "C", "D"]}}})
    run_dir = tmp_path / "runs" / "k"
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(_cli("run", str(path), "--storage", str(tmp_path / "runs"), "--name", "k",
                                   "--num-cpus", "2"), env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        def one_done_one_running():
            states = [_results(d) for d in run_dir.glob("trial_*")]
            done = [s for s in states if _finished(s)]
            running = [s for s in states if s and not _finished(s)]
            return done if done and running else None

        # status reads Tune's experiment state while the sweep runs.
        _wait_for(lambda: "RUNNING" in _statuses(run_dir), 300, "a RUNNING trial in specsweep status")
        _wait_for(one_done_one_running, 300, "one finished and one running trial")
    finally:
        # The driver and the local Ray it started die at once, as on a lost machine.
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    time.sleep(2)
    finished_before = {d.name: (d / "result.json").read_text() for d in run_dir.glob("trial_*")
                       if _finished(_results(d))}
    assert finished_before
    # The killed driver never summarised: its index came from the callback at each trial start.
    indexed = {row.split("\t")[0] for row in (run_dir / "trials.tsv").read_text().splitlines()[1:]}
    assert {d.name for d in run_dir.glob("trial_*") if _results(d)} <= indexed

    resumed = subprocess.run(_cli("resume", str(run_dir), "--num-cpus", "2"), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    trials = read_trials(run_dir)
    assert len(trials) == 4 and all(t["status"] == "TERMINATED" for t in trials)
    # The index names every trial, those the resumed sweep ran too.
    index = (run_dir / "trials.tsv").read_text().splitlines()
    assert sorted(row.split("\t")[0] for row in index[1:]) == sorted(f"trial_{t['id']}" for t in trials)
    for name, text in finished_before.items():
        assert (run_dir / name / "result.json").read_text() == text, f"{name} was trained again"
    for t in trials:
        rows = _results(run_dir / f"trial_{t['id']}")
        epochs = [r["training_iteration"] for r in rows]
        assert epochs == sorted(set(epochs)), f"duplicated results in {t['id']}: {epochs}"
        runs = list((run_dir / f"trial_{t['id']}").glob("wandb/offline-run-*"))
        assert len({r.name.split("-", 3)[-1] for r in runs}) == 1, "one W&B run id per trial"
        for i, folder in enumerate(sorted(runs)):
            steps = [h["_step"] for h in read_run(folder)["history"]]
            assert steps == sorted(steps)
            if i:
                # A resumed trial logs from its checkpoint's step on, not from 0, so W&B
                # keeps one point per step when the offline folders are synced.
                assert steps and steps[0] > 0, steps

    again = subprocess.run(_cli("resume", str(run_dir), "--num-cpus", "2"), env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def _iterations(run_dir: Path) -> Dict[float, int]:
    return {t["config"]["train"]["lr"]: t["metrics"]["training_iteration"] for t in read_trials(run_dir)}


@pytest.mark.kernel_path
def test_asha_stops_the_same_trials_after_a_killed_driver(ray_session, tmp_path):
    """ASHA's rungs are saved with the experiment: a resumed sweep judges the trials left
    against the results from before the kill, as the uninterrupted sweep does. Which trials
    ASHA stops holds by construction (:mod:`asha_trials`), not by how training goes."""
    epochs = 4
    path = _spec(tmp_path, "asha", **asha_sweep(epochs))
    baseline = _iterations(run_sweep(path, storage=tmp_path / "runs", name="baseline").run_dir)
    # Trials run every epoch and a test report unless ASHA stops them: the starved ones
    # miss the bar the first trial set at the first rung.
    assert baseline == {GOOD_LR: epochs + 1, **{lr: 1 for lr in STARVED_LRS}}, baseline

    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    run_dir = tmp_path / "runs" / "killed"
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(_cli("run", str(path), "--storage", str(tmp_path / "runs"), "--name", "killed",
                                       "--num-cpus", "2"), env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        def first_done():
            assert driver.poll() is None, f"the driver ended by itself:\n{log.read_text()[-3000:]}"
            # The driver's console says at once; a trial folder's result.json lags by seconds,
            # the time the starved trials take.
            return f"lr={GOOD_LR} seed=1: done" in log.read_text()

        # The first trial sets ASHA's bar; the next ones are judged by it after the resume.
        _wait_for(first_done, 300, "the first trial to finish")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    resumed = subprocess.run(_cli("resume", str(run_dir), "--num-cpus", "2"), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "nothing to resume" not in resumed.stdout, "the kill came after the sweep had ended"
    # Had the resume lost the rungs, a starved trial judged first at its rung would run on.
    assert _iterations(run_dir) == baseline


def test_objects_pickled_under_modules_that_moved_still_load():
    """Tune pickles the callbacks, the trial folder namer and the trials' resource request
    into a run's tuner.pkl by module and name; runs written before the modules moved to
    specsweep.sweep and specsweep.plan are unpickled through MOVED_MODULES."""
    import pickle

    from specsweep.plan.packing import TrialResources
    from specsweep.sweep.launcher import MOVED_MODULES, _moved_modules, _trial_dirname
    from specsweep.sweep.progress import SweepProgress

    pickled = []
    for obj in (SweepProgress("val_acc", "max", 2, 8, labels=["frontend.setting", "seed"]), TrialResources(1.0, {})):
        # Protocol 0 names a class as "module\nname\n": the old name is written in its place.
        module = type(obj).__module__
        old = next(o for o, new in MOVED_MODULES.items() if new == module)
        pickled.append((pickle.dumps(obj, protocol=0).replace(module.encode() + b"\n", old.encode() + b"\n"), type(obj)))
    # The trial folder namer, as runs from before rundir.py owned it named it.
    pickled.append((b"cspecsweep.launcher\n_trial_dirname\n.", type(_trial_dirname)))
    for data, kind in pickled:
        with pytest.raises(ModuleNotFoundError):
            pickle.loads(data)
        with _moved_modules():
            loaded = pickle.loads(data)
        assert type(loaded) is kind and not any(old in sys.modules for old in MOVED_MODULES)
