"""Every registered dataset describes itself as it prepares, and every task assembles with
every front-end and backbone: a new registration is covered here or fails here."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import torch

from specsweep.assembly import build_model_for, build_task, model_footprint_for
from specsweep.backbones import BACKBONES
from specsweep.data.datasets import DATASETS, PreparedData, dataset_task, describe_dataset, prepare_dataset
from specsweep.frontends import FRONTENDS
from specsweep.spec import ModelConfig, TrialConfig
from specsweep.tasks import TASKS, get_task
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
