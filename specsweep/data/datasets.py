"""Dataset registry: a data config names a dataset; preparing it yields decoded-audio caches.

Preparation (download on request, synthesis of the embedded sets, decoding into the
cache) is idempotent and runs in the sweep driver before any trial starts; trials call
it again, which only finds the caches and memory-maps them.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from specsweep.data import speechcommands
from specsweep.data.cache import CachedAudio, build_cache, default_cache_root
from specsweep.registry import Registry

DATASETS = Registry("dataset")
# Which task each dataset serves, so a spec pairing KWS with a phoneme corpus fails early.
DATASET_TASKS: Dict[str, str] = {}


def _dataset(name: str, task: str):
    DATASET_TASKS[name] = task
    return DATASETS.register(name)


@dataclass(frozen=True)
class PreparedData:
    """What a task needs to know about a prepared dataset.

    ``labels`` are the class names (KWS) or the phoneme symbols (ASR, without the CTC
    blank); ``splits`` maps train/val/test to cache folders; ``clip_samples`` is the
    fixed clip length or None for variable-length utterances.
    """

    task: str
    labels: List[str]
    splits: Dict[str, str]
    sample_rate: int
    clip_samples: Optional[int]

    def dataset(self, split: str) -> CachedAudio:
        return CachedAudio(Path(self.splits[split]))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _cache_speech_commands(root: Path, cache_dir: Optional[str], name: str) -> PreparedData:
    sources = speechcommands.speech_commands_sources(root)
    splits = {
        split: str(build_cache(clips, speechcommands.SAMPLE_RATE, cache_dir and Path(cache_dir),
                               label=f"{name} {split}", description={"root": str(root), "split": split}))
        for split, clips in sources.items()
    }
    return PreparedData("kws", list(speechcommands.CLASSES), splits, speechcommands.SAMPLE_RATE, speechcommands.CLIP_SAMPLES)


@_dataset("speechcommands", "kws")
def speech_commands(root: str, cache_dir: Optional[str] = None, download: bool = False) -> PreparedData:
    """Google Speech Commands v2, 12 classes, from ``root`` (downloaded only if ``download``)."""
    root_path = Path(root).expanduser()
    if download and not (root_path / "testing_list.txt").exists():
        speechcommands.download_speech_commands(root_path)
    return _cache_speech_commands(root_path, cache_dir, "speechcommands")


@_dataset("embedded_kws", "kws")
def embedded_kws(seed: int = 0, clips_per_word: Optional[int] = None, cache_dir: Optional[str] = None) -> PreparedData:
    """The synthesized 12-class keyword set, generated on first use into the cache."""
    from specsweep.data.embedded import ensure_speech_commands

    params = {} if clips_per_word is None else {"clips_per_word": clips_per_word}
    root = ensure_speech_commands(cache_dir and Path(cache_dir), seed=seed, **params)
    return _cache_speech_commands(root, cache_dir, "embedded_kws")


def dataset_param_names(name: str) -> set[str]:
    return set(inspect.signature(DATASETS.get(name)).parameters)


def prepare_dataset(config: Dict[str, Any]) -> PreparedData:
    """Prepare the dataset named by ``config["name"]`` with the rest of ``config`` as arguments."""
    kwargs = {k: v for k, v in config.items() if k != "name"}
    return DATASETS.build(config["name"], **kwargs)


__all__ = ["DATASETS", "DATASET_TASKS", "PreparedData", "prepare_dataset", "dataset_param_names", "default_cache_root"]


def dataset_output_info(config: Dict[str, Any]) -> tuple[int, int]:
    """``(number of labels, clip samples)`` of a dataset config without preparing it,
    for sizing models in ``specsweep inspect``."""
    if DATASET_TASKS[config["name"]] == "kws":
        return len(speechcommands.CLASSES), speechcommands.CLIP_SAMPLES
    return len(phoneme_inventory(config)), 16000


def phoneme_inventory(config: Dict[str, Any]) -> List[str]:
    """Phoneme symbols of an ASR dataset config."""
    if config["name"] == "timit":
        from specsweep.data.timit import PHONES_61

        return list(PHONES_61)
    return prepare_dataset(config).labels
