"""Bad specs, flags and run directories, as a careless or hostile user gives them: each is
refused with exit status 2 and a message naming the key path, flag or file, with no
traceback, no run directory left behind, no Ray started, in bounded time and memory.

Most cases run in-process through ``specsweep.cli.main``; the ones about memory and
concurrency run in real subprocesses or threads.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import yaml

from specsweep.cli import main
from specsweep.data.embedded import MARKER
from specsweep.data.speechcommands import CLASSES
from specsweep.rundir import SPEC_FILE, RunDirError, claim_run_dir, released_on_failure

ROOT = Path(__file__).resolve().parents[1]
# The quickstart with one seed: 4 trials.
BASE: Dict[str, Any] = {**yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text()), "name": "bad", "seeds": [1]}
# Seconds one in-process refusal may take (validation only, on a shared 2-core machine).
MAX_SECONDS = 30
GIB = 2**30


def _with(**changes: Any) -> Dict[str, Any]:
    """BASE with ``section__key=value`` changes (a value of ``...`` deletes the key)."""
    spec = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return spec


def _with_key(section: str, key: Any) -> Dict[str, Any]:
    """BASE with a (non-string) ``key`` in mapping ``section`` (dotted)."""
    spec = copy.deepcopy(BASE)
    node = spec
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = 1
    return spec


# More combinations of model-sizing grid values than the memory check combines (4,096):
# each value passes alone, n_fft 256 with n_mels 200 does not.
_MANY_COMBINATIONS = {"frontend.n_fft": {"grid": [480, 256]}, "frontend.n_mels": {"grid": [40, 200]},
                      "backbone.dropout": {"grid": [0.1, 0.2, 0.3, 0.4, 0.45]},
                      "backbone.width": {"grid": [1, 1.5, 2, 2.5, 3]}, "data.seed": {"grid": list(range(50))}}


def _grid(n_keys: int, n_values: int) -> Dict[str, Any]:
    keys = ["train.lr", "train.weight_decay", "train.momentum", "train.warmup_epochs", "train.epochs",
            "train.batch_size", "backbone.dropout"][:n_keys]
    space = {k: {"grid": [round(0.01 * (i + 1), 4) if k != "train.epochs" and k != "train.batch_size" else i + 1
                          for i in range(n_values)]} for k in keys}
    return _with(search__space=space)


# (case id, spec dict written as the spec file, extra run flags, text the message must contain)
SPEC_CASES: List[tuple] = [
    ("width-word", _with(backbone__width="wide"), [], "backbone.width: must be a valid number"),
    ("width-negative", _with(backbone__width=-1), [], "backbone.width: must be greater than 0"),
    ("width-zero", _with(backbone__width=0), [], "backbone.width"),
    ("width-inf", _with(backbone__width=float("inf")), [], "backbone.width: must be a finite number"),
    ("blocks-short", _with(backbone__blocks=[1, 2]), [], "backbone.blocks"),
    ("blocks-zero", _with(backbone__blocks=[1, 0, 1, 1]), [], "backbone.blocks.1"),
    ("dropout-above-one", _with(backbone__dropout=1.5), [], "backbone.dropout"),
    ("backbone-unknown-key", _with(backbone__depth=3), [], "backbone.depth: unknown key"),
    ("simple-hidden-zero", _with(backbone={"name": "simple", "hidden_size": 0}), [], "backbone.hidden_size"),
    ("seed-negative", _with(seeds=[-1]), [], "seeds.0: must be greater than or equal to 0"),
    ("seed-too-large", _with(seeds=[2**32]), [], "seeds.0: must be less than or equal to 4294967295"),
    ("seed-word", _with(seeds=["one"]), [], "seeds.0"),
    ("seeds-repeated", _with(seeds=[1, 2, 1]), [], "seeds: [1] given more than once"),
    ("name-too-long", _with(name="n" * 201), [], "name: String should have at most 200 characters"),
    ("lr-inf", _with(train__lr=float("inf")), [], "train.lr: must be a finite number"),
    ("clips-per-word-huge", _with(data={"name": "embedded_kws", "clips_per_word": 10**9}), [],
     "data.clips_per_word: must be less than or equal to 10000"),
    ("utterances-huge", _with(task="asr", data={"name": "embedded_phonemes", "n_utterances": [10**6, 5, 5]}), [],
     "data.n_utterances"),
    ("class-weight-negative", _with(train__class_weights={"yes": -1}), [],
     "train.class_weights.yes: must be greater than or equal to 0"),
    ("class-weights-all-zero", _with(train__class_weights={c: 0 for c in CLASSES}), [],
     "train.class_weights: every class has weight 0"),
    ("epochs-true", _with(train__epochs=True), [], "train.epochs: must be a whole number, not true or false"),
    ("seed-true", _with(seeds=[True]), [], "seeds.0: must be a whole number, not true or false"),
    ("unshuffled-weighted", _with(train__shuffle=False), [], "train.shuffle: false reads the training split in order"),
    ("ctc-frames-kws", _with(train__ctc_drop_frames=2), [], "train.ctc_drop_frames: only tasks trained with a CTC"),
    ("ctc-frames-negative", _with(task="asr", data={"name": "embedded_phonemes"}, train__ctc_drop_frames=-1), [],
     "train.ctc_drop_frames: must be greater than or equal to 0"),
    ("stft-eps-negative", _with(frontend__trainable_stft_eps=-1e-8), [],
     "frontend.trainable_stft_eps: must be a finite number >= 0"),
    ("lr-nan", _with(train__lr=float("nan")), [], "train.lr: must be a finite number"),
    ("lr-negative", _with(train__lr=-1), [], "train.lr: must be greater than 0"),
    ("frontend-lr-inf", _with(train__frontend_lr=float("inf")), [], "train.frontend_lr"),
    ("epochs-zero", _with(train__epochs=0), [], "train.epochs"),
    ("epochs-past-any-study", _with(train__epochs=2**63 - 1), [],
     "train.epochs: must be less than or equal to 100000"),
    ("batch-zero", _with(train__batch_size=0), [], "train.batch_size"),
    ("n-fft-huge", _with(frontend__n_fft=65536), [], "frontend.n_fft: must be at most the clip length"),
    ("n-fft-one", _with(frontend__n_fft=1), [], "frontend.n_fft"),
    ("hop-zero", _with(frontend__hop_length=0), [], "frontend.hop_length: must be an int >= 1"),
    ("n-mels-zero", _with(frontend__n_mels=0), [], "frontend.n_mels"),
    ("n-mels-above-bins", _with(frontend__n_mels=500), [], "frontend.n_mels: must be an int in [1, 241]"),
    ("mask-beyond-bins", _with(frontend__mask_bins=[[300, 400]]), [], "frontend.mask_bins"),
    ("flag-yes", _with(frontend__trainable_mel="yes"), [], "frontend.trainable_mel"),
    ("setting-e", _with(frontend__setting="E"), [], "frontend.setting"),
    ("data-seed-negative", _with(data__seed=-1), [], "data.seed"),
    ("clips-zero", _with(data__clips_per_word=0), [], "data.clips_per_word"),
    ("dataset-unknown", _with(data__name="librispeech"), [], "data.name: unknown dataset"),
    ("task-unknown", _with(task="tts"), [], "task:"),
    ("name-dotdot", _with(name=".."), [], "name:"),
    ("name-slash", _with(name="a/b"), [], "name:"),
    ("reduction-nan", _with(scheduler={"name": "asha", "reduction_factor": float("nan")}), [],
     "scheduler.reduction_factor"),
    ("grace-zero", _with(scheduler={"name": "asha", "grace_period": 0}), [], "scheduler.grace_period"),
    ("unknown-top-key", _with(colour="blue"), [], "colour: unknown key"),
    ("api-key", _with(wandb={"api_key": "abc"}), [], "wandb.api_key"),
    ("grid-bad-value", _with(search__space={"backbone.width": {"grid": [1, -1]}}), [],
     "search.space.backbone.width: value -1"),
    ("grid-word-value", _with(search__space={"train.lr": {"grid": [0.1, "fast"]}}), [],
     "search.space.train.lr: value 'fast'"),
    ("sampled-range-bad-end", _with(search={"algorithm": "random", "num_samples": 2,
                                            "space": {"backbone.width": {"uniform": [-1, 2]}}}), [],
     "search.space.backbone.width: value -1"),
    ("grid-below-scalar", _with(search__space={"frontend.n_mels.x": {"grid": [1]}}), [],
     "search.space.frontend.n_mels.x: frontend.n_mels is a value"),
    ("grid-bad-combination", _with(search__space={"frontend.n_fft": {"grid": [256, 480]},
                                                  "frontend.n_mels": {"grid": [20, 200]}}), [],
     "frontend.n_fft=256, frontend.n_mels=200"),
    ("smoke-override-value", _with(smoke={"overrides": {"data.clips_per_word": 0}}), [],
     "smoke.overrides.data.clips_per_word"),
    ("smoke-override-below-scalar", _with(smoke={"overrides": {"frontend.n_mels.x": 1}}), [],
     "smoke.overrides.frontend.n_mels.x"),
    ("smoke-override-bad-root", _with(smoke={"overrides": {"nothing.here": 1}}), [], "smoke.overrides.nothing.here"),
    ("grid-million", _grid(6, 10), [], "search: 1,000,000 trials"),
    ("grid-over-max-trials", _with(seeds=[1, 2, 3]), ["--max-trials", "5"], "search: 12 trials"),
    ("memory", _with(backbone__width=1000), [], "memory: a trial"),
    ("cpus-beyond-machine", _with(resources__cpus=4096), [], "resources.cpus: a trial asks for 4096 CPUs"),
    ("cpus-beyond-num-cpus", _with(resources__cpus=2), ["--num-cpus", "1"], "resources.cpus"),
    ("gpus-beyond-machine", _with(resources__gpus=64), [], "resources.gpus: a trial asks for 64 GPUs"),
    # One rule for keys and numbers, whatever component a value reaches.
    ("key-true-in-frontend", _with_key("frontend", True), [], "frontend: the key true is not a string"),
    ("key-1-in-backbone", _with_key("backbone", 1), [], "backbone: the key 1 is not a string"),
    ("key-null-in-data", _with_key("data", None), [], "data: the key null is not a string"),
    ("key-true-in-class-weights", _with_key("train.class_weights", True), [],
     "train.class_weights: the key true is not a string"),
    ("power-nan", _with(frontend__power=float("nan")), [], "frontend.power: must be a finite number, got nan"),
    ("sample-rate-inf", _with(frontend__sample_rate=float("inf")), [], "frontend.sample_rate: must be a finite number"),
    ("window-parameter-nan", _with(frontend__window=["kaiser", float("nan")]), [], "frontend.window.1: must be a finite"),
    ("fastaudio-amin-nan", _with(frontend={"name": "fastaudio", "amin": float("nan")}), [], "frontend.amin: must be a finite"),
    ("fastaudio-change-factor-inf", _with(frontend={"name": "fastaudio", "param_change_factor": float("-inf")}), [],
     "frontend.param_change_factor: must be a finite"),
    ("stft-eps-beyond-float32", _with(frontend__trainable_stft_eps=1e300), [],
     "frontend.trainable_stft_eps: must be within float32 range"),
    ("lr-beyond-float32", _with(train__lr=1e300), [], "train.lr: must be within float32 range"),
    ("seed-beyond-64-bits", _with(data__seed=2**70), [], "data.seed: must be a whole number of at most 64 bits"),
    # Sense across keys.
    ("hop-above-n-fft", _with(frontend__hop_length=20000), [], "frontend.hop_length: must be at most n_fft (480)"),
    ("sample-rate-not-the-datasets", _with(frontend__sample_rate=8000), [],
     "frontend.sample_rate: must be the dataset's, 16000 Hz"),
    ("mask-every-bin", _with(frontend__mask_bins=[[0, 100], [100, 241]]), [],
     "frontend.mask_bins: [[0, 100], [100, 241]] masks every one of the 241 STFT bins"),
    ("grace-above-epochs", _with(scheduler={"name": "asha", "grace_period": 50}, train__epochs=3), [],
     "scheduler.grace_period: must be at most train.epochs (3)"),
    ("reduction-factor-near-one", _with(scheduler={"name": "asha", "reduction_factor": 1.0000001}), [],
     "scheduler.reduction_factor: 1.0000001 makes 25,649,495 ASHA rungs"),
    ("randint-beyond-64-bits", _with(search={"algorithm": "random", "space": {"data.seed": {"randint": [0, 2**70]}}}), [],
     "search.space.data.seed.randint.1: must be a whole number of at most 64 bits"),
    ("randint-beyond-field", _with(search={"algorithm": "random", "space": {"data.seed": {"randint": [0, 2**40]}}}), [],
     "search.space.data.seed: value 1099511627775: data.seed: must be less than or equal to 4294967295"),
    ("uniform-over-whole-number", _with(search={"algorithm": "random", "space": {"train.epochs": {"uniform": [1, 10]}}}),
     [], "search.space.train.epochs: value 5.5 (a value uniform draws): train.epochs: must be a valid integer"),
    ("grid-bad-among-many-combinations", _with(search__space=_MANY_COMBINATIONS), ["--max-trials", "10000"],
     "search.space: trials with frontend.n_fft=256, frontend.n_mels=200"),
    ("wandb-project-slash", _with(wandb={"project": "a/b"}), [], "wandb.project: wandb refuses it: Invalid project name"),
    ("wandb-project-129", _with(wandb={"project": "p" * 129}), [], "exceeded 128 characters"),
    ("wandb-tag-empty", _with(wandb={"tags": ["ok", ""]}), [], "wandb.tags.1: wandb refuses '': Tag at index 0 is empty"),
    ("wandb-tag-65", _with(wandb={"tags": ["t" * 65]}), [], "wandb.tags.0: wandb refuses"),
    ("bcresnet-million-blocks", _with(backbone__blocks=[10**6, 1, 1, 1]), [], "memory: a trial"),
    ("lstm-10-to-the-12-layers", _with(task="asr", data={"name": "embedded_phonemes"}, smoke={},
                                      backbone={"name": "simple", "num_layers": 10**12}), [], "memory: a trial"),
    ("cpus-below-ray-step", _with(resources__cpus=1e-5), [], "resources.cpus: Ray counts resources in steps of 0.0001"),
    ("name-flag-dotdot", BASE, ["--name", "../escape"], "--name '../escape'"),
    ("name-flag-absolute", BASE, ["--name", "/tmp/escape"], "--name '/tmp/escape'"),
    ("name-flag-dot", BASE, ["--name", "."], "--name '.'"),
    ("name-flag-parent", BASE, ["--name", ".."], "--name '..'"),
    ("name-flag-control", BASE, ["--name", "a\tb"], "--name 'a\\tb'"),
    ("name-flag-empty", BASE, ["--name", ""], "--name ''"),
]


@pytest.fixture
def workspace(tmp_path: Path) -> Dict[str, Path]:
    storage = tmp_path / "runs"
    return {"tmp": tmp_path, "storage": storage, "spec": tmp_path / "spec.yaml"}


def _tree(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _ray_state() -> tuple:
    """Whether this process is connected to Ray, and the Ray sessions it started (other
    tests of the session may have started one already)."""
    ray = sys.modules.get("ray")
    return (ray is not None and ray.is_initialized(), sorted(Path("/tmp/ray").glob(f"session_*_{os.getpid()}")))


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _refused(argv: List[str], capsys: pytest.CaptureFixture, watch: Path) -> str:
    """Run ``specsweep argv`` in-process; assert exit 2, no traceback, nothing new under
    ``watch``, no Ray started, bounded time and memory growth; return what it printed."""
    before, ray_before, peak_before = _tree(watch), _ray_state(), _peak_rss()
    start = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert _tree(watch) == before, "a refused command left files behind"
    assert _ray_state() == ray_before, "Ray was started"
    assert seconds < MAX_SECONDS, f"took {seconds:.1f} s"
    assert _peak_rss() - peak_before < GIB, "the peak memory of the process grew by more than 1 GiB"
    return out + err


@pytest.mark.parametrize("raw, flags, message", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_bad_spec_or_run_flag_is_refused(raw, flags, message, workspace, capsys):
    workspace["spec"].write_text(yaml.safe_dump(raw, sort_keys=False))
    printed = _refused(["run", str(workspace["spec"]), "--storage", str(workspace["storage"]), *flags],
                       capsys, workspace["tmp"])
    assert message in printed
    assert not workspace["storage"].exists()


def test_every_problem_is_listed_at_once(workspace, capsys):
    raw = _with(backbone__width="wide", seeds=[-1], train__lr=float("inf"), frontend__n_fft=65536, colour=1,
                search__space={"backbone.width": {"grid": [-2]}}, smoke={"overrides": {"data.clips_per_word": 0}})
    workspace["spec"].write_text(yaml.safe_dump(raw))
    printed = _refused(["inspect", str(workspace["spec"])], capsys, workspace["tmp"])
    for key in ("backbone.width", "seeds.0", "train.lr", "frontend.n_fft", "colour", "search.space.backbone.width",
                "smoke.overrides.data.clips_per_word"):
        assert f"  - {key}" in printed, key


def _run_dir(tmp: Path, spec: Optional[Dict[str, Any]] = None, run_file: bool = True) -> Path:
    """A run directory as ``run`` leaves it before Tune writes anything."""
    run_dir = tmp / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / SPEC_FILE).write_text(yaml.safe_dump(spec or BASE))
    if run_file:
        (run_dir / "specsweep-run.json").write_text(json.dumps({"smoke": False}))
    return run_dir


def _binary(ws: Dict[str, Path]) -> List[str]:
    ws["spec"].write_bytes(bytes(range(256)) * 4)
    return ["run", str(ws["spec"]), "--storage", str(ws["storage"])]


def _text(content: str) -> Callable[[Dict[str, Path]], List[str]]:
    def setup(ws: Dict[str, Path]) -> List[str]:
        ws["spec"].write_text(content)
        return ["run", str(ws["spec"]), "--storage", str(ws["storage"])]
    return setup


def _existing_run(ws: Dict[str, Path]) -> List[str]:
    ws["spec"].write_text(yaml.safe_dump(BASE))
    (ws["storage"] / "taken").mkdir(parents=True)
    return ["run", str(ws["spec"]), "--storage", str(ws["storage"]), "--name", "taken"]


def _storage_file(ws: Dict[str, Path]) -> List[str]:
    ws["spec"].write_text(yaml.safe_dump(BASE))
    (ws["tmp"] / "afile").write_text("x")
    return ["run", str(ws["spec"]), "--storage", str(ws["tmp"] / "afile")]


def _report_out_file(ws: Dict[str, Path]) -> List[str]:
    run_dir = _run_dir(ws["tmp"])
    (ws["tmp"] / "out.txt").write_text("x")
    return ["report", str(run_dir), "--out", str(ws["tmp"] / "out.txt")]


def _damaged_spec(command: str) -> Callable[[Dict[str, Path]], List[str]]:
    def setup(ws: Dict[str, Path]) -> List[str]:
        run_dir = _run_dir(ws["tmp"])
        (run_dir / SPEC_FILE).write_text("name: [unclosed\n")
        return [command, str(run_dir)]
    return setup


def _no_state_resume(ws: Dict[str, Path]) -> List[str]:
    return ["resume", str(_run_dir(ws["tmp"]))]


def _no_run_file_resume(ws: Dict[str, Path]) -> List[str]:
    return ["resume", str(_run_dir(ws["tmp"], run_file=False))]


def _smoke_word_resume(ws: Dict[str, Path]) -> List[str]:
    run_dir = _run_dir(ws["tmp"])
    (run_dir / "specsweep-run.json").write_text(json.dumps({"smoke": "yes"}))
    return ["resume", str(run_dir)]


_DIGITS = "1" * 5000


def _sparse_spec(ws: Dict[str, Path]) -> List[str]:
    with ws["spec"].open("wb") as spec:
        spec.truncate(6 * GIB)
    return ["inspect", str(ws["spec"])]


def _cache_env(name: str) -> Callable[[Dict[str, Path]], List[str]]:
    """``data prepare`` and ``run`` with SPECSWEEP_CACHE at ``name`` in the temp folder
    (``loop``: two symlinks naming each other)."""
    def setup(ws: Dict[str, Path]) -> List[str]:
        cache = ws["tmp"] / name
        if name == "loop":
            os.symlink(ws["tmp"] / "loop2", cache)
            os.symlink(cache, ws["tmp"] / "loop2")
        os.environ["SPECSWEEP_CACHE"] = str(cache)  # restored by the test's monkeypatch
        return ["data", "prepare", "embedded_kws"]
    return setup


# (case id, setup returning argv, text the message must contain)
# Six levels of aliases, each ten of the one before: a million values from a short string.
_LAUGHS = "[&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
    f"&{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcde", "bcdef")) + "]"
COMMAND_CASES = [
    ("int-of-5000-digits", _text(yaml.safe_dump(BASE).replace("n_mels: 40", f"n_mels: {_DIGITS}")),
     "frontend.n_mels: must be a whole number of at most 64 bits (|n| <= 9223372036854775807), got an integer of 5,000 "
     "digits"),
    ("spec-sparse-6-gib", _sparse_spec, "6,442,450,944 bytes: more than a spec may hold"),
    ("address-port-21-digits", lambda ws: ["run", "x.yaml", "--address", "127.0.0.1:100000000000000000000"],
     "port must be a number in 1-65535, got '100000000000000000000'"),
    ("cache-name-300", _cache_env("c" * 300), "File name too long"),
    ("cache-symlink-loop", _cache_env("loop"), "loop"),
    ("prepare-set-5000-digits", lambda ws: ["data", "prepare", "embedded_kws", "--set", f"seed={_DIGITS}"],
     "--set seed: must be a whole number of at most 64 bits"),
    ("binary-spec", _binary, "not a text file"),
    ("yaml-error", _text("name: [unclosed\n"), "not valid YAML"),
    ("spec-is-list", _text("- 1\n- 2\n"), "(top level): a spec must be a YAML mapping"),
    # Nine levels of nine aliases: 387 million values once expanded, a few hundred bytes of YAML.
    ("alias-bomb", _text("a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)) + "name: bad\ndescription: *a9\n"),
     "the document expands to"),
    ("nested-too-deeply", _text("name: " + "[" * 1500 + "]" * 1500 + "\n"), "nested too deeply"),
    ("cache-is-a-file", lambda ws: ((ws["tmp"] / "afile").write_text("x"),
                                    ["data", "prepare", "embedded_kws", "--set", f"cache_dir={ws['tmp'] / 'afile'}"])[1],
     "File exists"),
    ("spec-empty", _text(""), "(top level)"),
    ("spec-missing", lambda ws: ["run", str(ws["tmp"] / "nope.yaml")], "file not found"),
    ("spec-is-folder", lambda ws: ["inspect", str(ws["tmp"])], "a folder, not a spec file"),
    ("spec-is-device", lambda ws: ["inspect", "/dev/null"], "not a regular file"),
    ("duplicate-key", _text("name: dup\ntask: kws\ntask: asr\n"), "found the key 'task' twice"),
    ("address-ray-client", lambda ws: ["run", "x.yaml", "--address", "ray://127.0.0.1:10001"],
     "ray:// (Ray Client) is not supported"),
    ("address-bad-port", lambda ws: ["run", "x.yaml", "--address", "127.0.0.1:99999"],
     "port must be a number in 1-65535, got '99999'"),
    ("address-empty", lambda ws: ["resume", "x", "--address", ""], "must not be empty"),
    ("storage-empty", lambda ws: ["run", "x.yaml", "--storage", ""], "must not be empty"),
    ("report-out-empty", lambda ws: ["report", "x", "--out", ""], "must not be empty"),
    ("run-dir-taken", _existing_run, "already exists"),
    ("storage-is-file", _storage_file, "is a file"),
    ("report-out-file", _report_out_file, "out.txt is a file"),
    ("report-missing-run", lambda ws: ["report", str(ws["tmp"] / "none")], "no such folder"),
    ("status-missing-run", lambda ws: ["status", str(ws["tmp"] / "none")], "no such folder"),
    ("status-not-a-run", lambda ws: ["status", str(ws["tmp"])], "not a specsweep run directory"),
    ("status-damaged-spec", _damaged_spec("status"), "specsweep.yaml is damaged"),
    ("resume-damaged-spec", _damaged_spec("resume"), "specsweep.yaml is damaged"),
    ("report-damaged-spec", _damaged_spec("report"), "specsweep.yaml is damaged"),
    ("resume-never-started", _no_state_resume, "no Tune experiment state"),
    ("resume-no-run-file", _no_run_file_resume, "specsweep-run.json is missing"),
    ("resume-smoke-not-bool", _smoke_word_resume, "smoke must be true or false, got 'yes'"),
    ("prepare-unknown-dataset", lambda ws: ["data", "prepare", "librispeech"], "unknown dataset 'librispeech'"),
    ("prepare-without-root", lambda ws: ["data", "prepare", "timit"], "--root: missing"),
    ("prepare-set-not-yaml", lambda ws: ["data", "prepare", "speechcommands", "--root", str(ws["tmp"]), "--set",
                                         "test_set=["], "--set test_set=[: the value is not valid YAML"),
    ("prepare-missing-root", lambda ws: ["data", "prepare", "speechcommands", "--root", str(ws["tmp"] / "no")],
     "Speech Commands v2 not found"),
    ("set-alias-holds-itself", lambda ws: (ws["spec"].write_text(yaml.safe_dump(BASE)),
                                           ["inspect", str(ws["spec"]), "--set", "train.epochs=&a [*a]"])[1],
     "--set train.epochs=&a [*a]: the value nests too deeply"),
    ("set-aliases-nested", lambda ws: (ws["spec"].write_text(yaml.safe_dump(BASE)),
                                       ["inspect", str(ws["spec"]), "--set", "train.lr=" + _LAUGHS])[1],
     "the value expands to 1,234,567 values"),
    ("prepare-set-out-of-range", lambda ws: ["data", "prepare", "embedded_kws", "--set", "clips_per_word=0"],
     "data prepare: --set clips_per_word: must be greater than or equal to 1"),
    ("prepare-set-alias-holds-itself", lambda ws: ["data", "prepare", "embedded_kws", "--set", "seed=&a [*a]"],
     "--set seed=&a [*a]: the value nests too deeply"),
    ("max-trials-zero", lambda ws: ["inspect", "x.yaml", "--max-trials", "0"], "--max-trials"),
    ("num-cpus-negative", lambda ws: ["run", "x.yaml", "--num-cpus", "-2"], "--num-cpus"),
    ("inspect-huge-grid", lambda ws: (ws["spec"].write_text(yaml.safe_dump(_grid(7, 10))),
                                      ["inspect", str(ws["spec"])])[1], "search: 10,000,000 trials"),
]


@pytest.mark.parametrize("setup, message", [c[1:] for c in COMMAND_CASES], ids=[c[0] for c in COMMAND_CASES])
def test_bad_file_flag_or_run_directory_is_refused(setup, message, workspace, capsys, monkeypatch):
    monkeypatch.chdir(workspace["tmp"])
    monkeypatch.setenv("SPECSWEEP_CACHE", os.environ.get("SPECSWEEP_CACHE", str(workspace["tmp"] / "cache")))
    argv = setup(workspace)
    printed = _refused(argv, capsys, workspace["tmp"])
    assert message in printed


def test_a_bad_ray_address_in_the_environment_is_named(workspace, capsys, monkeypatch):
    """RAY_ADDRESS is checked as --address is (a 21-digit port reached the socket layer)."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:100000000000000000000")
    workspace["spec"].write_text(yaml.safe_dump(BASE))
    printed = _refused(["run", str(workspace["spec"]), "--storage", str(workspace["storage"])], capsys,
                       workspace["tmp"])
    assert "RAY_ADDRESS: port must be a number in 1-65535" in printed


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "0", "inf"])
def test_a_bad_memory_limit_in_the_environment_is_named(value, workspace, capsys, monkeypatch):
    monkeypatch.setenv("SPECSWEEP_TRIAL_MEMORY_GB", value)
    workspace["spec"].write_text(yaml.safe_dump(BASE))
    printed = _refused(["run", str(workspace["spec"]), "--storage", str(workspace["storage"])], capsys,
                       workspace["tmp"])
    assert f"SPECSWEEP_TRIAL_MEMORY_GB: must be a number of GiB > 0 (a trial's memory limit), got {value!r}" in printed


