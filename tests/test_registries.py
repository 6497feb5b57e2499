"""Every registered dataset describes itself as it prepares, and every task assembles with
every front-end and backbone: a new registration is covered here or fails here. Every
component registers the one way, and a bad registration fails naming it."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import re
from pathlib import Path
from typing import Any, Callable, Dict, Literal

import pytest
import torch
from pydantic import BaseModel

from specsweep.assembly import build_model_for, build_task, model_footprint_for
from specsweep.backbones import BACKBONES
from specsweep.data.datasets import DATASETS, DatasetEntry, PreparedData, dataset_task, describe_dataset, prepare_dataset
from specsweep.frontends import FRONTENDS
from specsweep.recipes import RECIPES, Recipe
from specsweep.registry import NoDescription, RegistrationError, Registry
from specsweep.search import SCHEDULERS, SEARCHERS, SchedulerChecks, SearchRules, scheduler_problems, search_rules
from specsweep.spec import ModelConfig, TrialConfig
from specsweep.tasks import TASKS, Task, get_task
from specsweep.trainables.tasks import SpeechTask
from test_timit import timit_tree  # noqa: F401  (a fixture, shared with the TIMIT tests)

# A data config of each registered dataset that can be prepared here; the embedded sets are
# synthesized into the suite's shared cache. Sizes are compared where the arguments set them.
DATA_CONFIGS: Dict[str, Callable[[Dict[str, Path]], Dict[str, Any]]] = {
    "speechcommands": lambda trees: {"name": "speechcommands", "root": str(trees["speechcommands"])},
    "timit": lambda trees: {"name": "timit", "root": str(trees["timit"])},
    "embedded_kws": lambda trees: {"name": "embedded_kws", "clips_per_word": 6},
    "embedded_phonemes": lambda trees: {"name": "embedded_phonemes", "n_utterances": [6, 2, 2]},
}
SIZES_FROM_ARGUMENTS = {"embedded_kws", "embedded_phonemes"}


def test_every_dataset_is_covered_here():
    assert sorted(DATA_CONFIGS) == DATASETS.names()


@pytest.mark.parametrize("name", DATASETS.names())
def test_a_dataset_describes_itself_as_it_prepares(name, speech_commands_tree, timit_tree):  # noqa: F811
    config = DATA_CONFIGS[name]({"speechcommands": speech_commands_tree, "timit": timit_tree})
    info = describe_dataset(config)
    prepared = prepare_dataset(config)
    assert info.task == prepared.task == dataset_task(name)
    assert list(info.labels) == list(prepared.labels)
    assert (info.sample_rate, info.clip_samples) == (prepared.sample_rate, prepared.clip_samples)
    assert (info.score_map, info.per_average) == (prepared.score_map, prepared.per_average)
    assert set(info.split_sizes) == set(prepared.splits) == {"train", "val", "test"}
    if name in SIZES_FROM_ARGUMENTS:
        assert info.split_sizes == {split: len(prepared.dataset(split)) for split in prepared.splits}


def test_describing_prepares_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECSWEEP_CACHE", str(tmp_path / "cache"))
    for config in ({"name": "embedded_kws", "clips_per_word": 3}, {"name": "embedded_phonemes", "n_utterances": 9},
                   {"name": "speechcommands", "root": str(tmp_path / "absent")},
                   {"name": "timit", "root": str(tmp_path / "absent"), "protocol": "paper"}):
        assert describe_dataset(config).labels
    assert not (tmp_path / "cache").exists() and not (tmp_path / "absent").exists()


def _described(task: str):
    # The cheapest dataset of the task to describe: the real corpora need no files for it.
    name = next(n for n in ("speechcommands", "timit") if dataset_task(n) == task)
    return describe_dataset({"name": name, "root": "/nowhere"})


@pytest.mark.parametrize("task, frontend, backbone",
                         list(itertools.product(TASKS.names(), FRONTENDS.names(), BACKBONES.names())))
def test_every_task_assembles_with_every_frontend_and_backbone(task, frontend, backbone):
    info = get_task(task)
    data = _described(task)
    model_config = ModelConfig(task=task, frontend={"name": frontend, "setting": "D", "n_mels": 16},
                               backbone={"name": backbone})
    model = build_model_for(model_config, data)
    assert model_footprint_for(model_config, data).trainable == model.trainable_parameter_counts()
    out = model(torch.randn(2, data.nominal_samples))
    outputs = info.num_outputs(len(data.labels))
    assert out.shape[0] == 2 and out.shape[-1] == outputs
    assert out.dim() == (2 if info.head == "utterance" else 3)

    trial = TrialConfig(task=task, data={"name": "x"}, frontend=model_config.frontend, backbone=model_config.backbone)
    module = build_task(trial, PreparedData.from_info(data, {}))
    assert isinstance(module, SpeechTask) and module(torch.randn(2, data.nominal_samples)).shape[-1] == outputs
    assert module.labels == list(data.labels)


REGISTRIES = {"frontend": (FRONTENDS, NoDescription), "backbone": (BACKBONES, NoDescription),
              "dataset": (DATASETS, DatasetEntry), "task": (TASKS, Task), "recipe": (RECIPES, Recipe),
              "searcher": (SEARCHERS, SearchRules), "scheduler": (SCHEDULERS, SchedulerChecks)}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_component_is_registered_the_one_way(kind):
    """Each entry is a class or builder function with a description of its registry's type:
    nothing registered as an instance, nothing described outside its registration."""
    registry, about = REGISTRIES[kind]
    assert registry.kind == kind and registry.about_type is about and registry.names()
    for name in registry:
        definition = registry.get(name)
        assert inspect.isclass(definition) or inspect.isfunction(definition), (name, definition)
        assert type(registry.about(name)) is about
        assert vars(definition).keys() & {"rules", "problems"} == set(), f"{kind} {name}: described by an attribute"


def test_descriptions_answer_the_helpers():
    """The public helpers read the registrations' descriptions."""
    assert [dataset_task(name) for name in DATASETS] == [DATASETS.about(name).task for name in DATASETS]
    assert search_rules("grid") == SearchRules(sampled=False) and search_rules("random") == SearchRules()
    assert scheduler_problems("fifo", None, 3) == [] and SCHEDULERS.about("asha").problems is not None
    assert get_task("asr") is TASKS.about("asr") and get_task("asr").name == "asr"
    assert RECIPES.about("paper").paper_protocol and not RECIPES.about("quick").paper_protocol


