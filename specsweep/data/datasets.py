"""Dataset registry: a data config names a dataset; preparing it yields decoded-audio caches.

Preparation (download on request, synthesis of the embedded sets, decoding into the
cache) is idempotent and runs in the sweep driver before any trial starts; trials call
it again, which only finds the caches and memory-maps them.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Dict, List, Literal, Optional, Union

from pydantic import Field

from specsweep.contract import Seed
from specsweep.data import speechcommands
from specsweep.data.cache import CachedAudio, ClipSource, build_cache, default_cache_root
from specsweep.registry import Registry

# A total (train, valid and test are split from it) or the three counts. The bounds are
# TIMIT's scale: describing the corpus phonemizes every planned utterance (about 1 s per 800).
MAX_UTTERANCES_PER_SPLIT = 5_000
UtteranceCounts = Union[Annotated[int, Field(ge=3, le=3 * MAX_UTTERANCES_PER_SPLIT)],
                        Annotated[List[Annotated[int, Field(ge=1, le=MAX_UTTERANCES_PER_SPLIT)]],
                                  Field(min_length=3, max_length=3)]]
# Speech Commands v2 has at most about 4,000 clips of a keyword.
ClipsPerWord = Annotated[int, Field(ge=1, le=10_000)]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, known without preparing it.

    ``labels`` are the class names (KWS) or phoneme symbols (ASR, no CTC blank);
    ``clip_samples`` is the fixed clip length or None for variable-length utterances;
    ``split_sizes`` counts the clips (utterances) of train, val and test, None where a
    count is only known once the data is read; ``score_map`` and ``per_average`` are the
    scoring of the dataset's protocol (see :class:`PreparedData`).
    """

    task: str
    labels: List[str]
    sample_rate: int
    clip_samples: Optional[int]
    split_sizes: Dict[str, Optional[int]]
    score_map: Optional[Dict[str, str]] = None
    per_average: Literal["corpus", "utterance"] = "corpus"

    @property
    def nominal_samples(self) -> int:
        """The clip length that sizes models: the fixed one, or one second of variable-length
        utterances (where backbones depend on the number of bins only)."""
        return self.clip_samples or self.sample_rate


@dataclass(frozen=True)
class DatasetEntry:
    """What a registered dataset is, beside its builder (which prepares the data; its
    arguments are the spec's ``data`` keys).

    Parameters
    ----------
    task : str
        The task the dataset serves, whatever its arguments: a spec pairing keyword spotting
        with a phoneme corpus fails before anything is described or prepared.
    describe : callable
        Takes any of the builder's arguments and returns the :class:`DatasetInfo` of the data
        without preparing it (see :func:`describe_dataset`).
    """

    task: str
    describe: Callable[..., DatasetInfo]


DATASETS = Registry("dataset", about=DatasetEntry)


@dataclass(frozen=True)
class PreparedData:
    """What a task needs to know about a prepared dataset.

    ``labels`` are the class names (KWS) or the phoneme symbols (ASR, without the CTC
    blank); ``splits`` maps train/val/test to cache folders; ``clip_samples`` is the
    fixed clip length or None for variable-length utterances.

    The scoring facts of the dataset's protocol, for ASR: ``score_map`` maps each label to
    the symbol it is scored as ("" drops it; None scores the labels as they are), and
    ``per_average`` says how phone error rates of utterances combine: ``"corpus"`` (summed
    edits over summed reference lengths) or ``"utterance"`` (mean over utterances of edits
    over reference length).
    """

    task: str
    labels: List[str]
    splits: Dict[str, str]
    sample_rate: int
    clip_samples: Optional[int]
    score_map: Optional[Dict[str, str]] = None
    per_average: Literal["corpus", "utterance"] = "corpus"

    def dataset(self, split: str) -> CachedAudio:
        return CachedAudio(Path(self.splits[split]))

    @property
    def nominal_samples(self) -> int:
        """As :attr:`DatasetInfo.nominal_samples`."""
        return self.clip_samples or self.sample_rate

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_info(cls, info: DatasetInfo, splits: Dict[str, str]) -> "PreparedData":
        """The prepared splits of the dataset ``info`` describes."""
        return cls(info.task, list(info.labels), splits, info.sample_rate, info.clip_samples,
                   score_map=info.score_map, per_average=info.per_average)


def _cache_speech_commands(sources: Dict[str, List[ClipSource]], root: Path, cache_dir: Optional[str],
                           name: str, info: DatasetInfo) -> PreparedData:
    return PreparedData.from_info(info, cache_splits(sources, info.sample_rate, cache_dir, name, root))


