"""Sweeps on a Ray cluster started and used through the user's own commands, all on
loopback: ``ray start --head``, ``specsweep run --address``, ``ray job submit``; and a run
directory in S3 storage (moto's S3 server) that is killed, inspected, resumed and reported
through its ``s3://`` URI.

One node only: a second ``ray start --address`` on the same machine cannot stay on
loopback. With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (which keeps the head on 127.0.0.1)
Ray refuses to start worker nodes ("Multi-node Ray clusters are not supported"), and
without it Ray rewrites 127.0.0.1 in both ``--address`` and ``--node-ip-address`` to the
machine's network address, where the tests may not listen or connect.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Set

import pyarrow.fs as pafs
import pytest
import yaml
from ray.tune import ExperimentAnalysis

from specsweep.contract import StepMeasure
from specsweep.plan.cost import model_key
from specsweep.plan.plan import plan_sweep
from specsweep.results.status import read_trials
from specsweep.spec import load_spec
from specsweep.sweep.gpus import MEASURES_FILE, MeasureCache
from test_resume import _spec, _wait_for

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "sweeps/quickstart.yaml"
RAY = str(Path(sys.executable).with_name("ray"))
# The accelerator type of the GPU the test head claims.
FAKE_GPU = "FAKE"
# What Ray prints when ray.init starts a new instance instead of joining one.
LOCAL_RAY_STARTED = "Started a local Ray instance"


def _free_ports(count: int) -> List[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class Head:
    address: str
    dashboard: str
    env: Dict[str, str]

    def node_ids(self) -> Set[str]:
        """Node ids of the live nodes, asked from the head by a plain Ray driver (told to
        keep 127.0.0.1 and to send the token, which specsweep works out by itself)."""
        script = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                  "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % self.address)
        env = {**self.env, "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        done = subprocess.run([sys.executable, "-c", script], env=env,
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """``ray start --head --block`` on 127.0.0.1 with 2 CPUs and its own ports and temp dir,
    and one GPU that this machine does not have (``--num-gpus=1``, of accelerator type
    :data:`FAKE_GPU`), as a node started that way on a machine without a usable GPU would
    claim.

    HOME is a fresh folder holding a token in ``~/.ray/auth_token``, which makes
    ``ray start`` turn token authentication on, as on a machine where Ray ran before.
    ``--block`` keeps the head in the foreground so that stopping it stops exactly this
    head (``ray stop`` would stop every Ray on the machine)."""
    home = tmp_path_factory.mktemp("home")
    # Ray's socket paths must stay under 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="sshead-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update({
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPECSWEEP_CACHE": os.environ.get("SPECSWEEP_CACHE", str(Path.home() / ".cache" / "specsweep")),
        "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1",
    })
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    gcs, dashboard, client, agent, agent_grpc, metrics, runtime_env = _free_ports(7)
    log = open(home / "head.log", "w")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}", "--num-cpus=2", "--num-gpus=1",
         f"--resources={json.dumps({'accelerator_type:' + FAKE_GPU: 1})}",
         f"--temp-dir={temp_dir}"],
        env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    try:
        _wait_for(lambda: "Ray runtime started" in (home / "head.log").read_text() or head.poll() is not None,
                  120, "ray start --head")
        assert head.poll() is None, (home / "head.log").read_text()[-3000:]
        assert "Token authentication is enabled" in (home / "head.log").read_text()
        yield Head(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", env)
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _trial_nodes(run_dir: Path) -> Set[str]:
    nodes = set()
    for result in run_dir.glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        assert "test_acc" in rows[-1], result
        nodes.add(rows[-1]["node_id"])
    return nodes


def _specsweep(*args: str, env: Dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specsweep", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_run_joins_the_cluster_with_its_token(ray_head, tmp_path):
    # No RAY_AUTH_MODE: specsweep finds the token under ~/.ray as the ray CLI does.
    done = _specsweep("run", QUICKSTART, "--smoke-test", "--address", ray_head.address,
                      "--storage", str(tmp_path / "runs"), "--name", "cli", env=ray_head.env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert LOCAL_RAY_STARTED not in done.stdout + done.stderr
    nodes = _trial_nodes(tmp_path / "runs" / "cli")
    assert nodes and nodes <= ray_head.node_ids()


def test_job_submission_runs_on_the_cluster(ray_head, tmp_path):
    # The README's job command; the Jobs CLI needs RAY_AUTH_MODE=token to send the token.
    done = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head.dashboard, "--working-dir", ".", "--", "python", "-m",
         "specsweep", "run", QUICKSTART, "--smoke-test", "--storage", str(tmp_path / "runs"), "--name", "job"],
        env={**ray_head.env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    assert LOCAL_RAY_STARTED not in done.stdout + done.stderr
    nodes = _trial_nodes(tmp_path / "runs" / "job")
    assert nodes and nodes <= ray_head.node_ids()


def test_a_wrong_token_fails_in_one_line(ray_head, tmp_path):
    done = _specsweep("run", QUICKSTART, "--smoke-test", "--address", ray_head.address, "--storage",
                      str(tmp_path / "runs"), "--name", "x", env={**ray_head.env, "RAY_AUTH_TOKEN": "0" * 32},
                      timeout=120)
    assert done.returncode == 2
    assert "refused this machine's authentication token" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_gpus_auto_on_a_gpu_torch_cannot_see_fails_before_the_run(ray_head, tmp_path):
    """``resources.gpus: auto`` measures each model in a Ray task on a GPU of the
    cluster; on the head's claimed GPU torch finds none, and the run stops there with the
    node and what to check, before any run directory exists."""
    path = _auto_quickstart(tmp_path)
    (Path(ray_head.env["SPECSWEEP_CACHE"]) / MEASURES_FILE).unlink(missing_ok=True)
    done = _specsweep("run", str(path), "--smoke-test", "--address", ray_head.address, "--storage",
                      str(tmp_path / "runs"), "--name", "auto", env=ray_head.env, timeout=300)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resources.gpus: auto: measuring 4 model(s) on a GPU each" in done.stdout
    assert "Ray gave a GPU on node 127.0.0.1" in done.stderr and "torch sees no CUDA device" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "auto").exists()


def _auto_quickstart(tmp_path: Path) -> Path:
    spec = yaml.safe_load((ROOT / QUICKSTART).read_text())
    spec["resources"]["gpus"] = "auto"
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_gpus_auto_packs_trials_from_kept_measurements(ray_head, tmp_path):
    """Measurements kept from an earlier launch on GPUs of the same accelerator type are
    used without measuring again, and Tune gives every trial its model's share: here
    each model kept the GPU always busy, so two share it (0.5 GPU each). The trials run
    on the CPU, as torch sees no GPU on this machine."""
    path = _auto_quickstart(tmp_path)
    configs = plan_sweep(load_spec(path, smoke=True)).packing_trials
    cache_file = Path(ray_head.env["SPECSWEEP_CACHE"]) / MEASURES_FILE
    cache = MeasureCache(cache_file, FAKE_GPU, 1.0)
    for config in configs:
        cache.put(model_key(config), StepMeasure(clips_per_s=3_000.0, device="a fake GPU", total_mib=16_000.0,
                                                 peak_mib=500.0, busy=1.0))
    try:
        done = _specsweep("run", str(path), "--smoke-test", "--address", ray_head.address, "--storage",
                          str(tmp_path / "runs"), "--name", "packed", env=ray_head.env)
    finally:
        cache_file.unlink(missing_ok=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"4 model(s) measured before on {FAKE_GPU} GPUs" in done.stdout
    assert "measuring" not in done.stdout and done.stdout.count("2 per GPU (0.5 GPU each)") == 4
    run_dir = tmp_path / "runs" / "packed"
    packing = json.loads((run_dir / "specsweep-run.json").read_text())["gpu_packing"]
    assert [(row["per_gpu"], row["gpus"]) for row in packing] == [(2, 0.5)] * 4
    trials = ExperimentAnalysis(str(run_dir)).trials
    assert len(trials) == 4
    assert all(t.placement_group_factory.required_resources == {"CPU": 1.0, "GPU": 0.5} for t in trials)
    nodes = _trial_nodes(run_dir)
    assert nodes and nodes <= ray_head.node_ids()


@pytest.mark.parametrize("setting, message", [
    ({"--address": "127.0.0.1:1"}, "no Ray cluster answers at 127.0.0.1:1"),
    ({"RAY_ADDRESS": "garbage"}, "RAY_ADDRESS: must be HOST:PORT (or auto, local), got 'garbage'"),
    ({"--address": "http://127.0.0.1:8265"}, "is the dashboard, which `ray job submit` takes"),
])
def test_bad_cluster_addresses_fail_fast_in_one_line(setting, message, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    args = ["run", QUICKSTART, "--smoke-test", "--storage", str(tmp_path / "runs"), "--name", "x"]
    if "--address" in setting:
        args += ["--address", setting["--address"]]
    else:
        env.update(setting)
    start = time.monotonic()
    done = _specsweep(*args, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - start < 60
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and message in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def s3_storage(monkeypatch):
    """A bucket on moto's S3 server on 127.0.0.1, with fake credentials; yields the
    storage URI. AWS configuration files and the EC2 metadata service are kept out."""
    from moto.server import ThreadedMotoServer

    (port,) = _free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                       "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(key, value)
    endpoint = f"endpoint_override=127.0.0.1:{port}&scheme=http"
    pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                      allow_bucket_creation=True).create_dir("sweeps")
    try:
        yield f"s3://sweeps/runs?{endpoint}", endpoint
    finally:
        server.stop()


def _s3_text(uri: str) -> str:
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as stream:
        return stream.readall().decode()


def test_s3_locations_keep_their_endpoint(s3_storage):
    """A run directory in a bucket, its trial folders and its parents are URIs that keep
    the storage's endpoint query: what is written through one is read through another."""
    from specsweep.rundir import RunLocation, claim_run_dir

    storage, endpoint = s3_storage
    # moto keeps buckets in memory across servers of one process: a name no other test claims.
    run_dir = claim_run_dir(RunLocation(storage), "locations")
    assert (str(run_dir), run_dir.name) == (f"s3://sweeps/runs/locations?{endpoint}", "locations")
    assert (str(run_dir.parent), str(run_dir.parent.parent)) == (storage, f"s3://sweeps?{endpoint}")
    run_dir.child("trial_1").write_text("result.json", "{}\n")
    assert RunLocation(f"s3://sweeps/runs/locations/trial_1/?{endpoint}").read_text("result.json") == "{}\n"
    assert run_dir.glob("trial_*/result.json") == ["trial_1/result.json"]


