"""TIMIT loader on a small LDC-layout tree with NIST SPHERE and RIFF WAVs."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import random_split

from specsweep.data.cache import CachedAudio
from specsweep.data.datasets import PreparedData, prepare_dataset
from specsweep.data.speechcommands import DatasetMissingError
from specsweep.data.timit import FOLD_61_TO_39, PHONES_61, paper_split_sizes, timit_sources
from specsweep.assembly import build_task
from specsweep.spec import TrainConfig, TrialConfig
from specsweep.trainables.tasks import ASRTask

PHONES = ["h#", "sh", "ix", "hv", "eh", "dcl", "jh", "q", "ao", "h#"]
# "aa" is label 0, the one a CTC blank would collide with.
SHORT_PHONES = ["h#", "aa", "sh", "h#"]


def _utterance(folder: Path, name: str, sphere: bool, seed: int, phones=PHONES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    audio = (np.random.default_rng(seed).standard_normal(8000) * 3000).astype(np.int16)
    if sphere:
        soundfile.write(folder / f"{name}.WAV", audio, 16000, format="NIST", subtype="PCM_16")
    else:
        soundfile.write(folder / f"{name}.WAV", audio, 16000, format="WAV", subtype="PCM_16")
    step = 8000 // len(phones)
    (folder / f"{name}.PHN").write_text(
        "".join(f"{i * step} {(i + 1) * step} {p}\n" for i, p in enumerate(phones))
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


@pytest.fixture
def timit_paper_tree(tmp_path):
    """Five TRAIN and two TEST speakers with SA1, SX1 and SI2 each: 15 and 6 utterances,
    SA included, the SA1 ones with a shorter transcription. MDAB0 is a core test speaker,
    MABC0 is not."""
    root = tmp_path / "TIMIT"
    speakers = [("TRAIN", f"DR{1 + i % 2}", name) for i, name in enumerate(["FCJF0", "MARC0", "FDAW0", "MDPK0", "FELC1"])]
    for n, (split, dr, speaker) in enumerate(speakers + [("TEST", "DR1", "MDAB0"), ("TEST", "DR3", "MABC0")]):
        for k, utt in enumerate(["SA1", "SX1", "SI2"]):
            _utterance(root / split / dr / speaker, utt, sphere=k % 2 == 0, seed=100 + 3 * n + k,
                       phones=SHORT_PHONES if utt == "SA1" else PHONES)
    return root


def _names(clips):
    return [Path(c.path).parent.name + "/" + Path(c.path).stem for c in clips]


def test_paper_protocol_splits_include_sa_and_split_train_4000_620_style(timit_paper_tree):
    sources = timit_sources(timit_paper_tree, "paper")
    train_utts = sorted(p for p in (timit_paper_tree / "TRAIN").rglob("*.WAV"))
    assert len(train_utts) == 15
    # 15 * 4000 / 4620 = 12.99: 13 / 2, in the original's proportion.
    assert (len(sources["train"]), len(sources["val"]), len(sources["test"])) == (13, 2, 6)
    assert sorted(c.path for c in sources["train"] + sources["val"]) == [str(p) for p in train_utts]
    assert sum(n.endswith("/SA1") for n in _names(sources["train"] + sources["val"])) == 5
    assert sorted(_names(sources["test"])) == sorted(f"{s}/{u}" for s in ("MDAB0", "MABC0") for u in ("SA1", "SX1", "SI2"))
    # The original's call on the sorted utterance list picks the validation utterances.
    _, val = random_split(range(15), [13, 2], generator=torch.Generator().manual_seed(0))
    assert [c.path for c in sources["val"]] == [str(train_utts[i]) for i in val.indices]
    assert timit_sources(timit_paper_tree, "paper") == sources


def test_paper_split_sizes_follow_the_original_proportion():
    assert paper_split_sizes(4620) == (4000, 620)
    assert paper_split_sizes(462) == (400, 62)
    assert paper_split_sizes(2) == (1, 1)
    with pytest.raises(DatasetMissingError, match="at least 2"):
        paper_split_sizes(1)


def test_paper_targets_drop_h_sharp_and_standard_keeps_it(timit_paper_tree):
    paper = timit_sources(timit_paper_tree, "paper")
    standard = timit_sources(timit_paper_tree, "standard")
    def phones(clip):
        return [PHONES_61[i] for i in clip.targets]

    def transcript(clip):
        return SHORT_PHONES if Path(clip.path).stem == "SA1" else PHONES

    assert all(phones(c) == [p for p in transcript(c) if p != "h#"] for split in paper.values() for c in split)
    assert all(phones(c) == transcript(c) for split in standard.values() for c in split)
    # Standard: no SA, 10 training utterances, MDAB0 (core) tests, MABC0 validates.
    assert (len(standard["train"]), len(standard["val"]), len(standard["test"])) == (10, 2, 2)
    assert not any(n.endswith("/SA1") for split in standard.values() for n in _names(split))


def test_prepared_data_carries_the_protocols_scoring(timit_paper_tree, cache_dir):
    paper = prepare_dataset({"name": "timit", "root": str(timit_paper_tree), "protocol": "paper"})
    standard = prepare_dataset({"name": "timit", "root": str(timit_paper_tree)})
    assert paper.labels == standard.labels == PHONES_61 and "h#" in paper.labels
    assert (paper.score_map, paper.per_average) == (None, "utterance")
    assert (standard.score_map, standard.per_average) == (FOLD_61_TO_39, "corpus")
    assert len(CachedAudio(Path(paper.splits["test"]))) == 6 and len(CachedAudio(Path(standard.splits["test"]))) == 2
    with pytest.raises(ValueError, match="data.protocol: 'kaldi' is not allowed for dataset 'timit'; allowed: standard, paper"):
        prepare_dataset({"name": "timit", "root": str(timit_paper_tree), "protocol": "kaldi"})


def _asr_task(data: PreparedData) -> ASRTask:
    config = TrialConfig(task="asr", data={"name": "timit", "root": "/nowhere"}, backbone={"name": "simple"},
                         frontend={"name": "nnaudio", "setting": "A", "n_mels": 40})
    task = build_task(config, data)
    assert isinstance(task, ASRTask)
    return task


def test_phone_error_rate_per_utterance_and_per_corpus():
    """Two utterances: 1 edit in a 2-phone reference and 1 in an 8-phone one.
    Per utterance: (1/2 + 1/8) / 2 = 0.3125; per corpus: 2 / 10 = 0.2."""
    refs = [["sh", "iy"], ["hh", "ae", "d", "y", "er", "dcl", "d", "aa"]]
    hyps = [["sh"], ["hh", "ae", "d", "y", "er", "dcl", "t", "aa"]]
    rates = {}
    for average, score_map in (("utterance", None), ("corpus", FOLD_61_TO_39)):
        task = _asr_task(PreparedData("asr", list(PHONES_61), {}, 16000, None, score_map, average))
        assert (task.per_average, task.score_map) == (average, score_map or {})
        for ref, hyp in zip(refs, hyps):
            task.count_errors("test", ref, hyp)
        rates[average] = task.phone_error_rate("test")
    assert rates == {"utterance": pytest.approx(0.3125), "corpus": pytest.approx(0.2)}
    with pytest.raises(ValueError, match="per_average"):
        ASRTask(_asr_task(PreparedData("asr", list(PHONES_61), {}, 16000, None)).net, TrainConfig(), PHONES_61,
                per_average="sentence")


def test_lightning_test_reports_the_per_utterance_average(timit_paper_tree, cache_dir):
    """A real ``Trainer.test`` on the paper protocol's test split: ``test_per`` is the mean
    of the utterances' own rates, recomputed here from the same batches."""
    import lightning.pytorch as pl
    import torchaudio

    from specsweep.data.loaders import make_loaders
    from specsweep.trainables.tasks import greedy_ctc_decode

    torch.manual_seed(0)
    data = prepare_dataset({"name": "timit", "root": str(timit_paper_tree), "protocol": "paper"})
    task = _asr_task(data)
    loaders = make_loaders(data, 4, torch.Generator().manual_seed(0))
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    per = trainer.test(task, loaders["test"], verbose=False)[0]["test_per"]
    rates, lengths = [], []
    with torch.no_grad():
        for waves, wave_lengths, targets, target_lengths in loaders["test"]:
            frames = torch.tensor([task.net.frontend.num_frames(int(n)) for n in wave_lengths])
            for i, hyp in enumerate(greedy_ctc_decode(task(waves).log_softmax(-1), frames)):
                ref = [PHONES_61[t] for t in targets[i, : target_lengths[i]].tolist()]
                rates.append(torchaudio.functional.edit_distance(ref, [PHONES_61[s - 1] for s in hyp]) / len(ref))
                lengths.append(len(ref))
    assert len(rates) == 6 and per == pytest.approx(sum(rates) / len(rates), rel=1e-6)
    # References of 2 (SA1) and 8 phones: the corpus rate would differ.
    corpus = sum(r * n for r, n in zip(rates, lengths)) / sum(lengths)
    assert sorted(set(lengths)) == [2, 8] and corpus != pytest.approx(per, rel=1e-3)