def _describe_speech_commands(test_set: str = "list", silence: str = "spans", **_: Any) -> DatasetInfo:
    # The word splits of arXiv:1804.03209; the silence each split adds is counted once cut.
    test = speechcommands.TEST_ARCHIVE_CLIPS if test_set == "archive" else None
    return DatasetInfo("kws", list(speechcommands.CLASSES), speechcommands.SAMPLE_RATE, speechcommands.CLIP_SAMPLES,
                       {"train": SPEECH_COMMANDS_TRAIN_CLIPS, "val": None, "test": test})


@DATASETS.register("speechcommands", task="kws", describe=_describe_speech_commands)
def speech_commands(
    root: str,
    cache_dir: Optional[str] = None,
    download: bool = False,
    test_set: Literal["list", "archive"] = "list",
    test_root: Optional[str] = None,
    silence: Literal["spans", "paper"] = "spans",
) -> PreparedData:
    """Google Speech Commands v2, 12 classes, from ``root`` (downloaded only if ``download``).

    Parameters
    ----------
    root : str
        The extracted ``speech_commands_v0.02`` archive.
    cache_dir : str, optional
    download : bool
        Fetch the archives that are missing (the test archive too when ``test_set`` is
        ``"archive"``), each verified against its published SHA-256.
    test_set : {"list", "archive"}
        ``"list"``: test on the ``testing_list.txt`` clips of ``root`` plus silence sliced
        from its noise files. ``"archive"``: test on the separate archive
        ``speech_commands_test_set_v0.02`` (4,890 clips, balanced over the 12 classes), as
        the original experiments did. Training never sees ``testing_list.txt`` clips.
    test_root : str, optional
        The extracted test archive; by default ``root/speech_commands_test_set_v0.02``.
    silence : {"spans", "paper"}
        How ``_silence_`` clips are cut from the noise files (see
        :func:`~specsweep.data.speechcommands.speech_commands_sources`); ``"paper"`` is the
        original experiments' (every half second; validation from ``running_tap.wav``).
    """
    root_path = Path(root).expanduser()
    if download and not (root_path / "testing_list.txt").exists():
        speechcommands.download_speech_commands(root_path)
    archive_root = None
    if test_set == "archive":
        archive_root = Path(test_root).expanduser() if test_root else speechcommands.default_test_root(root_path)
        if download and not speechcommands.archive_present(archive_root):
            speechcommands.download_test_archive(archive_root, root_path)
    sources = speechcommands.speech_commands_sources(root_path, test_root=archive_root, silence=silence)
    return _cache_speech_commands(sources, root_path, cache_dir, "speechcommands",
                                  _describe_speech_commands(test_set=test_set, silence=silence))


def _describe_embedded_kws(seed: Seed = 0, clips_per_word: Optional[int] = None, **_: Any) -> DatasetInfo:
    from specsweep.data.embedded.keywords import speech_commands_split_clips

    sizes = speech_commands_split_clips(seed, **({} if clips_per_word is None else {"clips_per_word": clips_per_word}))
    return DatasetInfo("kws", list(speechcommands.CLASSES), speechcommands.SAMPLE_RATE, speechcommands.CLIP_SAMPLES,
                       dict(sizes))


@DATASETS.register("embedded_kws", task="kws", describe=_describe_embedded_kws)
def embedded_kws(seed: Seed = 0, clips_per_word: Optional[ClipsPerWord] = None, cache_dir: Optional[str] = None,
                 test_set: Literal["list", "archive"] = "list") -> PreparedData:
    """The synthesized 12-class keyword set, generated on first use into the cache.

    ``test_set: archive`` rewrites its test split in the layout of the Speech Commands test
    archive (:func:`specsweep.data.speechcommands.write_archive_layout`) and tests on that:
    the same clips, read as ``speechcommands`` reads the archive.
    """
    from specsweep.data.embedded.keywords import ensure_speech_commands

    params = {} if clips_per_word is None else {"clips_per_word": clips_per_word}
    root = ensure_speech_commands(cache_dir and Path(cache_dir), seed=seed, **params)
    test_root = None
    if test_set == "archive":
        test_root = speechcommands.write_archive_layout(root, speechcommands.default_test_root(root))
    sources = speechcommands.speech_commands_sources(root, test_root=test_root)
    return _cache_speech_commands(sources, root, cache_dir, "embedded_kws", _describe_embedded_kws(seed, clips_per_word))


