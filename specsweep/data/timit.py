"""TIMIT phoneme recognition from the LDC layout (licensed: never downloaded).

``ROOT/{TRAIN,TEST}/DR*/<speaker>/<utt>.WAV`` with ``<utt>.PHN`` time-aligned phones.
The original WAVs are NIST SPHERE files and some copies are RIFF; libsndfile (soundfile)
reads both. Two protocols:

* ``"standard"``: the SA sentences are left out (3,696 training utterances), the test set
  is the 24-speaker core test set (192 utterances) and validation uses the other TEST
  speakers; training uses the 61 phones and scoring folds them to 39 (Lee & Hon, 1989),
  the phone error rate summed over the corpus.
* ``"paper"``: the original experiments' protocol (heungky/trainable-STFT-Mel): all 4,620
  TRAIN utterances, SA included, split at random 4,000 / 620 into training and validation;
  all 1,680 TEST utterances for testing; the 61 phones with ``h#`` removed from the
  targets; scoring on the 61 phones, the phone error rate averaged per utterance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import random_split

from specsweep.data.cache import AudioDecodeError, ClipSource
from specsweep.data.speechcommands import DatasetMissingError

PHONES_61 = (
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# hh hv ih ix iy "
    "jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh"
).split()

# Lee & Hon folding to 39 classes; "" removes the glottal stop q from scoring.
FOLD_61_TO_39: Dict[str, str] = {
    **{p: p for p in PHONES_61},
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l", "em": "m",
    "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    **{p: "sil" for p in ("pcl", "tcl", "kcl", "bcl", "dcl", "gcl", "h#", "pau", "epi")},
    "q": "",
}

CORE_TEST_SPEAKERS = frozenset(
    "mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0 fpkt0 mlll0 mtls0 fjlm0 "
    "mbpm0 mklt0 fnlp0 mcmj0 mjdh0 fmgd0 mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0".split()
)
SAMPLE_RATE = 16000
# Utterances per split of the full LDC release under each protocol (TEST has 168 speakers
# with 10 sentences, 2 of them SA; the core test set is 24 of those speakers).
PROTOCOL_SPLIT_SIZES = {
    "standard": {"train": 3696, "val": 1152, "test": 192},
    "paper": {"train": 4000, "val": 620, "test": 1680},
}
# The original's split of the 4,620 TRAIN utterances and the seed of its generator.
PAPER_SPLIT = (PROTOCOL_SPLIT_SIZES["paper"]["train"], PROTOCOL_SPLIT_SIZES["paper"]["val"])
PAPER_SPLIT_SEED = 0
# Start/end silence marker that the paper protocol removes from the targets.
PAPER_DROPPED_PHONES = frozenset({"h#"})


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / name.lower()):
        if candidate.is_dir():
            return candidate
    return None


def read_phn(path: Path) -> List[str]:
    """Phone labels of a ``.PHN`` file (``start end phone`` per line)."""
    phones = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise AudioDecodeError(f"{path}: cannot read this phone label file ({err})") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in FOLD_61_TO_39:
            raise AudioDecodeError(f"{path}:{n}: expected 'start end phone' with a TIMIT phone, got {line!r}")
        phones.append(parts[2])
    return phones


def protocol_scoring(protocol: str) -> Tuple[Optional[Dict[str, str]], str]:
    """``(score_map, per_average)`` of a protocol, as :class:`~specsweep.data.datasets.PreparedData` holds them."""
    return (None, "utterance") if protocol == "paper" else (FOLD_61_TO_39, "corpus")


def paper_split_sizes(n: int) -> Tuple[int, int]:
    """``(train, validation)`` sizes of the paper protocol for ``n`` TRAIN utterances:
    4,000 / 620 for the full 4,620, otherwise the same proportion (training rounded, at
    least one utterance on each side), so that small layouts split like the full corpus.

    Examples
    --------
    >>> paper_split_sizes(4620), paper_split_sizes(12), paper_split_sizes(2)
    ((4000, 620), (10, 2), (1, 1))
    """
    if n < 2:
        raise DatasetMissingError(f"TIMIT: {n} TRAIN utterance(s), the paper protocol needs at least 2 to split")
    train = min(n - 1, max(1, round(n * PAPER_SPLIT[0] / sum(PAPER_SPLIT))))
    return train, n - train


def _split_dirs(root: Path) -> Tuple[Path, Path]:
    train_dir, test_dir = _find(root, "TRAIN"), _find(root, "TEST")
    if train_dir is None or test_dir is None:
        raise DatasetMissingError(
            f"TIMIT not found at {root}: expected TRAIN/ and TEST/ folders of the LDC release (LDC93S1). "
            "TIMIT is licensed and is never downloaded by specsweep; point data.root at your copy."
        )
    return train_dir, test_dir


def _utterances(split_dir: Path, with_sa: bool) -> List[Path]:
    return sorted(p for p in split_dir.rglob("*")
                  if p.suffix.lower() == ".wav" and (with_sa or not p.name.lower().startswith("sa")))


def _clip(wav: Path, drop: frozenset = frozenset()) -> ClipSource:
    phn = next((wav.with_suffix(s) for s in (".PHN", ".phn") if wav.with_suffix(s).exists()), None)
    if phn is None:
        raise DatasetMissingError(f"{wav}: no .PHN transcription beside it")
    return ClipSource(str(wav), tuple(PHONES_61.index(p) for p in read_phn(phn) if p not in drop))


def _check_splits(root: Path, sources: Dict[str, List[ClipSource]]) -> Dict[str, List[ClipSource]]:
    empty = [s for s, v in sources.items() if not v]
    if empty:
        raise DatasetMissingError(f"TIMIT at {root}: no utterances for split(s) {', '.join(empty)}")
    return sources


def timit_sources(root: Path, protocol: str = "standard") -> Dict[str, List[ClipSource]]:
    """Clip sources per split with targets as indices into :data:`PHONES_61`.

    Parameters
    ----------
    root : Path
        The LDC release, with ``TRAIN/`` and ``TEST/`` (either case).
    protocol : {"standard", "paper"}
        ``"paper"`` takes every TRAIN utterance, SA included, in sorted path order and
        splits them like ``torch.utils.data.random_split(utterances,
        [4000, 620], generator=torch.Generator().manual_seed(0))``, as the original did
        (with fewer than 4,620 utterances, in the proportion of :func:`paper_split_sizes`;
        the original ordered its utterances by its own file walk, so the same sizes
        need not pick the same utterances); the test split is every TEST utterance and
        ``h#`` is removed from all targets. ``"standard"`` is described in the module
        docstring.
    """
    root = Path(root).expanduser()
    train_dir, test_dir = _split_dirs(root)
    if protocol == "paper":
        train_clips = [_clip(w, PAPER_DROPPED_PHONES) for w in _utterances(train_dir, with_sa=True)]
        generator = torch.Generator().manual_seed(PAPER_SPLIT_SEED)
        train, val = random_split(range(len(train_clips)), paper_split_sizes(len(train_clips)), generator=generator)
        return _check_splits(root, {
            "train": _subset(train_clips, train.indices),
            "val": _subset(train_clips, val.indices),
            "test": [_clip(w, PAPER_DROPPED_PHONES) for w in _utterances(test_dir, with_sa=True)],
        })
    sources: Dict[str, List[ClipSource]] = {"train": [], "val": [], "test": []}
    sources["train"] = [_clip(w) for w in _utterances(train_dir, with_sa=False)]
    for wav in _utterances(test_dir, with_sa=False):
        sources["test" if wav.parent.name.lower() in CORE_TEST_SPEAKERS else "val"].append(_clip(wav))
    return _check_splits(root, sources)


def _subset(clips: List[ClipSource], indices: Sequence[int]) -> List[ClipSource]:
    return [clips[i] for i in indices]
