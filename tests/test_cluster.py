"""A real two-node Ray cluster on loopback (two raylets with one CPU each): a sweep joins
it with ``--address`` and spreads its trials over both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
# Keeps Ray's address resolution on 127.0.0.1 for the cluster and for the driver joining it.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture
def loopback_cluster():
    proc = subprocess.Popen([sys.executable, str(HERE / "loopback_cluster.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **LOOPBACK})
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sweep_spreads_over_two_loopback_nodes(loopback_cluster, tmp_path):
    spec = {
        "name": "cluster",
        "task": "kws",
        "data": {"name": "embedded_kws", "clips_per_word": 6},
        "frontend": {"name": "nnaudio", "n_mels": 20},
        "backbone": {"name": "bcresnet"},
        "train": {"epochs": 2, "batch_size": 8},
        "seeds": [1],
        "search": {"space": {"frontend.setting": {"grid": ["A", "B", "C", "D"]}}},
        "resources": {"cpus": 1},
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, **LOOPBACK, "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-m", "specsweep.cli", "run", str(path), "--address", loopback_cluster,
                           "--storage", str(tmp_path / "runs"), "--name", "c"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    nodes = set()
    for result in (tmp_path / "runs" / "c").glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        assert "test_acc" in rows[-1]
        nodes.add(rows[-1]["node_id"])
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"
