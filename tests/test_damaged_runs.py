"""Damaged run directories of a real finished sweep: status, resume and report name the
damaged file and what can still be done, exit 2 without a traceback, and resume leaves
the directory as it found it."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import torch
import yaml

from specsweep.cli import main
from specsweep.rundir import SPEC_FILE
from specsweep.sweep.launcher import run_sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_run(ray_session, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-trial smoke sweep of the quickstart (setting A, one seed), run to its end."""
    raw = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())
    raw.update(name="damaged", seeds=[1], search={"space": {"frontend.setting": {"grid": ["A"]}}})
    folder = tmp_path_factory.mktemp("damaged")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    outcome = run_sweep(spec, storage=folder / "runs", name="done", smoke=True)
    assert outcome.exit_code == 0
    return outcome.run_dir


def _truncate_state(run_dir: Path) -> Path:
    path = next(run_dir.glob("experiment_state-*.json"))
    path.write_bytes(path.read_bytes()[:200])
    return path


def _garble_result(run_dir: Path) -> Path:
    path = next(run_dir.glob("trial_*/result.json"))
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + bytes(range(256)) + b"\n" + b"".join(lines[1:]))
    return path


def _break_spec(run_dir: Path) -> Path:
    path = run_dir / SPEC_FILE
    path.write_text("name: [unclosed\n")
    return path


def _remove_state(run_dir: Path) -> Path:
    for path in run_dir.glob("experiment_state-*.json"):
        path.unlink()
    return run_dir


def _remove_trial(run_dir: Path) -> Path:
    trial = next(run_dir.glob("trial_*"))
    shutil.rmtree(trial)
    return trial


def _empty_result(run_dir: Path) -> Path:
    trial = next(run_dir.glob("trial_*"))
    (trial / "result.json").write_bytes(b"")
    return trial / "result.json"


def _remove_result(run_dir: Path) -> Path:
    trial = next(run_dir.glob("trial_*"))
    (trial / "result.json").unlink()
    return trial / "result.json"


def _first_result_line(change: Callable[[str], str]) -> Callable[[Path], Path]:
    """Damage that rewrites the first row of a trial's result.json with ``change``."""
    def damage(run_dir: Path) -> Path:
        path = next(run_dir.glob("trial_*/result.json"))
        lines = path.read_text().splitlines()
        path.write_text("\n".join([change(lines[0]), *lines[1:]]) + "\n")
        return path
    return damage


_DEEP = "[" * 100_000 + "]" * 100_000
_DIGITS = "1" * 5000


def _row(**changes: Any) -> Callable[[str], str]:
    return lambda line: json.dumps({**json.loads(line), **changes})


def _state_trial(change: Callable[[Dict[str, Any]], None]) -> Callable[[Path], Path]:
    """Damage to the first trial's record in Tune's experiment state (JSON in a JSON string)."""
    def damage(run_dir: Path) -> Path:
        path = next(run_dir.glob("experiment_state-*.json"))
        state = json.loads(path.read_text())
        trial = json.loads(state["trial_data"][0][0])
        change(trial)
        state["trial_data"][0][0] = json.dumps(trial).replace('"_big_": 0', f'"_big_": {_DIGITS}')
        path.write_text(json.dumps(state))
        return path
    return damage


def _rewrite(pattern: str, write: Callable[[Path], Any]) -> Callable[[Path], Path]:
    """Damage that ``write``s the first file matching ``pattern``."""
    def damage(run_dir: Path) -> Path:
        path = next(run_dir.glob(pattern))
        write(path)
        return path
    return damage


DAMAGE: Dict[str, Callable[[Path], Path]] = {
    "result-nested-100000-deep": _first_result_line(lambda line: _DEEP),
    "result-integer-of-5000-digits": _first_result_line(
        lambda line: line.replace('"training_iteration": 1', f'"training_iteration": {_DIGITS}', 1)),
    "result-metric-too-large-for-a-float": _first_result_line(
        lambda line: line.replace('"val_acc": ', f'"val_acc": {"9" * 400}, "was": ', 1)),
    "result-config-a-string": _first_result_line(_row(config="abc")),
    "result-config-section-a-number": _first_result_line(
        lambda line: _row(config={**json.loads(line)["config"], "frontend": 5})(line)),
    "result-sparse-6-gib": _rewrite("trial_*/result.json", lambda path: os.truncate(path, 6 * 2**30)),
    "state-nested-100000-deep": _rewrite("experiment_state-*.json", lambda path: path.write_text(_DEEP)),
    "state-integer-of-5000-digits": _state_trial(lambda trial: trial.update(_big_=0)),
    "state-config-a-list": _state_trial(lambda trial: trial.update(config=[1, 2])),
    "empty-result": _empty_result,
    "result-missing": _remove_result,
    "truncated-experiment-state": _truncate_state,
    "random-bytes-in-result": _garble_result,
    "yaml-error-in-spec": _break_spec,
    "experiment-state-missing": _remove_state,
    "trial-folder-missing": _remove_trial,
}