def test_inspect_prints_the_count_before_refusing(workspace, capsys):
    workspace["spec"].write_text(yaml.safe_dump(_grid(7, 10)))
    printed = _refused(["inspect", str(workspace["spec"])], capsys, workspace["tmp"])
    assert printed.startswith("bad: 10000000 trials (10 ") and "10 train.lr × " in printed.splitlines()[0]


def test_debug_shows_the_traceback(workspace):
    workspace["spec"].write_text(yaml.safe_dump(_with(backbone__width=-1)))
    with pytest.raises(Exception, match="backbone.width"):
        main(["--debug", "inspect", str(workspace["spec"])])
    with pytest.raises(Exception, match="backbone.width"):
        main(["inspect", str(workspace["spec"]), "--debug"])


def test_of_concurrent_claims_one_wins(tmp_path):
    """Eight runs claim the same name at once: one gets the folder, the others the
    "already exists" refusal."""
    barrier = threading.Barrier(8)
    outcomes: List[str] = []

    def claim() -> None:
        barrier.wait()
        try:
            claim_run_dir(tmp_path / "runs", "same")
            outcomes.append("won")
        except RunDirError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes.count("won") == 1
    assert all("already exists" in o for o in outcomes if o != "won") and len(outcomes) == 8


def test_a_start_that_fails_leaves_no_run_directory(tmp_path):
    storage = tmp_path / "runs"
    run_dir = claim_run_dir(storage, "r")
    with pytest.raises(ConnectionError):
        with released_on_failure(run_dir, storage_existed=False):
            (run_dir / SPEC_FILE).write_text("name: r\n")
            raise ConnectionError("Ray did not start")
    assert not storage.exists()
    kept = claim_run_dir(tmp_path, "kept")
    with released_on_failure(kept, storage_existed=True):
        (kept / SPEC_FILE).write_text("name: kept\n")
    assert (kept / SPEC_FILE).exists()