def cache_splits(sources: Dict[str, List[ClipSource]], sample_rate: int, cache_dir: Optional[str], name: str,
                 root: Path) -> Dict[str, str]:
    """Each split's clips decoded into the cache (built once, then found): the ``splits``
    of a :class:`PreparedData`."""
    return {
        split: str(build_cache(clips, sample_rate, cache_dir and Path(cache_dir), label=f"{name} {split}",
                               description={"root": str(root), "split": split}))
        for split, clips in sources.items()
    }


def _describe_timit(protocol: str = "standard", **_: Any) -> DatasetInfo:
    from specsweep.data import timit as timit_layout

    score_map, per_average = timit_layout.protocol_scoring(protocol)
    return DatasetInfo("asr", list(timit_layout.PHONES_61), timit_layout.SAMPLE_RATE, None,
                       dict(timit_layout.PROTOCOL_SPLIT_SIZES[protocol]), score_map=score_map,
                       per_average=per_average)  # type: ignore[arg-type]


@DATASETS.register("timit", task="asr", describe=_describe_timit)
def timit(root: str, cache_dir: Optional[str] = None, protocol: Literal["standard", "paper"] = "standard") -> PreparedData:
    """TIMIT phoneme recognition; ``protocol`` picks splits, targets and scoring.

    ``"standard"``: SA sentences left out, 3,696 training utterances, the 24-speaker core
    test set, validation from the other TEST speakers, 61 phones for training, scored
    folded to 39 phones with the corpus phone error rate. ``"paper"``: the original
    experiments' protocol, see :func:`specsweep.data.timit.timit_sources`, scored on the 61
    phones with the phone error rate averaged per utterance.
    """
    from specsweep.data import timit as timit_layout

    root_path = Path(root).expanduser()
    info = _describe_timit(protocol)
    sources = timit_layout.timit_sources(root_path, protocol)
    return PreparedData.from_info(info, cache_splits(sources, info.sample_rate, cache_dir, f"timit ({protocol})", root_path))


def phoneme_corpus_sources(root: Path) -> tuple[List[str], Dict[str, List[ClipSource]]]:
    """The embedded phoneme corpus layout: ``{train,valid,test}/<utt>.wav`` beside
    ``<utt>.phn.txt`` (space-separated symbols) and ``phonemes.txt`` (the inventory)."""
    inventory = (root / "phonemes.txt").read_text().split()
    index = {p: i for i, p in enumerate(inventory)}
    sources: Dict[str, List[ClipSource]] = {}
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        clips = []
        for wav in sorted((root / folder).glob("*.wav")):
            symbols = wav.with_suffix(".phn.txt").read_text().split()
            unknown = [s for s in symbols if s not in index]
            if unknown:
                raise ValueError(f"{wav.with_suffix('.phn.txt')}: symbols {unknown} missing from phonemes.txt")
            clips.append(ClipSource(str(wav), tuple(index[s] for s in symbols)))
        sources[split] = clips
    return inventory, sources


def _describe_embedded_phonemes(seed: Seed = 0, n_utterances: Optional[UtteranceCounts] = None,
                                **_: Any) -> DatasetInfo:
    from specsweep.data.embedded.phonemes import phoneme_corpus_inventory, phoneme_corpus_split_sizes

    params = {} if n_utterances is None else {"n_utterances": n_utterances}
    return DatasetInfo("asr", phoneme_corpus_inventory(seed, **params), 16000, None,
                       dict(zip(("train", "val", "test"), phoneme_corpus_split_sizes(seed, **params))))


@DATASETS.register("embedded_phonemes", task="asr", describe=_describe_embedded_phonemes)
def embedded_phonemes(seed: Seed = 0, n_utterances: Optional[UtteranceCounts] = None, cache_dir: Optional[str] = None) -> PreparedData:
    """The synthesized phoneme-recognition set, generated on first use into the cache."""
    from specsweep.data.embedded.phonemes import ensure_phoneme_corpus

    params = {} if n_utterances is None else {"n_utterances": n_utterances}
    root = ensure_phoneme_corpus(cache_dir and Path(cache_dir), seed=seed, **params)
    inventory, sources = phoneme_corpus_sources(root)
    return PreparedData("asr", inventory, cache_splits(sources, 16000, cache_dir, "embedded_phonemes", root), 16000, None)


def dataset_param_names(name: str) -> set[str]:
    return set(inspect.signature(DATASETS.get(name)).parameters)