@pytest.mark.parametrize("registry, name, description, message", [
    (SEARCHERS, "grid_plus", {"grids": False},
     "searcher 'grid_plus': unknown description key 'grids'; allowed: grid, sampled, several_seeds"),
    (DATASETS, "in_house", {"task": "kws"}, "dataset 'in_house': description key 'describe' missing"),
    (FRONTENDS, "bands", {"summary": "equal bands"}, "frontend 'bands': unknown description key 'summary'; allowed: none"),
    (TASKS, "kws2", {"name": "kws"}, "task 'kws2': unknown description key 'name'; allowed: head, extra_outputs"),
])
def test_a_description_the_registry_does_not_take_fails_naming_the_component(registry, name, description, message):
    with pytest.raises(RegistrationError, match=re.escape(message)):
        registry.register(name, **description)(lambda: None)
    assert name not in registry


def test_a_name_registered_twice_fails_and_keeps_the_first():
    first = SCHEDULERS.get("fifo")
    with pytest.raises(RegistrationError, match=r"scheduler 'fifo' is registered twice: by specsweep\.search\."
                                                r"fifo_scheduler and by test_registries\."):
        @SCHEDULERS.register("fifo")
        def another_fifo(config, max_t):
            return None
    assert SCHEDULERS.get("fifo") is first


def test_a_module_with_a_bad_registration_fails_at_import(tmp_path):
    source = tmp_path / "extra_searchers.py"
    source.write_text("from specsweep.search import SEARCHERS\n\n\n"
                      "@SEARCHERS.register('hyperband_like', several_seed=False)\n"
                      "def hyperband_like(config, metric, mode, seed):\n    return None\n")
    spec = importlib.util.spec_from_file_location("extra_searchers", source)
    with pytest.raises(RegistrationError, match="searcher 'hyperband_like': unknown description key 'several_seed'"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "hyperband_like" not in SEARCHERS


def test_a_pydantic_description_checks_its_values():
    class Corpus(BaseModel):
        task: Literal["kws", "asr"]
        hours: float = 1.0

    corpora = Registry("corpus", about=Corpus)

    @corpora.register("short", task="kws", hours=0.5)
    def short() -> str:
        return "short"

    assert corpora.about("short") == Corpus(task="kws", hours=0.5) and corpora.build("short") == "short"
    with pytest.raises(RegistrationError, match="corpus 'long': 1 validation error for Corpus\ntask"):
        corpora.register("long", task="tts")(short)
    assert corpora.names() == ["short"]