def _limit_memory(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


@pytest.mark.parametrize("command", ["inspect", "run"])
def test_huge_n_fft_is_refused_under_a_memory_cap(command, tmp_path):
    """One spec value used to build a 17 GB STFT kernel; under an 8 GiB address-space cap
    (torch's libraries alone map several GiB) the refusal must come from validation."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_with(frontend__n_fft=65536, search__space={"frontend.setting": {"grid": ["D"]}})))
    argv = [sys.executable, "-m", "specsweep.cli", command, str(spec)]
    if command == "run":
        argv += ["--storage", str(tmp_path / "runs")]
    start = time.monotonic()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_limit_memory(8 * GIB), env={**os.environ, "PYTHONPATH": str(ROOT)}) as child:
        _, stderr = child.communicate(timeout=120)
    assert child.returncode == 2, stderr
    assert "frontend.n_fft: must be at most the clip length, 16000 samples, got 65536" in stderr
    assert "Traceback" not in stderr
    assert time.monotonic() - start < 120
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 < 4 * GIB
    assert not (tmp_path / "runs").exists()
    # Ray names a session folder after the process that started it (other tests may run Ray meanwhile).
    assert not list(Path("/tmp/ray").glob(f"session_*_{child.pid}")), "a Ray instance was started"


def test_ctrl_c_before_the_sweep_starts_is_a_plain_exit(tmp_path):
    """Ctrl-C while the embedded dataset is synthesized: exit 130 with one line, no
    traceback, no run directory, and no dataset folder that a later run would take as whole."""
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "specsweep", "run", str(ROOT / "sweeps" / "quickstart.yaml"),
            "--storage", str(tmp_path / "runs")]
    env = {**os.environ, "SPECSWEEP_CACHE": str(cache), "WANDB_MODE": "offline"}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as child:
        seen = []
        for line in child.stderr:
            seen.append(line)
            if "synthesizing" in line:
                child.send_signal(signal.SIGINT)
                break
        _, stderr = child.communicate(timeout=120)
    stderr = "".join(seen) + stderr
    assert child.returncode == 130, stderr
    assert "specsweep run: interrupted" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()
    assert not [p for p in cache.iterdir() if p.is_dir() and (p / MARKER).exists()]


def test_yaml_merge_keys_still_load(workspace):
    """The duplicate-key check leaves YAML's merge key alone: a spec that reuses a mapping
    with `<<: *anchor` (and overrides one of its keys) loads as before."""
    from specsweep.spec import load_spec

    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "search"}, sort_keys=False)
    text += ("search:\n  space:\n    frontend.setting: &both {grid: [A, B]}\n"
             "    frontend.n_mels: {<<: *both, grid: [20, 40]}\n")
    workspace["spec"].write_text(text)
    spec = load_spec(workspace["spec"])
    assert spec.search.space["frontend.setting"].grid == ["A", "B"]
    assert spec.search.space["frontend.n_mels"].grid == [20, 40]


def test_a_run_directory_from_before_a_new_check_still_reads(tmp_path, capsys):
    """Checks added after a sweep started (repeated seeds, true/false as a number) do not
    lock its run directory: status still reads its spec; a new spec is refused."""
    from specsweep.rundir import load_run

    spec = {**BASE, "seeds": [1, 1], "train": {**BASE.get("train", {}), "epochs": True}}
    run_dir = _run_dir(tmp_path, spec)
    stored = load_run(run_dir)
    assert stored.seeds == [1, 1] and stored.train.epochs == 1
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(spec))
    assert main(["inspect", str(tmp_path / "new.yaml")]) == 2
    err = capsys.readouterr().err
    assert "seeds: [1] given more than once" in err and "train.epochs: must be a whole number" in err


def test_a_refused_number_in_a_choice_is_named_once(workspace, capsys):
    """NaN in a search choice is one line at its place; the key is not judged again by the
    None the number check leaves there ("value None: must be a valid integer")."""
    workspace["spec"].write_text(yaml.safe_dump(_with(search={"algorithm": "random", "space": {
        "train.epochs": {"choice": [1, float("nan")]}}})))
    printed = _refused(["inspect", str(workspace["spec"])], capsys, workspace["tmp"])
    assert "search.space.train.epochs.choice.1: must be a finite number, got nan" in printed
    assert "None" not in printed