class DatasetConfigError(ValueError):
    """A dataset argument has a value the dataset does not accept."""


def dataset_config_problems(config: Dict[str, Any]) -> List[str]:
    """Problems of a data config found without preparing the dataset, one message per
    problem: missing required arguments and values outside fixed choices (``Literal``
    arguments)."""
    builder = DATASETS.get(config["name"])
    hints = typing.get_type_hints(builder)
    problems = [f"data.{name}: missing; dataset {config['name']!r} needs it"
                for name, param in inspect.signature(builder).parameters.items()
                if param.default is inspect.Parameter.empty and name not in config]
    for key, value in config.items():
        hint = hints.get(key)
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            allowed = ", ".join(str(a) for a in typing.get_args(hint))
            problems.append(f"data.{key}: {value!r} is not allowed for dataset {config['name']!r}; allowed: {allowed}")
    return problems


def prepare_dataset(config: Dict[str, Any]) -> PreparedData:
    """Prepare the dataset named by ``config["name"]`` with the rest of ``config`` as arguments."""
    problems = dataset_config_problems(config)
    if problems:
        raise DatasetConfigError("\n".join(problems))
    kwargs = {k: v for k, v in config.items() if k != "name"}
    try:
        return DATASETS.build(config["name"], **kwargs)
    except OSError as err:
        if err.filename is None:
            raise
        # A file where a folder belongs (SPECSWEEP_CACHE, data.cache_dir or a dataset root),
        # a folder that cannot be written, a name too long, a symlink loop.
        raise DatasetConfigError(f"data ({config['name']}): {err.strerror or err}: {err.filename!r} (the dataset cache "
                                 f"is SPECSWEEP_CACHE or data.cache_dir, default ~/.cache/specsweep: a folder this user "
                                 f"can write)") from None


def prepare_dataset_once(config: Dict[str, Any]) -> PreparedData:
    """:func:`prepare_dataset`, once per process for each data config and cache location
    (``SPECSWEEP_CACHE``, which the config does not name). Finding a prepared dataset's
    caches again walks the corpus and stats every clip (about 106k for Speech Commands);
    Tune reuses a trial's process for the next trial, and a launch asks for the same data
    more than once."""
    return _prepared_once(json.dumps(config, sort_keys=True, default=str), str(default_cache_root()))


@functools.lru_cache(maxsize=8)
def _prepared_once(config_json: str, cache_root: str) -> PreparedData:
    return prepare_dataset(json.loads(config_json))


def describe_dataset(config: Dict[str, Any]) -> DatasetInfo:
    """What the dataset of a valid data config is, without downloading, synthesizing or
    decoding anything.

    Examples
    --------
    >>> info = describe_dataset({"name": "timit", "root": "/nowhere", "protocol": "paper"})
    >>> info.task, len(info.labels), info.split_sizes["train"], info.per_average
    ('asr', 61, 4000, 'utterance')
    """
    return _described(json.dumps(config, sort_keys=True, default=str))


@functools.lru_cache(maxsize=64)
def _described(config_json: str) -> DatasetInfo:
    # Spec validation describes the data once per search value: the embedded phoneme
    # corpus's inventory takes a second to phonemize.
    config = json.loads(config_json)
    return DATASETS.about(config["name"]).describe(**{k: v for k, v in config.items() if k != "name"})


def dataset_task(name: str) -> str:
    """The task the dataset registered as ``name`` serves (its description's, for any arguments)."""
    return DATASETS.about(name).task


# The word clips of Speech Commands v0.02 outside validation_list.txt and testing_list.txt
# (the split of arXiv:1804.03209: 84,843 / 9,981 / 11,005), plus _silence_ clips as many as
# the average keyword: 30,769 train clips of the 10 keywords // 10 = 3,076.
# With silence: paper the training silence is the noise files cut every half second instead
# (about 5.6 minutes of noise: some 670 clips), within 3 % of this figure.
SPEECH_COMMANDS_TRAIN_CLIPS = 84_843 + 3_076


def declared_train_clips(config: Dict[str, Any]) -> Optional[int]:
    """Training clips per epoch of a data config from its description; None when the size
    cannot be known in advance."""
    return describe_dataset(config).split_sizes.get("train")


__all__ = ["DATASETS", "cache_splits", "DatasetConfigError", "DatasetEntry", "DatasetInfo", "PreparedData", "dataset_config_problems",
           "dataset_param_names", "dataset_task", "declared_train_clips", "default_cache_root", "describe_dataset",
           "prepare_dataset", "prepare_dataset_once"]