def test_frames_of_a_batch_equal_each_utterances(cache_dir):
    """The ASR task counts frames on the lengths tensor itself, as many as the front-end
    gives each length, also for lengths shorter than a window without centring; a
    front-end whose ``num_frames`` takes plain ints only is counted utterance by utterance."""
    from specsweep.assembly import build_model_for
    from specsweep.data.datasets import describe_dataset
    from specsweep.frontends.nnaudio import NnAudioFrontEnd
    from specsweep.spec import ModelConfig, TrainConfig
    from specsweep.trainables.tasks import ASRTask

    info = describe_dataset({"name": "embedded_phonemes", "n_utterances": 8})
    lengths = torch.tensor([16_000, 1, 479, 480, 481, 3_217, 160, 0])
    for center in (True, False):
        frontend = NnAudioFrontEnd(n_fft=480, hop_length=160, n_mels=20, center=center)
        expected = [frontend.num_frames(int(n)) for n in lengths]
        net = build_model_for(ModelConfig(task="asr", frontend={"name": "nnaudio", "n_fft": 480, "hop_length": 160,
                                                                "n_mels": 20, "center": center},
                                          backbone={"name": "simple"}), info)
        task = ASRTask(net, TrainConfig(), ["a", "b"])
        frames = task._frames(lengths)
        assert frames.dtype == torch.int64 and frames.tolist() == expected

        class IntsOnly(type(net.frontend)):
            def num_frames(self, num_samples):
                return int(num_samples) // 160 + 1

        net.frontend.__class__ = IntsOnly
        assert task._frames(lengths).tolist() == [int(n) // 160 + 1 for n in lengths]


def test_ctc_loss_leaves_out_the_last_frames_as_the_study_did(timit_paper_tree, cache_dir):
    """``ctc_drop_frames: 2`` (the paper recipe): the CTC loss of a real TIMIT batch takes
    each utterance's samples // hop - 1 frames, as the study's collate gave it, while
    decoding reads every frame the front-end gives."""
    from specsweep.data.loaders import make_loaders

    data = prepare_dataset({"name": "timit", "root": str(timit_paper_tree), "protocol": "paper"})
    waves, wave_lengths, targets, target_lengths = next(iter(make_loaders(data, 4, torch.Generator())["train"]))
    task = _asr_task(data)
    study = ASRTask(task.net, TrainConfig(ctc_drop_frames=2), data.labels)
    # Utterances of several lengths, as a padded batch holds them.
    wave_lengths = torch.minimum(wave_lengths, torch.tensor([8000, 6000, 4001, 7777]))
    torch.manual_seed(0)
    loss, log_probs, frames = study._step((waves, wave_lengths, targets, target_lengths))
    assert frames.tolist() == [task.net.frontend.num_frames(int(n)) for n in wave_lengths]
    study_frames = wave_lengths // 160 - 1
    expected = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets + 1, study_frames, target_lengths,
                                            zero_infinity=True)
    torch.testing.assert_close(loss, expected)
    torch.manual_seed(0)
    all_frames, _, _ = task._step((waves, wave_lengths, targets, target_lengths))
    assert all_frames.item() != pytest.approx(loss.item(), rel=1e-4)


def test_a_malformed_phone_file_is_named_with_exit_2(timit_paper_tree, cache_dir, capsys):
    from specsweep.cli import main

    (phn,) = sorted(timit_paper_tree.rglob("*.PHN"))[:1]
    phn.write_text("0 3050 h#\n3050 4559 not-a-phone\n")
    assert main(["data", "prepare", "timit", "--root", str(timit_paper_tree), "--set", "protocol=paper"]) == 2
    err = capsys.readouterr().err
    assert f"{phn}:2: expected 'start end phone' with a TIMIT phone" in err and "Traceback" not in err
