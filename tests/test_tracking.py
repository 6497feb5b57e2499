"""W&B runs of trials: offline without a key, one service process per worker, clean exit."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from specsweep import tracking
from wandb_records import read_run

# Two trials' runs one after the other in one process, as on a reused Tune actor; prints
# the wandb service processes (children of this process) seen after each run finished.
TWO_TRIALS = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from specsweep import tracking

    def children():
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.append(int(stat.parent.name))
        return sorted(found)

    settings = tracking.WandbSettings(project="p", group="g", mode="offline")
    seen = []
    for trial in ("t1", "t2"):
        run = tracking.init_run(settings, Path(sys.argv[1]) / trial, tracking.run_id(sys.argv[1], trial),
                                "run-" + trial, {"trial": trial}, tags=["test"])
        run.log({"val_acc": 0.5})
        tracking.finish_run(run)
        seen.append(children())
    print(json.dumps(seen))
    """
)


def test_trials_on_one_worker_share_the_wandb_service_and_exit_cleanly(tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", TWO_TRIALS, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    after_first, after_second = json.loads(done.stdout.strip().splitlines()[-1])
    assert after_first and after_first == after_second, "the second run reuses the first run's service"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    for trial in ("t1", "t2"):
        (run_dir,) = (tmp_path / trial / "wandb").glob("offline-run-*")
        logged = read_run(run_dir)
        assert logged["config"]["trial"] == trial
        assert [h["val_acc"] for h in logged["history"] if "val_acc" in h] == [0.5]


def test_auto_mode_follows_wandb_mode_then_credentials(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert tracking.resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_mode("auto") == "disabled"
    assert tracking.resolve_mode("offline") == "offline"


def test_credentials_are_found_where_wandb_looks(monkeypatch, tmp_path: Path):
    """NETRC, an identity token file and the key all count, as they do for wandb.init."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not tracking.has_wandb_credentials()
    netrc_file = tmp_path / "elsewhere" / "netrc"
    netrc_file.parent.mkdir()
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert tracking.has_wandb_credentials() and tracking.resolve_mode("auto") == "online"
    monkeypatch.delenv("NETRC")
    token = tmp_path / "token.jwt"
    token.write_text("header.payload.signature")
    monkeypatch.setenv("WANDB_IDENTITY_TOKEN_FILE", str(token))
    assert tracking.has_wandb_credentials()
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.has_wandb_credentials()


def test_links_to_the_runs():
    assert tracking.group_url("https://wandb.ai/me/proj/runs/abc-123", "qs 1") == "https://wandb.ai/me/proj/groups/qs%201"
    assert tracking.sync_command([Path("/r/a b/wandb/offline-run-1")]) == "wandb sync '/r/a b/wandb/offline-run-1'"


ONLINE_TRIAL = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from specsweep import tracking

    settings = tracking.WandbSettings(project="p", group="g", mode="online")
    run = tracking.init_run(settings, Path(sys.argv[1]), "trial-1-abc", "run-1", {"trial": 1}, tags=[])
    run.log({"val_acc": 0.75})
    print(json.dumps({"offline": run.settings._offline, "id": run.id}))
    tracking.finish_run(run)
    """
)


def _closed_loopback_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_key_and_an_unreachable_server_log_offline(tmp_path: Path):
    """A W&B key but no server (a closed loopback port stands for a blocked network): the
    driver sees the server unreachable, and a trial whose online start fails logs offline
    under the same run id (not refused as "in use"), and the key is in no file."""
    import os

    key = "deadbeef" * 5
    port = _closed_loopback_port()
    env = {**os.environ, "WANDB_API_KEY": key, "WANDB_BASE_URL": f"http://127.0.0.1:{port}",
           "WANDB_INIT_TIMEOUT": "5"}
    env.pop("WANDB_MODE", None)
    probe = subprocess.run([sys.executable, "-c", "from specsweep import tracking; "
                            "print(tracking.resolve_mode('auto'), tracking.unreachable_server())"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert probe.stdout.startswith(f"online http://127.0.0.1:{port}: "), probe.stderr
    done = subprocess.run([sys.executable, "-c", ONLINE_TRIAL, str(tmp_path)], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"offline": True, "id": "trial-1-abc"}
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*-trial-1-abc")
    assert [h["val_acc"] for h in read_run(run_dir)["history"] if "val_acc" in h] == [0.75]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_a_sweep_with_a_key_and_no_server_runs_offline(tmp_path: Path):
    """The whole sweep: the driver finds the server unreachable, says so once, and every
    trial logs offline at once instead of waiting out wandb's timeout; nothing holds the key."""
    import os

    key = "deadbeef" * 5
    env = {**os.environ, "WANDB_API_KEY": key, "WANDB_BASE_URL": f"http://127.0.0.1:{_closed_loopback_port()}",
           "SPECSWEEP_CACHE": os.environ.get("SPECSWEEP_CACHE", str(tmp_path / "cache"))}
    env.pop("WANDB_MODE", None)
    spec = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"
    done = subprocess.run([sys.executable, "-m", "specsweep", "run", str(spec), "--smoke-test", "--storage",
                           str(tmp_path / "runs"), "--name", "s"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("W&B server unreachable (http://127.0.0.1:") == 1
    assert "Traceback" not in done.stdout + done.stderr
    run_dir = tmp_path / "runs" / "s"
    assert len(list(run_dir.glob("trial_*/wandb/offline-run-*"))) == 4
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_a_bad_wandb_variable_is_named_without_its_value(monkeypatch):
    """wandb refuses some WANDB_* values in every wandb.init; the driver names the variable
    before trials start, and never prints a value (one may be a key)."""
    monkeypatch.setenv("WANDB_API_KEY", "deadbeef" * 5)
    assert tracking.environment_problem() is None
    for name, value in (("WANDB_BASE_URL", "localhost:8080"), ("WANDB_INIT_TIMEOUT", "soon")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            problem = tracking.environment_problem()
        assert problem.startswith(f"W&B settings from the environment are invalid: {name} ")
        assert value not in problem and "deadbeef" not in problem


def test_a_sweeps_trial_runs_read_themselves(tmp_path: Path):
    """An lr x setting grid, smoke-sized with 2 epochs. Each trial's offline run is a
    ``trial`` job named after every swept value (names distinct within the sweep), plots its
    metrics against ``epoch`` and summarises the sweep metric and the validation metrics by
    their best, holds what the trial printed, the filterbank figure of every epoch, and its
    final filterbank as an artifact."""
    import os

    import torch
    import yaml

    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / "sweeps" / "quickstart.yaml").read_text())
    spec["seeds"] = [1]
    spec["search"]["space"] = {"train.lr": {"grid": [0.01, 0.003]}, "frontend.setting": {"grid": ["A", "C"]}}
    spec["smoke"]["overrides"]["train.epochs"] = 2
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "WANDB_MODE": "offline",
           "SPECSWEEP_CACHE": os.environ.get("SPECSWEEP_CACHE", str(tmp_path / "cache"))}
    done = subprocess.run([sys.executable, "-m", "specsweep", "run", str(path), "--smoke-test", "--storage",
                           str(tmp_path / "runs"), "--name", "lr"], capture_output=True, text=True, timeout=600,
                          env=env, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    names = []
    for trial_dir in sorted((tmp_path / "runs" / "lr").glob("trial_*")):
        (run_folder,) = (trial_dir / "wandb").glob("offline-run-*")
        logged = read_run(run_folder)
        config = json.loads((trial_dir / "params.json").read_text())
        names.append(logged["run"]["name"])
        assert logged["run"]["name"] == (f"kws-bcresnet-nnaudio-{config['frontend']['setting']}-mels40-"
                                         f"lr{config['train']['lr']!r}-seed1")
        assert logged["run"]["job_type"] == "trial"

        metrics = logged["metrics"]
        assert metrics["val_acc"] == {"step_metric": "epoch", "summary": ["max"]}
        assert metrics["val_loss"] == {"step_metric": "epoch", "summary": ["min"]}
        assert metrics["train_loss"]["step_metric"] == "epoch" and metrics["train_loss"]["summary"] == []
        validations = [row for row in logged["history"] if "val_acc" in row]
        assert [row["epoch"] for row in validations] == [0, 1]
        assert [row["epoch"] for row in logged["history"] if "test_acc" in row] == [2]
        assert logged["summary"]["val_acc"] == {"max": max(row["val_acc"] for row in validations)}
        assert logged["summary"]["val_loss"] == {"min": min(row["val_loss"] for row in validations)}

        # The console log: what the trial printed while its run was open, as in trial.log.
        printed = [line for line in logged["output"].splitlines() if line.strip()]
        trial_log = (trial_dir / "trial.log").read_text()
        assert printed and all(line in trial_log for line in printed)

        # Lightning logs a list of images, which W&B records as nested keys: frontend/_type ...
        images = [key[:-len("/_type")] for row in logged["history"] for key, value in row.items()
                  if key.endswith("/_type") and value == "images/separated"]
        assert sorted(images) == ["confusion_matrix", "frontend", "frontend"]
        (filterbank,) = [a for a in logged["artifacts"] if a["type"] == "filterbank"]
        assert sorted(filterbank["files"]) == ["filterbank.png", "filterbank.pt"]
        assert filterbank["metadata"]["setting"] == config["frontend"]["setting"]
        tensors = torch.load(trial_dir / "filterbank.pt", weights_only=True)
        assert tensors["filterbank"].shape == tensors["initial_filterbank"].shape == (40, 241)
        assert ("stft_kernels" in tensors) == (config["frontend"]["setting"] == "C")
    assert len(names) == len(set(names)) == 4


def test_run_names_show_every_swept_value_and_differ_within_a_sweep(tmp_path: Path):
    """Every trial of an lr x setting x seed grid gets its own name; two swept keys that end
    alike are named in full, and a sweep that may draw a configuration twice adds the
    trial's number."""
    import yaml

    from specsweep.spec import TrialConfig, load_spec, plan_trials

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml").read_text())
    raw["search"]["space"]["train.lr"] = {"grid": [0.01, 0.001, 0.0001]}
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    configs = [trial.as_dict() for trial in plan_trials(spec)]
    keys = list(spec.search.space)
    names = [tracking.run_name(TrialConfig.model_validate(c), c, keys) for c in configs]
    assert len(set(names)) == len(configs) == 4 * 3 * 2
    assert "kws-bcresnet-nnaudio-B-mels40-lr0.001-seed2" in names

    config = configs[0]
    trial = TrialConfig.model_validate(config)
    alike = tracking.run_name(trial, config, ["train.lr", "data.lr"])
    assert alike == "kws-bcresnet-nnaudio-A-mels40-train.lr0.01-data.lrNone-seed1"
    assert tracking.run_name(trial, config, keys, sample="00007").endswith("-lr0.01-seed1-sample00007")