def _digest(run_dir: Path) -> Dict[str, str]:
    # A file past a GiB (a sparse one) by its size and time: reading it is what is tested against.
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() if p.stat().st_size < 2**30
            else f"{p.stat().st_size} {p.stat().st_mtime_ns}" for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_run_is_named_and_left_as_it_was(damage, finished_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    damaged = DAMAGE[damage](run_dir)
    before = _digest(run_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for command in (["status", str(run_dir)], ["status", str(run_dir), "--json"], ["resume", str(run_dir)],
                    ["report", str(run_dir), "--out", str(tmp_path / "report")]):
        code = main(command)
        out, err = capsys.readouterr()
        assert code == 2, (command, out, err)
        assert str(damaged) in err, (command, err)
        assert "Traceback" not in out + err
        assert _digest(run_dir) == before, f"{command[0]} changed the damaged run"
    assert not (tmp_path / "report").exists()
    # Nothing is read whole (a sparse 6 GiB result.json included).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 2**30


def test_status_of_a_damaged_state_still_lists_the_trials(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    _truncate_state(run_dir)
    assert main(["status", str(run_dir), "--json"]) == 2
    listing = json.loads(capsys.readouterr().out)
    assert [t["status"] for t in listing["trials"]] == ["TERMINATED"]
    assert listing["trials"][0]["metrics"]["test_acc"] >= 0
    assert listing["trials"][0]["config"]["frontend"]["setting"] == "A"
    assert "experiment_state" in listing["damaged"][0]


def test_report_names_damaged_tested_weights_after_writing_the_tables(finished_run, tmp_path, capsys):
    """The filterbank figure reads the weights the trial tested (tested.pt; checkpoints only
    for runs from before it): truncated, it is named after the tables are written."""
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    tested = sorted(run_dir.glob("trial_*/tested.pt"))[-1]
    tested.write_bytes(tested.read_bytes()[:1000])
    assert main(["status", str(run_dir)]) == 0
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 2
    out, err = capsys.readouterr()
    assert str(tested) in err and "Traceback" not in out + err
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.parametrize("content", [b"garbage\n" * 4, b""], ids=["garbage", "empty"])
def test_resume_names_a_damaged_tuner_pickle(content, finished_run, tmp_path, capsys):
    """A run with a trial still to come (a second seed added to its spec) whose Tune
    tuner.pkl holds garbage or nothing: resume names Tune's state, exits 2, and writes
    nothing."""
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    spec = yaml.safe_load((run_dir / SPEC_FILE).read_text())
    spec["seeds"] = [1, 2]
    (run_dir / SPEC_FILE).write_text(yaml.safe_dump(spec))
    (run_dir / "tuner.pkl").write_bytes(content)
    before = _digest(run_dir)
    code = main(["resume", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert f"{run_dir}: Tune's saved state cannot be read" in err and "Traceback" not in out + err
    assert str(run_dir / "tuner.pkl") in err
    assert _digest(run_dir) == before


@pytest.mark.parametrize("content, reason", [
    (_DEEP, "JSON nested too deeply"),
    (f'{{"smoke": false, "created": {_DIGITS}}}', "created: must be a whole number of at most 64 bits"),
    ('{"smoke": false, "gpu_packing": "all"}', "gpu_packing must be a list of mappings"),
    ('{"smoke": false, "set": [1, {"a": 2}]}', "set must be the list of the run's --set arguments"),
], ids=["nested-100000-deep", "integer-of-5000-digits", "gpu-packing-a-string", "set-not-strings"])
def test_resume_names_a_damaged_run_file(content, reason, finished_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "specsweep-run.json").write_text(content)
    before = _digest(run_dir)
    assert main(["resume", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert str(run_dir / "specsweep-run.json") in err and reason in err and "Traceback" not in out + err
    assert _digest(run_dir) == before


def test_report_draws_the_tested_weights_and_names_them_when_damaged(finished_run, tmp_path, capsys):
    """The filterbank figure draws the weights the trial tested (tested.pt), as export does:
    a checkpoint that is a list, or whose callback state was hand-edited, costs the figure
    only its dashed initial line; a damaged tested.pt is named, exit 2, no traceback."""
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    checkpoint = sorted(run_dir.glob("trial_*/checkpoint_*/checkpoint.ckpt"))[-1]
    torch.save([1, 2, 3], checkpoint)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "best_filterbanks.png").is_file()
    torch.save({"callbacks": {"FrontendFigures": {"initial": "x"}}, "state_dict": {}}, checkpoint)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report2")]) == 0
    tested = checkpoint.parents[1] / "tested.pt"
    tested.write_bytes(b"not a torch file")
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report3")]) == 2
    out, err = capsys.readouterr()
    assert f"{tested} is damaged (not a torch file specsweep wrote)" in err and "Traceback" not in out + err


def test_report_names_a_folder_where_report_md_belongs(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "report" / "report.md").mkdir(parents=True)
    assert main(["report", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert f"{run_dir / 'report' / 'report.md'} is not a file" in err and "Traceback" not in out + err
    assert sorted(p.name for p in (run_dir / "report").iterdir()) == ["report.md"]


def test_resume_refuses_an_unfinished_trials_damaged_checkpoint(finished_run, tmp_path):
    """Tune would restore an unfinished trial from a damaged checkpoint, fail and retry
    until the trial errors: resume names it first (a whole checkpoint passes)."""
    from specsweep.results.status import read_trials
    from specsweep.rundir import RunLocation
    from specsweep.sweep.launcher import _damaged_checkpoints

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    (trial,) = read_trials(run_dir)
    unfinished = [{**trial, "status": "PENDING"}]
    assert _damaged_checkpoints(RunLocation(run_dir), unfinished) == []
    restored = next(run_dir.glob(f"trial_*/{trial['checkpoint']}/checkpoint.ckpt"))
    restored.write_bytes(restored.read_bytes()[:100])
    (line,) = _damaged_checkpoints(RunLocation(run_dir), unfinished)
    assert line.startswith(f"{restored}: the checkpoint trial {trial['id']} would continue from is damaged")
    assert _damaged_checkpoints(RunLocation(run_dir), [trial]) == []
    # A checkpoint Tune's state does not name (being saved when the sweep was killed) is never restored.
    assert _damaged_checkpoints(RunLocation(run_dir), [{**unfinished[0], "checkpoint": "checkpoint_999999"}]) == []
