"""The deployment files in deploy/: the Ray cluster launcher config against the schema Ray
ships, the Dockerfile's pins against pyproject.toml, and the KubeRay RayJob's entrypoint run
with its runtime env by ``ray job submit --runtime-env`` on a loopback Ray head. What needs a
cloud account, Kubernetes or a Docker daemon is not run here (docs/cluster.md)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Dict, List

import jsonschema
import pytest
import ray.autoscaler
import yaml

from test_cluster import RAY, ROOT, _trial_nodes, ray_head  # noqa: F401 (ray_head is a fixture)

DEPLOY = ROOT / "deploy"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins() -> Dict[str, str]:
    """pyproject's runtime dependencies by name (extras kept in the requirement)."""
    return {re.split(r"[\[=]", dep)[0].lower(): dep for dep in PROJECT["dependencies"]}


def _dockerfile() -> List[List[str]]:
    """The Dockerfile's instructions as word lists, continuation lines joined, comments out."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [shlex.split(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _pip_install_args(words: List[str]) -> List[str]:
    """What ``pip install`` is asked for in a command: requirements and ``-e PATH``, no options."""
    start = next(i for i in range(len(words) - 1) if words[i:i + 2] == ["pip", "install"]) + 2
    args: List[str] = []
    for i, word in enumerate(words[start:], start):
        if word in ("&&", ";", "||"):
            break
        if word == "-e" or not word.startswith("-"):
            args.append(word)
    return args


def _cluster_config() -> dict:
    return yaml.safe_load((DEPLOY / "cluster.yaml").read_text())


def test_cluster_config_passes_the_schema_ray_ships():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = _cluster_config()
    jsonschema.validate(config, schema)
    # The schema refuses what `ray up` would: a misspelt key fails here.
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate({**config, "max_worker": 4}, schema)


def test_cluster_setup_installs_the_shipped_checkout_at_its_pins():
    config = _cluster_config()
    (remote,) = [path for path, local in config["file_mounts"].items() if local == "."]
    installs = [_pip_install_args(shlex.split(c)) for c in config["setup_commands"] + config["head_setup_commands"]
                if "pip install" in c]
    # pyproject.toml, shipped with the checkout, holds the pins; everything else is pinned too.
    assert ["-e", remote] in installs
    assert all("==" in arg for args in installs if args != ["-e", remote] for arg in args)
    assert any("sys.version_info[:2] == (3, 11)" in c for c in config["setup_commands"])
    assert PROJECT["requires-python"] == ">=3.11,<3.12"
    # The same base image as the Dockerfile's, whose torch is the pinned one.
    assert config["docker"]["image"] == next(words[1] for words in _dockerfile() if words[0] == "FROM")
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert not any("0.0.0.0" in command for command in starts)


def test_dockerfile_pins_are_pyprojects():
    instructions = _dockerfile()
    (base,) = [words[1] for words in instructions if words[0] == "FROM"]
    installs = [_pip_install_args(words) for words in instructions if words[0] == "RUN" and "pip" in words]
    requirements = {arg for args in installs for arg in args if "==" in arg}
    assert requirements == set(PROJECT["dependencies"])
    torch_version = _pins()["torch"].split("==")[1]
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(torch_version)}-cuda[\d.]+-cudnn\d+-runtime", base), base
    # The checkout goes into the WORKDIR and is installed there without fetching anything more.
    (workdir,) = [words[1] for words in instructions if words[0] == "WORKDIR"]
    assert ["COPY", ".", workdir] in instructions
    assert ["--no-deps", "-e", "."] == [w for w in instructions[-1] if w in ("--no-deps", "-e", ".")]


def _rayjob() -> dict:
    return yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())


def test_rayjob_manifest_runs_specsweep_in_the_images_checkout():
    job = _rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == _pins()["ray"].split("==")[1]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    images = {c["image"] for pod in pods for c in pod["template"]["spec"]["containers"]}
    assert len(images) == 1, images
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "specsweep", "run"] and (ROOT / argv[4]).is_file()
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    (workdir,) = [words[1] for words in _dockerfile() if words[0] == "WORKDIR"]
    assert runtime_env["working_dir"] == workdir
    assert "pip" not in runtime_env and "conda" not in runtime_env, "the image holds the pins"


@pytest.mark.slow
def test_rayjob_entrypoint_and_runtime_env_run_on_a_ray_head(ray_head, tmp_path):  # noqa: F811
    """The manifest's entrypoint with a smoke-sized spec and local storage, submitted with its
    runtime env (the working dir: this checkout, as the image holds it) to a loopback head."""
    job = _rayjob()
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    runtime_env["working_dir"] = str(ROOT)
    env_file = tmp_path / "runtime_env.yaml"
    env_file.write_text(yaml.safe_dump(runtime_env))
    argv = shlex.split(job["spec"]["entrypoint"])
    argv[argv.index("--storage") + 1] = str(tmp_path / "runs")
    argv += ["--smoke-test", "--name", "rayjob"]
    env = {**ray_head.env, "RAY_AUTH_MODE": "token"}
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head.dashboard, "--submission-id", "specsweep-rayjob",
         "--runtime-env", str(env_file), "--", *argv],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    status = subprocess.run([RAY, "job", "status", "--address", ray_head.dashboard, "specsweep-rayjob"],
                            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    # How `ray job status` words JobStatus.SUCCEEDED.
    assert "Job 'specsweep-rayjob' succeeded" in status.stdout, status.stdout + status.stderr
    run_dir = tmp_path / "runs" / "rayjob"
    assert len(list(run_dir.glob("trial_*/result.json"))) == 4
    nodes = _trial_nodes(run_dir)
    assert nodes and nodes <= ray_head.node_ids()
