"""``resources.gpus: auto``: trials per GPU from a model's measured memory and GPU time,
the resources Tune gets per trial, what the run directory records, and the cost.

The measurement itself needs a GPU (``tests/test_gpu.py``); here the decisions are fed
measurements of the kind it returns, and the sweep runs on a Ray without GPUs, where
``auto`` means CPUs. ``test_cluster.py`` covers a Ray node that claims a GPU torch cannot see.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

from specsweep.contract import StepMeasure
from specsweep.data.datasets import prepare_dataset
from specsweep.plan.cost import GPU_RATES, model_key, shared_rate, sweep_cost
from specsweep.sweep.cluster import LaunchError
from specsweep.sweep.gpus import MEASURES_FILE, MeasureCache
from specsweep.sweep.launcher import _trial_resources, resume_sweep, run_sweep
from specsweep.plan.packing import (
    CONTEXT_MIB,
    MAX_PER_GPU,
    USABLE,
    PackingError,
    TrialResources,
    device_data_mib,
    gpu_share,
    packing_key,
    packing_from_record,
    packing_record,
    plan_packing,
    trials_per_gpu,
)
from specsweep.plan.plan import plan_sweep
from specsweep.rundir import RUN_FILE, RunDirError
from specsweep.spec import SpecError, TrialConfig, load_spec, plan_trials, validate_spec
from test_resume import _spec

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"
KWS_SETTINGS = ROOT / "sweeps" / "paper" / "kws_settings.yaml"
H100_MIB = 81_559.0


def _auto(path: Path, tmp_path: Path, algorithm: str = "grid", **space) -> Path:
    raw = yaml.safe_load(path.read_text())
    raw["resources"] = {**raw.get("resources", {}), "gpus": "auto"}
    raw["search"]["algorithm"] = algorithm
    raw["search"]["space"].update(space)
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(raw))
    return out


def test_memory_or_gpu_time_decides_how_many_share_a_gpu():
    # GPU time decides: 19 % busy alone, packed to twice the GPU's time -> ceil(2 / 0.19) = 11.
    n, why = trials_per_gpu(peak_mib=500, data_mib=0, busy=0.19, total_mib=H100_MIB)
    assert n == 11 and "GPU time 11" in why
    # Memory decides: each trial holds 20 GiB of data; 0.9 x 80 GiB holds 3 of them.
    n, why = trials_per_gpu(peak_mib=500, data_mib=20_480, busy=0.19, total_mib=H100_MIB)
    assert n == int(USABLE * H100_MIB // (500 + 20_480 + CONTEXT_MIB)) == 3 and "memory allows 3" in why
    # A model that keeps the GPU busy alone gets it alone.
    assert trials_per_gpu(peak_mib=4_000, data_mib=0, busy=0.97, total_mib=H100_MIB)[0] == 3
    assert trials_per_gpu(peak_mib=4_000, data_mib=0, busy=1.0, total_mib=H100_MIB)[0] == 2
    # Without profiler data, memory alone decides, at most MAX_PER_GPU.
    n, why = trials_per_gpu(peak_mib=100, data_mib=0, busy=None, total_mib=H100_MIB)
    assert n == MAX_PER_GPU and "not measured" in why
    with pytest.raises(PackingError, match="more GPU memory than the GPU has"):
        trials_per_gpu(peak_mib=80_000, data_mib=0, busy=0.5, total_mib=H100_MIB)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 11, 16, 64])
def test_gpu_shares_fit_on_one_gpu(n):
    share = gpu_share(n)
    # Ray counts GPU fractions to 1e-4: n shares fit on one GPU, n + 1 do not.
    assert round(share * n, 4) <= 1.0 < round(share * (n + 1), 4) + (1.0 if n == 1 else 0.0)
    assert share == round(share, 4)


def test_data_on_the_device_counts_every_split(tmp_path, cache_dir, speech_commands_tree):
    train = {"data_path": "auto"}
    # Declared sizes: the embedded set's 1,448 / 196 / 174 one-second int16 clips, an int64 target each.
    mib = device_data_mib(_trial({"name": "embedded_kws"}, train))
    assert mib == pytest.approx((1_448 + 196 + 174) * (16_000 * 2 + 8) / 2**20)
    assert device_data_mib(_trial({"name": "embedded_kws"}, {"data_path": "loader"})) == 0.0
    # Variable-length utterances stay with the DataLoader.
    assert device_data_mib(_trial({"name": "embedded_phonemes"}, train, task="asr")) == 0.0
    # Speech Commands declares its training size only: the rest is counted from the prepared tree.
    sc = {"name": "speechcommands", "root": str(speech_commands_tree)}
    prepared = prepare_dataset(sc)
    clips = sum(len(prepared.dataset(split)) for split in ("train", "val", "test"))
    assert device_data_mib(_trial(sc, train)) == pytest.approx(clips * (16_000 * 2 + 8) / 2**20)
    # Not prepared on this machine: unknown, not a guess.
    assert device_data_mib(_trial({"name": "speechcommands", "root": str(tmp_path / "none")}, train)) is None


def _trial(data, train, task="kws"):
    return TrialConfig.model_validate({"task": task, "data": data, "frontend": {"name": "nnaudio"},
                                       "backbone": {"name": "simple"}, "train": train})


def test_one_measurement_per_distinct_model(tmp_path):
    spec = load_spec(_auto(QUICKSTART, tmp_path))
    configs = plan_sweep(spec).packing_trials
    # Seeds share a model; the four settings do not.
    assert len(plan_trials(spec)) == 8 and len(configs) == 4
    assert sorted(c.setting for c in configs) == ["A", "B", "C", "D"]
    # A sampled size that shapes the model is measured at the ends of its range, choices at each value.
    spec = load_spec(_auto(QUICKSTART, tmp_path, "random", **{"frontend.n_mels": {"randint": [10, 41]},
                                                   "train.batch_size": {"choice": [16, 32]}}))
    configs = plan_sweep(spec).packing_trials
    assert {(c.frontend["n_mels"], c.train.batch_size) for c in configs} == {
        (10, 16), (10, 32), (40, 16), (40, 32)}
    assert len(configs) == 16
    # Sampled values that do not shape the model add nothing to measure.
    spec = load_spec(_auto(QUICKSTART, tmp_path, "random", **{"train.lr": {"loguniform": [0.001, 0.1]}}))
    assert len(plan_sweep(spec).packing_trials) == 4


def _gpu_measure(peak: float, busy: float, rate: float = 3_000.0) -> StepMeasure:
    return StepMeasure(clips_per_s=rate, device="NVIDIA H100 80GB HBM3", total_mib=H100_MIB, peak_mib=peak, busy=busy)


def test_trials_ask_for_their_models_share(tmp_path):
    spec = load_spec(_auto(QUICKSTART, tmp_path))
    configs = plan_sweep(spec).packing_trials
    busy = {"A": 0.1, "B": 0.2, "C": 0.5, "D": 1.0}
    measures = {model_key(c): _gpu_measure(600, busy[c.setting]) for c in configs}
    plans = plan_packing(measures, configs)
    assert {p.label.split()[2].rstrip(","): p.per_gpu for p in plans.values()} == {"A": 20, "B": 10, "C": 4, "D": 2}
    # What the run directory records reads back the same, and Tune gets each trial's share.
    record = json.loads(json.dumps(packing_record(plans)))
    assert packing_from_record(record) == plans
    resources = _trial_resources(spec, record)
    assert isinstance(resources, TrialResources)
    # Tune pickles the trainable with its resources.
    resources = pickle.loads(pickle.dumps(resources))
    for trial in plan_trials(spec):
        request = resources(trial.as_dict()).required_resources
        assert request == {"CPU": 1.0, "GPU": gpu_share(20 // {"A": 1, "B": 2, "C": 5, "D": 10}[trial.setting])}
    # A model between the measured ones gets the largest share measured.
    first = plan_trials(spec)[0].as_dict()
    other = {**first, "frontend": {**first["frontend"], "n_mels": 33}}
    assert resources(other).required_resources["GPU"] == 0.5
    # No GPUs (an empty record): trials ask for CPUs only; a fixed number stays a plain request.
    assert resources.__class__(1.0, {})(other).required_resources == {"CPU": 1.0}
    fixed = validate_spec({**yaml.safe_load(QUICKSTART.read_text()), "resources": {"cpus": 2, "gpus": 0.5}}, "x")
    assert _trial_resources(fixed, None) == {"cpu": 2.0, "gpu": 0.5}


def test_a_model_too_large_for_the_gpu_is_named(tmp_path):
    spec = load_spec(_auto(KWS_SETTINGS, tmp_path))
    configs = plan_sweep(spec).packing_trials
    measures = {model_key(c): _gpu_measure(79_000, 0.5) for c in configs}
    with pytest.raises(PackingError, match=r"setting A, batch 100, speechcommands on NVIDIA H100.*"
                                           r"data on the device unknown.*lower train.batch_size"):
        plan_packing(measures, configs)


def test_cost_of_auto_from_recorded_packing_and_from_a_gpu_calibration(tmp_path):
    spec = load_spec(_auto(KWS_SETTINGS, tmp_path))
    trials = plan_trials(spec)
    cost = sweep_cost(trials, spec.resources.cpus, spec.resources.gpus)
    eager = GPU_RATES["kws", "bcresnet", False]
    bcresnet = next(t for t in cost["per_trial"] if "eager, DataLoader" in t["rate_source"])
    # Recorded: as many per GPU as in the recorded figure, each its part of the GPU's clips/s.
    assert bcresnet["gpus"] == 1 / eager.trials and bcresnet["clips_per_s"] == eager.per_gpu / eager.trials
    assert cost["total"]["gpu_hours"] == pytest.approx(sum(t["hours"] * t["gpus"] for t in cost["per_trial"]))
    # Calibrated on a GPU: each trial gets its share of what the GPU does when always busy.
    measures = {model_key(c): _gpu_measure(600, 0.25, rate=4_000) for c in trials}
    share_of = TrialResources(spec.resources.cpus, plan_packing(measures, trials)).gpus
    cost = sweep_cost(trials, spec.resources.cpus, "auto", None, measures, share_of)
    first = cost["per_trial"][0]
    assert first["gpus"] == gpu_share(8) and first["clips_per_s"] == pytest.approx(4_000 / 0.25 * gpu_share(8))
    assert shared_rate(4_000, 0.25, 0.5) == 4_000 and shared_rate(4_000, None, 0.1) == 4_000
    # Calibrated on a CPU: auto finds no GPU here, so no GPU-hours.
    cpu = {model_key(c): StepMeasure(clips_per_s=100.0, device="cpu") for c in trials}
    cost = sweep_cost(trials, spec.resources.cpus, "auto", None, cpu)
    assert cost["total"]["gpu_hours"] == 0 and cost["per_trial"][0]["clips_per_s"] == 100.0


def test_auto_without_gpus_runs_on_cpus_and_is_recorded(ray_session, tmp_path, capsys):
    path = _spec(tmp_path, "auto", train__epochs=1, resources={"cpus": 1, "gpus": "auto"})
    outcome = run_sweep(path, storage=tmp_path / "runs", name="auto")
    assert outcome.exit_code == 0
    assert "resources.gpus: auto: Ray has no GPUs here; trials run on CPUs" in capsys.readouterr().out
    info = json.loads((tmp_path / "runs" / "auto" / RUN_FILE).read_text())
    assert info["gpu_packing"] == []
    assert [row["status"] for row in outcome.rows] == ["TERMINATED"]


@pytest.mark.parametrize("value", ["Auto", "fast", -1, 1.5])
def test_bad_gpus_values_name_the_field(value):
    raw = {**yaml.safe_load(QUICKSTART.read_text()), "resources": {"cpus": 1, "gpus": value}}
    with pytest.raises(SpecError, match=r"resources\.gpus: .*(auto|at most 1)"):
        validate_spec(raw, "spec.yaml")


def test_the_same_model_on_larger_data_packs_fewer(tmp_path):
    """One measurement per model, one plan per model and data: the data a trial holds on
    the device path counts towards its memory."""
    spec = load_spec(_auto(QUICKSTART, tmp_path, **{"frontend.setting": {"grid": ["A"]},
                                                   "data.clips_per_word": {"grid": [6, 2000]}}))
    configs = plan_sweep(spec).packing_trials
    assert len(configs) == 2 and len({model_key(c) for c in configs}) == 1
    measures = {model_key(configs[0]): StepMeasure(clips_per_s=3_000.0, device="GPU", total_mib=24_000.0,
                                                   peak_mib=1_000.0, busy=0.01)}
    plans = plan_packing(measures, configs)
    per_gpu = {}
    for config in configs:
        plan = plans[packing_key(config)]
        expected = int(USABLE * 24_000 // (1_000 + device_data_mib(config) + CONTEXT_MIB))
        assert plan.per_gpu == expected
        per_gpu[config.data["clips_per_word"]] = plan.per_gpu
    assert per_gpu[2000] < per_gpu[6]
    resources = TrialResources(1.0, plans)
    for trial in plan_trials(spec):
        assert resources(trial.as_dict()).required_resources["GPU"] == gpu_share(per_gpu[trial.data["clips_per_word"]])


def test_trials_packed_onto_gpus_are_not_resumed_where_ray_has_none(ray_session, tmp_path):
    """A sweep started with gpus: auto on GPUs records each model's share; resuming it on
    a Ray without GPUs is refused before Tune starts (it would wait for GPUs forever)."""
    path = _spec(tmp_path, "packed", train__epochs=1, train__optimizer="sgd", failure__max_failures=0,
                 resources={"cpus": 1, "gpus": "auto"}, search={"space": {"train.lr": {"grid": [0.003, 1e30]}}})
    outcome = run_sweep(path, storage=tmp_path / "runs", name="packed")
    assert outcome.exit_code == 1  # the 1e30 trial errored: there is something to resume
    run_file = tmp_path / "runs" / "packed" / RUN_FILE
    info = json.loads(run_file.read_text())
    assert info["gpu_packing"] == []
    # What a start on a GPU would have recorded for this model.
    spec = load_spec(path)
    configs = plan_sweep(spec).packing_trials
    measures = {model_key(c): _gpu_measure(600, 0.2) for c in configs}
    info["gpu_packing"] = packing_record(plan_packing(measures, configs))
    run_file.write_text(json.dumps(info))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*"))
    with pytest.raises(LaunchError, match=r"packed onto GPUs .*up to 0\.1 GPU each.*the Ray here has no GPU"):
        resume_sweep(tmp_path / "runs" / "packed")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*")) == before
    # A damaged record is named, not a traceback.
    # A model key that is a list reached a dict as a key (a TypeError traceback).
    for damaged in ({"model": "x"}, [{"model": "x"}], [{**info["gpu_packing"][0], "gpus": 7}],
                    [{**info["gpu_packing"][0], "model": [1]}], [{**info["gpu_packing"][0], "per_gpu": "x"}]):
        run_file.write_text(json.dumps({**info, "gpu_packing": damaged}))
        with pytest.raises(RunDirError, match=r"specsweep-run\.json: (gpu_packing must be a list of mappings|its gpu_packing record is damaged)"):
            resume_sweep(tmp_path / "runs" / "packed")


def test_kept_measurements_are_per_gpu_type_and_cpus_and_survive_a_damaged_file(tmp_path):
    path = tmp_path / "cache" / MEASURES_FILE
    measure = _gpu_measure(700, 0.3)
    MeasureCache(path, "H100", 1.0).put("model-a", measure)
    assert MeasureCache(path, "H100", 1.0).get("model-a") == measure
    # Another GPU type, another CPU count or another model was not measured.
    assert MeasureCache(path, "A10G", 1.0).get("model-a") is None
    assert MeasureCache(path, "H100", 2.0).get("model-a") is None
    assert MeasureCache(path, "H100", 1.0).get("model-b") is None
    # Entries add up; a damaged file counts as none and is replaced by the next measurement.
    MeasureCache(path, "A10G", 1.0).put("model-a", _gpu_measure(900, 0.5))
    assert MeasureCache(path, "H100", 1.0).get("model-a") == measure
    path.write_text("{not json")
    assert MeasureCache(path, "H100", 1.0).get("model-a") is None
    MeasureCache(path, "H100", 1.0).put("model-a", measure)
    assert MeasureCache(path, "H100", 1.0).get("model-a") == measure
    assert [p.name for p in path.parent.iterdir()] == [MEASURES_FILE]
