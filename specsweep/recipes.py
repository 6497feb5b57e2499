"""Training recipes: named presets of a spec's training values and dataset protocol.

A spec names one with ``recipe:``; the preset fills whatever the spec leaves out, and every
value the spec gives wins, so a paper spec can change one value and keep the rest. A recipe
is a registered builder from a task's name to its preset, because the study trained keyword
spotting and phoneme recognition differently; its :class:`Recipe` description says what it is.

``paper`` is the protocol of the trainable-STFT-Mel study (heungky/trainable-STFT-Mel; the
facts are listed in docs/protocol.md). ``quick`` is specsweep's short recipe for CPU
machines and demonstrations: not the paper's protocol.

Examples
--------
>>> RECIPES.build("paper", task="kws")["train"]["optimizer"]
'sgd'
>>> asr = RECIPES.build("paper", task="asr")["train"]
>>> asr["test_weights"], asr["best_by"]
('best', 'val_loss')
>>> apply_recipe({"recipe": "paper", "task": "kws", "train": {"epochs": 3},
...               "data": {"name": "speechcommands", "root": "x"}})["train"]["epochs"]
3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from specsweep.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """The description of a registered recipe, whose builder takes a task's name and returns
    its presets: ``{"train": values, "data": {dataset name: values}}`` (data values apply
    only when the spec's ``data.name`` is that dataset).

    Parameters
    ----------
    description : str
        What the recipe is, in a few words (reports name it).
    paper_protocol : bool
        Whether it is the original study's protocol (study reports note runs whose recipe is not).
    """

    description: str
    paper_protocol: bool


RECIPES = Registry("recipe", about=Recipe)


def _presets(task: str, train: Dict[str, Dict[str, Any]],
             data: Optional[Dict[str, Dict[str, Dict[str, Any]]]] = None) -> Dict[str, Any]:
    """A recipe's presets of ``task`` from its ``train`` and ``data`` values per task."""
    return {"train": train.get(task, {}), "data": (data or {}).get(task, {})}


@RECIPES.register("paper", description="the trainable-STFT-Mel study's protocol", paper_protocol=True)
def paper(task: str) -> Dict[str, Any]:
    """The study's training per task and its dataset protocols."""
    return _presets(task, train={
        # SGD at one rate for front-end and backbone, no schedule; the last epoch's weights are tested.
        "kws": {"optimizer": "sgd", "lr": 1e-3, "frontend_lr": None, "momentum": 0.9, "weight_decay": 1e-3,
                "schedule": "constant", "warmup_epochs": 0.0, "epochs": 200, "batch_size": 100,
                "eval_batch_size": 100, "test_weights": "last", "best_by": None,
                "balance_classes": False,
                "class_weights": {"_silence_": 4.6, "_unknown_": 1 / 17}, "drop_last": False},
        # Adam, constant rate; tested with the weights of the best validation CTC loss, one utterance at a time.
        # Its loader never shuffled (the split's order every epoch), and its collate gave the CTC loss
        # samples // hop - 1 frames per utterance: two fewer than its centred STFT has.
        "asr": {"optimizer": "adam", "lr": 1e-3, "frontend_lr": None, "weight_decay": 0.0,
                "schedule": "constant", "warmup_epochs": 0.0, "epochs": 400, "batch_size": 16,
                "eval_batch_size": 1, "test_weights": "best", "best_by": "val_loss",
                "shuffle": False, "drop_last": False, "ctc_drop_frames": 2},
    }, data={
        "kws": {"speechcommands": {"test_set": "archive", "silence": "paper"}},
        "asr": {"timit": {"protocol": "paper"}},
    })


@RECIPES.register("quick", description="specsweep's short CPU recipe, not the paper's protocol", paper_protocol=False)
def quick(task: str) -> Dict[str, Any]:
    """Short training per task, for CPU machines and demonstrations."""
    return _presets(task, train={
        # Adam at a high rate with a cosine schedule trains BC-ResNet-1 in a dozen epochs; the
        # front-end's bases (Mel weights of 0.002-0.013) get a rate small enough to stay filters.
        "kws": {"optimizer": "adam", "lr": 0.02, "frontend_lr": 2e-5, "weight_decay": 0.0,
                "schedule": "cosine", "warmup_epochs": 1.0, "epochs": 12, "batch_size": 32,
                "test_weights": "best", "best_by": None, "balance_classes": True},
        "asr": {"optimizer": "adam", "lr": 3e-3, "frontend_lr": 2e-5, "weight_decay": 0.0,
                "schedule": "cosine", "warmup_epochs": 1.0, "epochs": 30, "batch_size": 16,
                "test_weights": "best", "best_by": None},
    })


def _fill(preset: Mapping[str, Any], given: Mapping[str, Any]) -> Dict[str, Any]:
    """``given`` with ``preset``'s keys added where absent (one level: training values)."""
    return {**preset, **given}


def apply_recipe(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A raw spec with its recipe's presets filled in under the values it gives.

    Unknown recipe names and malformed sections are left for validation to report.
    """
    name = raw.get("recipe")
    task = raw.get("task")
    if not isinstance(name, str) or name not in RECIPES or not isinstance(task, str):
        return raw
    preset = RECIPES.build(name, task=task)
    out = dict(raw)
    train = raw.get("train", {})
    if isinstance(train, Mapping):
        out["train"] = _fill(preset["train"], train)
    data = raw.get("data")
    if isinstance(data, Mapping) and isinstance(data.get("name"), str):
        out["data"] = _fill(preset["data"].get(data["name"], {}), data)
    return out