def test_s3_run_directory_killed_status_resume_report(s3_storage, tmp_path):
    storage, endpoint = s3_storage
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    run_dir = f"s3://sweeps/runs/k?{endpoint}"

    bad = _specsweep("run", QUICKSTART, "--smoke-test", "--storage", f"s3://nonexistent-bucket/x?{endpoint}",
                     env=env, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr

    # One trial at a time (each takes both CPUs): after the first finishes, the other three
    # leave Tune several of its ~10 s experiment-state uploads in which one trial is finished
    # and the rest are not. All four are in the experiment state from the start.
    path = _spec(tmp_path, "s3", search={"space": {"frontend.setting": {"grid": ["A", "B", "C", "D"]}}},
                 train__epochs=2, resources={"cpus": 2})
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "specsweep", "run", str(path), "--storage", storage, "--name",
                               "k", "--num-cpus", "2"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=ROOT)

    def tune_statuses() -> Dict[str, str]:
        """Trial states in the experiment state Tune uploaded to the bucket (every ~10 s):
        what resume starts from. (status also reads each trial's newer result.json.)"""
        try:
            fs, fs_path = pafs.FileSystem.from_uri(run_dir)
            return {t.trial_id: t.status for t in ExperimentAnalysis(fs_path, storage_filesystem=fs).trials}
        except (OSError, ValueError, RuntimeError):
            return {}

    def one_finished_others_not() -> bool:
        states = list(tune_statuses().values())
        return "TERMINATED" in states and any(state != "TERMINATED" for state in states)

    try:
        _wait_for(one_finished_others_not, 420,
                  "one trial finished in the bucket's experiment state while others are unfinished")
    finally:
        # The driver and the local Ray it started die at once, as on a lost machine.
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        log.close()
    finished_before = {trial_id: _s3_text(f"s3://sweeps/runs/k/trial_{trial_id}/result.json?{endpoint}")
                       for trial_id, state in tune_statuses().items() if state == "TERMINATED"}
    assert finished_before

    status = _specsweep("status", run_dir, env=env, timeout=120)
    assert status.returncode == 0 and "terminated" in status.stdout, status.stderr[-2000:]

    resumed = _specsweep("resume", run_dir, "--num-cpus", "2", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = read_trials(run_dir)
    assert len(trials) == 4 and all(t["status"] == "TERMINATED" for t in trials)
    for trial_id, text in finished_before.items():
        after = _s3_text(f"s3://sweeps/runs/k/trial_{trial_id}/result.json?{endpoint}")
        # Finished work is kept: the results before the kill are untouched. Tune uploads its
        # experiment state every ~10 s, not when a trial ends, so a trial recorded finished
        # there can still be re-run from its latest checkpoint by resume (never from scratch).
        assert after.startswith(text), f"{trial_id}: results before the kill were rewritten"
        rerun = [json.loads(line)["training_iteration"] for line in after[len(text):].splitlines() if line]
        assert all(iteration > 1 for iteration in rerun), f"{trial_id} was trained again from scratch: {rerun}"

    report = _specsweep("report", run_dir, env=env, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "| A |" in _s3_text(f"s3://sweeps/runs/k/report/report.md?{endpoint}")
