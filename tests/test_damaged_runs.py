"""Damaged run directories of a real finished sweep: status, resume and report name the
damaged file and what can still be done, exit 2 without a traceback, and resume leaves
the directory as it found it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest
import yaml

from specsweep.cli import main
from specsweep.launcher import run_sweep
from specsweep.rundir import SPEC_FILE

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


DAMAGE: Dict[str, Callable[[Path], Path]] = {
    "empty-result": _empty_result,
    "result-missing": _remove_result,
    "truncated-experiment-state": _truncate_state,
    "random-bytes-in-result": _garble_result,
    "yaml-error-in-spec": _break_spec,
    "experiment-state-missing": _remove_state,
    "trial-folder-missing": _remove_trial,
}


def _digest(run_dir: Path) -> Dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_run_is_named_and_left_as_it_was(damage, finished_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    damaged = DAMAGE[damage](run_dir)
    before = _digest(run_dir)
    for command in (["status", str(run_dir)], ["status", str(run_dir), "--json"], ["resume", str(run_dir)],
                    ["report", str(run_dir), "--out", str(tmp_path / "report")]):
        code = main(command)
        out, err = capsys.readouterr()
        assert code == 2, (command, out, err)
        assert str(damaged) in err, (command, err)
        assert "Traceback" not in out + err
        assert _digest(run_dir) == before, f"{command[0]} changed the damaged run"
    assert not (tmp_path / "report").exists()


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


def test_report_names_a_damaged_checkpoint_after_writing_the_tables(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    checkpoint = sorted(run_dir.glob("trial_*/checkpoint_*/checkpoint.ckpt"))[-1]
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert main(["status", str(run_dir)]) == 0
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 2
    out, err = capsys.readouterr()
    assert str(checkpoint) in err and "Traceback" not in out + err
    assert (tmp_path / "report" / "report.md").is_file()


def test_resume_names_a_damaged_tuner_pickle(finished_run, tmp_path, capsys):
    """A run with a trial still to come (a second seed added to its spec) whose Tune
    tuner.pkl holds garbage: resume names Tune's state, exits 2, and writes nothing."""
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    spec = yaml.safe_load((run_dir / SPEC_FILE).read_text())
    spec["seeds"] = [1, 2]
    (run_dir / SPEC_FILE).write_text(yaml.safe_dump(spec))
    (run_dir / "tuner.pkl").write_bytes(b"garbage\n" * 4)
    before = _digest(run_dir)
    code = main(["resume", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert f"{run_dir}: Tune's saved state cannot be read" in err and "Traceback" not in out + err
    assert _digest(run_dir) == before


def test_resume_refuses_an_unfinished_trials_damaged_checkpoint(finished_run, tmp_path):
    """Tune would restore an unfinished trial from a damaged checkpoint, fail and retry
    until the trial errors: resume names it first (a whole checkpoint passes)."""
    from specsweep.launcher import _damaged_checkpoints
    from specsweep.rundir import RunLocation
    from specsweep.status import read_trials

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
