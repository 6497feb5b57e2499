"""TIMIT phoneme recognition from the LDC layout (licensed: never downloaded).

``ROOT/{TRAIN,TEST}/DR*/<speaker>/<utt>.WAV`` with ``<utt>.PHN`` time-aligned phones.
The original WAVs are NIST SPHERE files and some copies are RIFF; libsndfile (soundfile)
reads both. Training uses the 61 phones; scoring folds them to 39 (Lee & Hon, 1989).
The SA sentences are left out, the test set is the 24-speaker core test set, and
validation uses the other TEST speakers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from specsweep.data.cache import ClipSource
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


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / name.lower()):
        if candidate.is_dir():
            return candidate
    return None


def read_phn(path: Path) -> List[str]:
    """Phone labels of a ``.PHN`` file (``start end phone`` per line)."""
    phones = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in FOLD_61_TO_39:
            raise ValueError(f"{path}:{n}: expected 'start end phone' with a TIMIT phone, got {line!r}")
        phones.append(parts[2])
    return phones


def timit_sources(root: Path) -> Dict[str, List[ClipSource]]:
    """Clip sources per split with targets as indices into :data:`PHONES_61`."""
    root = Path(root).expanduser()
    train_dir, test_dir = _find(root, "TRAIN"), _find(root, "TEST")
    if train_dir is None or test_dir is None:
        raise DatasetMissingError(
            f"TIMIT not found at {root}: expected TRAIN/ and TEST/ folders of the LDC release (LDC93S1). "
            "TIMIT is licensed and is never downloaded by specsweep; point data.root at your copy."
        )
    index = {p: i for i, p in enumerate(PHONES_61)}
    sources: Dict[str, List[ClipSource]] = {"train": [], "val": [], "test": []}
    for split_dir, is_train in ((train_dir, True), (test_dir, False)):
        wavs = sorted(p for p in split_dir.rglob("*") if p.suffix.lower() == ".wav" and not p.name.lower().startswith("sa"))
        for wav in wavs:
            phn = next((wav.with_suffix(s) for s in (".PHN", ".phn") if wav.with_suffix(s).exists()), None)
            if phn is None:
                raise DatasetMissingError(f"{wav}: no .PHN transcription beside it")
            speaker = wav.parent.name.lower()
            split = "train" if is_train else "test" if speaker in CORE_TEST_SPEAKERS else "val"
            sources[split].append(ClipSource(str(wav), tuple(index[p] for p in read_phn(phn))))
    empty = [s for s, v in sources.items() if not v]
    if empty:
        raise DatasetMissingError(f"TIMIT at {root}: no utterances for split(s) {', '.join(empty)}")
    return sources
