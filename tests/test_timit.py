"""TIMIT loader on a small LDC-layout tree with NIST SPHERE and RIFF WAVs."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

from specsweep.data.cache import CachedAudio
from specsweep.data.datasets import prepare_dataset
from specsweep.data.speechcommands import DatasetMissingError
from specsweep.data.timit import FOLD_61_TO_39, PHONES_61, timit_sources
from specsweep.trainables.tasks import ASRTask

PHONES = ["h#", "sh", "ix", "hv", "eh", "dcl", "jh", "q", "ao", "h#"]


def _utterance(folder: Path, name: str, sphere: bool, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    audio = (np.random.default_rng(seed).standard_normal(8000) * 3000).astype(np.int16)
    if sphere:
        soundfile.write(folder / f"{name}.WAV", audio, 16000, format="NIST", subtype="PCM_16")
    else:
        soundfile.write(folder / f"{name}.WAV", audio, 16000, format="WAV", subtype="PCM_16")
    step = 8000 // len(PHONES)
    (folder / f"{name}.PHN").write_text(
        "".join(f"{i * step} {(i + 1) * step} {p}\n" for i, p in enumerate(PHONES))
    )


@pytest.fixture
def timit_tree(tmp_path):
    root = tmp_path / "TIMIT"
    for n, (split, dr, speaker) in enumerate([
        ("TRAIN", "DR1", "FCJF0"), ("TRAIN", "DR2", "MARC0"), ("TEST", "DR1", "MDAB0"), ("TEST", "DR3", "MABC0"),
    ]):
        folder = root / split / dr / speaker
        _utterance(folder, "SX1", sphere=n % 2 == 0, seed=n)
        _utterance(folder, "SI2", sphere=n % 2 == 1, seed=10 + n)
        _utterance(folder, "SA1", sphere=True, seed=20 + n)
    return root


def test_splits_core_test_and_sa_exclusion(timit_tree):
    sources = timit_sources(timit_tree)
    names = {s: sorted(Path(c.path).parent.name + "/" + Path(c.path).stem for c in v) for s, v in sources.items()}
    assert names["test"] == ["MDAB0/SI2", "MDAB0/SX1"]  # MDAB0 is a core test speaker
    assert names["val"] == ["MABC0/SI2", "MABC0/SX1"]
    assert len(names["train"]) == 4
    assert not any("SA" in n for v in names.values() for n in v)
    assert [PHONES_61[i] for i in sources["train"][0].targets] == PHONES


def test_sphere_and_riff_decode_the_same_samples(timit_tree, cache_dir):
    data = prepare_dataset({"name": "timit", "root": str(timit_tree)})
    assert data.task == "asr" and data.clip_samples is None and len(data.labels) == 61
    ds = CachedAudio(Path(data.splits["train"]))
    for i, src in enumerate(timit_sources(timit_tree)["train"]):
        expected, _ = soundfile.read(src.path, dtype="int16")
        np.testing.assert_array_equal((ds[i][0].numpy() * 32768).astype(np.int16), expected)


def test_folding_61_to_39():
    folded = {FOLD_61_TO_39[p] for p in PHONES_61} - {""}
    assert len(folded) == 39
    assert FOLD_61_TO_39["ix"] == "ih" and FOLD_61_TO_39["zh"] == "sh" and FOLD_61_TO_39["pau"] == "sil"
    assert FOLD_61_TO_39["q"] == ""
    # Scoring goes through the fold: ix/ih and hv/hh are the same phone, q disappears.
    task = ASRTask.__new__(ASRTask)
    task.labels, task.score_map = list(PHONES_61), FOLD_61_TO_39
    ids = [PHONES_61.index(p) + 1 for p in ["ix", "hv", "q", "pcl"]]
    assert task._symbols(ids) == ["ih", "hh", "sil"]


def test_missing_root_says_it_is_licensed(tmp_path):
    with pytest.raises(DatasetMissingError, match="licensed"):
        timit_sources(tmp_path / "none")
