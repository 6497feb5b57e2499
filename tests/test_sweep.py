"""End-to-end sweeps with real Ray (local), real Lightning and W&B offline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specsweep.cli import main
from specsweep.results.status import read_trials
from specsweep.rundir import RunDirError
from specsweep.sweep.launcher import run_sweep
from wandb_records import read_run

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"


@pytest.fixture(scope="module")
def quickstart_run(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    outcome = run_sweep(QUICKSTART, storage=storage, name="qs", smoke=True)
    return outcome


def test_quickstart_smoke_trials_finish(quickstart_run):
    assert quickstart_run.exit_code == 0
    trials = read_trials(quickstart_run.run_dir)
    assert sorted(t["config"]["frontend"]["setting"] for t in trials) == ["A", "B", "C", "D"]
    for t in trials:
        assert t["status"] == "TERMINATED"
        m = t["metrics"]
        assert 0.0 <= m["val_acc"] <= 1.0 and 0.0 <= m["test_acc"] <= 1.0
        assert m["best_val_acc"] >= m["last_val_acc"] - 1e-9
        assert m["train_loss"] > 0
        # Drift from the initial bases: 0 for a fixed basis, > 0 for a trained one.
        setting = t["config"]["frontend"]["setting"]
        assert (m["frontend/filterbank_drift"] > 0) == (setting in "BD"), (setting, m["frontend/filterbank_drift"])
        assert (m["frontend/stft_drift"] > 0) == (setting in "CD"), (setting, m["frontend/stft_drift"])
        assert m["frontend/filterbank_drift"] < 0.5 and m["frontend/stft_drift"] < 0.5
    rows = quickstart_run.rows
    assert len(rows) == 4 and all(r["test_acc"] is not None for r in rows)


def test_status_json(quickstart_run, capsys):
    assert main(["status", str(quickstart_run.run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert len(status["trials"]) == 4
    for t in status["trials"]:
        assert set(t) >= {"id", "status", "config", "metrics"}
        assert t["status"] == "TERMINATED"
        assert {"last_val_acc", "best_val_acc"} <= set(t["metrics"])
        assert t["config"]["backbone"]["name"] == "bcresnet"


def test_wandb_offline_run_per_trial_with_config(quickstart_run):
    trials = {t["id"]: t for t in read_trials(quickstart_run.run_dir)}
    runs = sorted(quickstart_run.run_dir.glob("trial_*/wandb/offline-run-*"))
    assert len(runs) == 4
    assert len({r.name.split("-", 3)[-1] for r in runs}) == 4, "one W&B run id per trial"
    for run in runs:
        logged = read_run(run)
        trial = trials[run.parent.parent.name.removeprefix("trial_")]
        assert logged["config"]["frontend"] == trial["config"]["frontend"]
        assert logged["config"]["seed"] == 1
        epochs = [h for h in logged["history"] if "val_acc" in h]
        assert len(epochs) == 1 and epochs[0]["val_acc"] == pytest.approx(trial["metrics"]["last_val_acc"])
        assert "frontend/filenames" in logged["summary"] and "confusion_matrix/filenames" in logged["summary"]
        assert logged["summary"]["test_acc"] == pytest.approx(trial["metrics"]["test_acc"])
        assert logged["summary"]["frontend/filterbank_drift"] == pytest.approx(
            trial["metrics"]["frontend/filterbank_drift"])


def test_figures_and_checkpoints_reach_the_run_directory(quickstart_run):
    for trial_dir in quickstart_run.run_dir.glob("trial_*"):
        assert (trial_dir / "figures" / "frontend.png").stat().st_size > 1000
        assert (trial_dir / "figures" / "confusion_matrix.png").stat().st_size > 1000
        assert list(trial_dir.glob("checkpoint_*/checkpoint.ckpt"))


def test_run_directory_is_never_reused(quickstart_run):
    with pytest.raises(RunDirError, match="already exists"):
        run_sweep(QUICKSTART, storage=quickstart_run.run_dir.parent, name="qs", smoke=True)


def test_report_tables_and_figures(quickstart_run, tmp_path, capsys):
    assert main(["report", str(quickstart_run.run_dir), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    for setting in "ABCD":
        assert f"| {setting} |" in markdown
    assert "Protocol: recipe quick" in markdown and "| frontend/filterbank_drift |" in markdown
    csv_rows = (tmp_path / "report.csv").read_text().splitlines()
    # One group (nothing but the setting and the seed differs): no group columns.
    assert csv_rows[0] == "setting,metric,mean,std,n"
    assert len(csv_rows) == 1 + 4 * 4
    drift = {row.split(",")[0]: float(row.split(",")[2]) for row in csv_rows if ",frontend/filterbank_drift," in row}
    assert drift["A"] == 0.0 == drift["C"] and drift["B"] > 0 and drift["D"] > 0
    effects = (tmp_path / "effects.csv").read_text().splitlines()
    assert effects[0].startswith("metric,setting,baseline,effect,low,high,pairs,method,reading")
    assert [row.split(",")[1] for row in effects[1:]] == ["B", "C", "D"]
    assert "embedded_kws is not Speech Commands" in markdown and "### kws-accuracy-gain: " in markdown
    for png in ("best_filterbanks.png", "effects.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_report_as_a_wandb_run_with_the_settings_side_by_side(quickstart_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "specsweep", "report", str(quickstart_run.run_dir), "--out",
                           str(tmp_path), "--wandb"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = tmp_path.glob("wandb/offline-run-*")
    assert f"W&B: wandb sync {folder}" in done.stdout
    logged = read_run(folder)
    assert logged["config"]["sweep"] == "quickstart" and "Protocol: recipe quick" in logged["config"]["protocol"]
    # Beside the trials, in their group, told apart by its job type.
    (trial_run, *_) = quickstart_run.run_dir.glob("trial_*/wandb/offline-run-*")
    assert logged["run"]["job_type"] == "report" and read_run(trial_run)["run"]["job_type"] == "trial"
    assert logged["run"]["group"] == read_run(trial_run)["run"]["group"] == quickstart_run.run_dir.name
    (history,) = [h for h in logged["history"] if "settings/_type" in h]
    assert history["settings/_type"] == "table-file" and history["settings/nrows"] == 4
    assert history["results/nrows"] == 4 * 4 and history["test_acc_by_setting_table/_type"] == "table-file"
    assert history["filterbanks/_type"] == "image-file"
    assert history["effects_table/nrows"] == 3 and history["effects/_type"] == "image-file"
    table = json.loads((folder / "files" / history["settings/path"]).read_text())
    assert [row[0] for row in table["data"]] == ["A", "B", "C", "D"]
    assert table["columns"][:3] == ["setting", "best_val_acc", "test_acc"]
    assert table["columns"][-6:] == ["effect vs A", "effect low", "effect high", "pairs", "method", "reading"]
    by_setting = {t["config"]["frontend"]["setting"]: t["metrics"]["test_acc"] for t in read_trials(quickstart_run.run_dir)}
    assert {row[0]: row[2] for row in table["data"]} == pytest.approx(by_setting)
    assert {k: v for k, v in logged["summary"].items() if k.startswith("test_acc/")} == pytest.approx(
        {f"test_acc/{s}": v for s, v in by_setting.items()})
    # One seed per setting: each effect against A is that seed's difference.
    assert {k: v for k, v in logged["summary"].items() if k.startswith("effect/")} == pytest.approx(
        {f"effect/test_acc/{s}-A": by_setting[s] - by_setting["A"] for s in "BCD"})


def _descendants(pid: int) -> set:
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_local_ray_listens_on_loopback_only(ray_session):
    import os
    import re
    import subprocess

    ours = _descendants(os.getpid())
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    sockets = [(line.split()[3], int(m)) for line in listening for m in re.findall(r"pid=(\d+)", line)
               if int(m) in ours]
    assert sockets, "no listening socket of the local Ray was found"
    for local, pid in sockets:
        assert local.startswith(("127.", "[::ffff:127.", "[::1]", "localhost")), (local, pid)


def test_the_driver_names_the_trainable_without_importing_lightning():
    """Lightning loads in trial workers only: imported by the driver, it would hold up the
    start of every sweep by seconds before Tune could start a trial. (wandb loads in the
    driver: the spec check asks wandb's own settings whether the W&B names are allowed.)"""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import specsweep.cli\n"
        "from specsweep.sweep.launcher import _prepare_data\n"
        "from specsweep.spec import load_spec, param_space\n"
        "from specsweep.trainables.trainable import RunContext, train_trial\n"
        "param_space(load_spec(sys.argv[1]))\n"
        "print(sorted(m for m in ('lightning', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(QUICKSTART)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
