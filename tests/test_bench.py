"""The benchmarks run end to end in --tiny mode and write their tables.

Each runs as ``python -m bench.<name> --tiny --out <file>`` from the repository root, as
a user runs it; only the shape of the tables is checked, never the numbers (benchmarks
are not timed tests). The sweep benchmark starts its own local Ray in its process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_bench(module: str, out: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # A Ray address in the environment would make the sweep benchmark join that cluster.
    env.pop("RAY_ADDRESS", None)
    env["WANDB_MODE"] = "offline"
    return subprocess.run([sys.executable, "-m", module, "--tiny", "--out", str(out), *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def tables(markdown: str) -> List[Dict[str, object]]:
    """Every Markdown table as ``{"headers": [...], "rows": [[cells], ...]}``."""
    found = []
    lines = markdown.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and lines[i + 1].startswith("|---") and (i == 0 or not lines[i - 1].startswith("|")):
            headers = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            for line in lines[i + 2:]:
                if not line.startswith("|"):
                    break
                cells = [c.strip() for c in line.strip("|").split("|")]
                assert len(cells) == len(headers), line
                rows.append(cells)
            found.append({"headers": headers, "rows": rows})
    return found


def written(proc: subprocess.CompletedProcess, out: Path) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# ")
    assert "- machine: " in text and "usable cores, torch threads" in text and "UTC" in text
    assert f"kernel path {torch.backends.cpu.get_cpu_capability()};" in text
    assert text in proc.stdout, "the table is printed as well as written"
    return text


def test_frontends(tmp_path):
    out = tmp_path / "frontends.md"
    text = written(run_bench("bench.bench_frontends", out), out)
    (t,) = tables(text)
    assert t["headers"][0] == "setting" and len(t["headers"]) == 5
    assert [r[0][:1] for r in t["rows"]] == list("ABCD")


def test_data(tmp_path):
    out = tmp_path / "data.md"
    text = written(run_bench("bench.bench_data", out), out)
    speed, memory = tables(text)
    assert speed["headers"] == ["source", "clips", "s / epoch", "clips/s", "time vs cache"]
    assert [r[0] for r in speed["rows"]] == ["cache (memory-mapped int16)",
                                             "cache, batches gathered by `train.data_path: device` on the CPU",
                                             "WAV decode (soundfile)"]
    assert memory["headers"][:2] == ["N", "reader"] and "audio map PSS MiB" in memory["headers"]
    assert [r[:2] for r in memory["rows"]] == [["2", "1"], ["2", "2"]], "--tiny: 2 concurrent readers"
    assert "Cache file `audio.int16`" in text


def test_cli(tmp_path):
    out = tmp_path / "cli.md"
    (t,) = tables(written(run_bench("bench.bench_cli", out), out))
    assert t["headers"] == ["command", "wall s"]
    assert [r[0] for r in t["rows"]][:2] == ["python -c pass", "specsweep --help"]


def test_trials(tmp_path):
    out = tmp_path / "trials.md"
    text = written(run_bench("bench.bench_trials", out), out)
    t, loop = tables(text)
    assert {"BC-ResNet-1 clips/s", "simple clips/s"} <= set(t["headers"])
    assert [r[0][:1] for r in t["rows"]] == list("ABCD")
    # Setting A's step through the trial's Lightning loop beside the bare step.
    assert loop["headers"][1:] == ["bare step ms", "through Lightning ms", "Lightning's own ms per step"]
    assert [r[0] for r in loop["rows"]] == ["BC-ResNet-1", "simple"]
    for row in loop["rows"]:
        bare, through, own = (float(v.replace(",", "")) for v in row[1:])
        assert bare > 0 and through > 0 and own == pytest.approx(through - bare, abs=0.011)


def test_sweep(tmp_path):
    out = tmp_path / "sweep.md"
    text = written(run_bench("bench.bench_sweep", out, timeout=400), out)
    overview, fixed, startup = tables(text)
    assert [r[0] for r in overview["rows"]] == ["Ray Tune sweep", "sequential, one process"]
    assert "efficiency" in overview["headers"]
    parts = {row[1] for row in fixed["rows"]}
    for metric in ("data_s", "model_s", "wandb_s", "checkpoint_s", "fit_s", "test_s"):
        assert f"`timing/{metric}`" in parts
    assert any(row[0].startswith("**total fixed cost**") for row in fixed["rows"])
    # A slot's start splits, as measured in the workers, into reaching the trainable and then
    # the first trial's imports: both times lie after the driver's start of the sweep.
    mean = {row[0].split(" (")[0]: float(row[2]) for row in fixed["rows"] if row[2] and row[0].startswith(("first", "-"))}
    entry = mean["first trials' entry after `run_sweep` start"]
    load = mean["- of which: until the new worker has loaded the trainable"]
    imports = mean["- of which: the first trial's imports in that worker"]
    assert 0 < load < entry and 0 < imports < entry
    assert {"actor, create + 1st call", "actor, 2nd call (reused)"} <= {row[0] for row in startup["rows"]}
    assert "trial(s) errored" not in text


def test_sweep_benchmark_killed_exits_143_not_0(tmp_path):
    """SIGTERM while the sequential trials run (set up or fit): Lightning turns it into an
    exit with no code, which reads as success; the benchmark ends 143 so that a killed run
    never passes as done. The signal goes right after the sequential phase announces itself:
    its two tiny trials can end within a second on an idle machine."""
    import signal

    out = tmp_path / "sweep.md"
    env = dict(os.environ, WANDB_MODE="offline")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_sweep", "--tiny", "--out", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("[bench] sequential"):
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert not out.exists()


def test_gpu_trials_without_gpu_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; this checks the message on machines without one")
    proc = run_bench("bench.gpu_trials", tmp_path / "gpu.md", timeout=120)
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stderr
    assert not (tmp_path / "gpu.md").exists()


def test_gpu_packing_tiny_runs_trial_processes_on_cpu(tmp_path):
    out = tmp_path / "packing.md"
    proc = run_bench("bench.gpu_packing", out, "--only", "q1-loader,q8-device", timeout=600)
    text = written(proc, out)
    (result,) = tables(text)
    rows = {r[0]: dict(zip(result["headers"], r)) for r in result["rows"]}
    assert list(rows) == ["q1-loader", "q8-device"]
    # --tiny caps a run at two trials; both trained and reported their timed epochs.
    assert [rows[r]["trials"] for r in rows] == ["1", "2"] and {rows[r]["failed"] for r in rows} == {"0"}
    assert rows["q1-loader"]["data path"] == "loader" and rows["q8-device"]["data path"] == "device"
    assert all(float(rows[r]["clips/s per trial (mean)"].replace(",", "")) > 0 for r in rows)


def test_gpu_packing_without_gpu_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; this checks the message on machines without one")
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_packing", "--out", str(tmp_path / "p.md")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "--tiny" in proc.stderr
    assert not (tmp_path / "p.md").exists()


def test_run_all_rejects_unknown_names():
    proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--only", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown benchmark" in proc.stderr


def _run_script(*argv: str, timeout: int = 300) -> str:
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_effects_coverage_prints_a_row_per_pair_count():
    """The script docs/report.md quotes for the bootstrap's threshold runs (a few runs here)."""
    (table,) = tables(_run_script("bench.effects_coverage", "--runs", "50", "--resamples", "99", "--pairs", "5", "40"))
    assert [row[0] for row in table["rows"]] == ["5", "40"]
    assert all(cell.endswith("%") for row in table["rows"] for cell in row[1:])


def test_mel_drift_prints_the_clamped_basis_per_step():
    """The script docs/protocol.md quotes runs a paper KWS trial's step; the basis it reports
    lies in [0, 1], where the clamp after every step holds it whatever the step did."""
    out = _run_script("bench.mel_drift", "sweeps/paper/kws_settings.yaml", "--setting", "B", "--backbone", "simple",
                      "--steps", "1")
    (step,) = [line for line in out.splitlines() if line.startswith("step ")]
    low, high = map(float, step.split("basis in [")[1].split("]")[0].split(", "))
    assert step.startswith("step 1: gradient") and 0 <= low <= high <= 1
