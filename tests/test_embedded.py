"""Offline synthesis (espeak-ng) and the two embedded datasets, with real audio and files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile

from specsweep.data import embedded
from specsweep.data.embedded import (
    MARKER,
    ensure_phoneme_corpus,
    ensure_speech_commands,
    generate_phoneme_corpus,
    generate_speech_commands,
    keywords,
    read_phoneme_inventory,
)
from specsweep.data.synth import Synthesizer, resample

# Small but complete: 6 speakers (4 train, 1 val, 1 test) each say each keyword once;
# 72 clips, enough to go through the worker pool when workers=2.
SMALL_KWS = dict(
    clips_per_word=6,
    clips_per_unknown=3,
    unknown_words=("bed", "cat", "dog", "wow"),
    n_speakers=6,
    noise_seconds=12.0,
    progress=False,
)
SMALL_PHONEMES = dict(n_utterances=(6, 2, 2), n_speakers=3, progress=False)


def _tree_bytes(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


@pytest.fixture(scope="module")
def kws_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_speech_commands(tmp_path_factory.mktemp("kws") / "sc", seed=0, workers=1, **SMALL_KWS)


@pytest.fixture(scope="module")
def phoneme_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_phoneme_corpus(tmp_path_factory.mktemp("phn") / "corpus", seed=0, workers=1, **SMALL_PHONEMES)


# --- synthesizer ------------------------------------------------------------------------


def test_word_is_audible_and_word_length(synth: Synthesizer) -> None:
    audio = synth.synthesize("yes", voice="en-us")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert synth.sample_rate == 22050
    assert 0.2 < len(audio) / synth.sample_rate < 1.5
    assert np.sqrt(np.mean(audio**2)) > 0.01
    assert np.abs(audio).max() <= 1.0


def test_voices_and_rates_change_the_audio(synth: Synthesizer) -> None:
    base = synth.synthesize("seven", voice="en-us")
    assert not np.array_equal(base, synth.synthesize("seven", voice="en+f3"))
    assert not np.array_equal(base, synth.synthesize("seven", voice="en-us", pitch=80))
    slow = synth.synthesize("seven", voice="en-us", rate=130)
    fast = synth.synthesize("seven", voice="en-us", rate=260)
    assert len(slow) > 1.3 * len(fast)


def test_synthesis_is_a_pure_function(synth: Synthesizer) -> None:
    # en+f3 is breathy: espeak's noise generator would otherwise be seeded from the clock.
    first = synth.synthesize("marvin", voice="en+f3", rate=150, pitch=30)
    synth.synthesize("something else entirely", voice="en-gb-scotland+klatt")
    assert np.array_equal(first, synth.synthesize("marvin", voice="en+f3", rate=150, pitch=30))


def test_voice_catalogue_and_validation(synth: Synthesizer) -> None:
    voices = synth.voices()
    assert {"en", "en-us", "en+f3", "en-us+m2"} <= set(voices)
    assert set(synth.voices(None)) == set(synth.languages())
    with pytest.raises(ValueError, match="variant"):
        synth.synthesize("yes", voice="en+nosuchvariant")
    with pytest.raises(ValueError, match="unknown English voice"):
        synth.synthesize("yes", voice="fr")
    with pytest.raises(ValueError, match="rate"):
        synth.synthesize("yes", rate=10)


def test_phonemes_of_yes(synth: Synthesizer) -> None:
    phonemes = synth.phonemes("yes")
    assert phonemes and phonemes == synth.phonemes("yes")
    assert phonemes[-1] == "s"
    assert all(p and " " not in p and "_" not in p and "ˈ" not in p for p in phonemes)
    assert any("ˈ" in p for p in synth.phonemes("yes", stress=True))
    # Multi-character phonemes stay whole.
    assert "dʒ" in synth.phonemes("judge", voice="en-us")


def test_resample_to_16k(synth: Synthesizer) -> None:
    audio = synth.synthesize("go")
    out = resample(audio, synth.sample_rate, 16000)
    assert out.dtype == np.float32
    assert len(out) == -(-len(audio) * 16000 // synth.sample_rate)


# --- keyword set ------------------------------------------------------------------------


def test_speech_commands_layout(kws_root: Path) -> None:
    words = set(keywords.KEYWORDS) | set(SMALL_KWS["unknown_words"])
    folders = {p.name for p in kws_root.iterdir() if p.is_dir()}
    assert folders == words | {"_background_noise_"}
    for word in words:
        clips = sorted((kws_root / word).glob("*.wav"))
        expected = SMALL_KWS["clips_per_word"] if word in keywords.KEYWORDS else SMALL_KWS["clips_per_unknown"]
        assert len(clips) == expected
        for clip in clips:
            speaker, nohash, index = clip.stem.split("_")
            assert len(speaker) == 8 and nohash == "nohash" and index.isdigit()
            info = soundfile.info(str(clip))
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
    audio, _ = soundfile.read(str(sorted((kws_root / "yes").glob("*.wav"))[0]))
    assert np.abs(audio).max() > 0.05
    noises = sorted((kws_root / "_background_noise_").glob("*.wav"))
    assert len(noises) >= 3
    for noise in noises:
        info = soundfile.info(str(noise))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration >= 12.0


def test_speech_commands_lists_split_by_speaker(kws_root: Path) -> None:
    lists = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        entries = (kws_root / name).read_text().splitlines()
        assert entries and all((kws_root / e).is_file() for e in entries)
        lists[name] = set(entries)
    assert not lists["validation_list.txt"] & lists["testing_list.txt"]
    every = {str(p.relative_to(kws_root)) for p in kws_root.glob("*/*.wav") if not p.parent.name.startswith("_")}
    train = every - lists["validation_list.txt"] - lists["testing_list.txt"]
    assert len(train) > len(lists["validation_list.txt"]) and len(train) > len(lists["testing_list.txt"])
    speakers = {
        split: {Path(e).name.split("_")[0] for e in entries}
        for split, entries in (("train", train), ("val", lists["validation_list.txt"]), ("test", lists["testing_list.txt"]))
    }
    assert not speakers["train"] & speakers["val"] and not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]


def test_speech_commands_loader_sees_twelve_classes(kws_root: Path) -> None:
    from specsweep.data import speechcommands

    sources = speechcommands.speech_commands_sources(kws_root)
    train_labels = {clip.targets[0] for clip in sources["train"]}
    assert train_labels == set(range(len(speechcommands.CLASSES))) == set(range(12))


def test_speech_commands_determinism(kws_root: Path, tmp_path: Path) -> None:
    # Same seed through the two-process pool: the same bytes as the in-process fixture.
    again = generate_speech_commands(tmp_path / "again", seed=0, workers=2, **SMALL_KWS)
    assert _tree_bytes(again) == _tree_bytes(kws_root)
    other = _tree_bytes(generate_speech_commands(tmp_path / "other", seed=1, workers=1, **SMALL_KWS))
    reference = _tree_bytes(kws_root)
    assert sorted(other) != sorted(reference) or any(other[k] != reference[k] for k in other)
    assert (tmp_path / "other" / "yes").is_dir()


def test_second_call_is_a_no_op(kws_root: Path) -> None:
    marker = json.loads((kws_root / MARKER).read_text())
    assert marker["seed"] == 0 and marker["clips_per_word"] == SMALL_KWS["clips_per_word"]
    stamps = {p: p.stat().st_mtime_ns for p in kws_root.rglob("*")}
    start = time.perf_counter()
    assert generate_speech_commands(kws_root, seed=0, workers=1, **SMALL_KWS) == kws_root
    assert time.perf_counter() - start < 1.0
    assert {p: p.stat().st_mtime_ns for p in kws_root.rglob("*")} == stamps
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_speech_commands(kws_root, seed=5, workers=1, **SMALL_KWS)


def test_interrupted_generation_is_not_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "sc"
    calls = {"n": 0}
    render = keywords._render_clip

    def failing_render(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(keywords, "_render_clip", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_speech_commands(root, seed=0, workers=1, **SMALL_KWS)
    assert not root.exists()
    assert not list(tmp_path.glob(".sc.partial-*"))
    monkeypatch.setattr(keywords, "_render_clip", render)

    # A killed run leaves a partial folder, even one with a marker inside: never used.
    stale = tmp_path / ".sc.partial-killed"
    (stale / "yes").mkdir(parents=True)
    (stale / MARKER).write_text("{}")
    # A foreign, unmarked folder at the destination is not overwritten either.
    root.mkdir()
    (root / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError, match="no .complete marker"):
        generate_speech_commands(root, seed=0, workers=1, **SMALL_KWS)
    (root / "stray.txt").unlink()
    generate_speech_commands(root, seed=0, workers=1, **SMALL_KWS)
    assert (root / MARKER).is_file() and not stale.exists()


def test_ensure_speech_commands_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kws_root: Path) -> None:
    monkeypatch.setenv("SPECSWEEP_CACHE", str(tmp_path / "env_cache"))
    params = {k: v for k, v in SMALL_KWS.items() if k != "progress"}
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_speech_commands(seed=0, workers=1, progress=False, **params)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    root = results[0]
    assert root.parent == tmp_path / "env_cache" and root.name.startswith("embedded_kws-")
    assert _tree_bytes(root) == _tree_bytes(kws_root)
    assert ensure_speech_commands(tmp_path / "env_cache", seed=0, progress=False, **params) == root
    assert not list((tmp_path / "env_cache").glob(".*partial*"))


# --- phoneme corpus ---------------------------------------------------------------------


def test_phoneme_corpus_layout(phoneme_root: Path) -> None:
    inventory = read_phoneme_inventory(phoneme_root)
    assert inventory == sorted(set(inventory)) and len(inventory) > 10
    lengths = []
    for split, count in zip(("train", "valid", "test"), SMALL_PHONEMES["n_utterances"]):
        wavs = sorted((phoneme_root / split).glob("*.wav"))
        assert len(wavs) == count
        for wav in wavs:
            info = soundfile.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 0.3 < info.duration < 5.0
            lengths.append(info.frames)
            phonemes = wav.with_suffix(".phn.txt").read_text(encoding="utf-8").split()
            assert len(phonemes) >= 3 and set(phonemes) <= set(inventory)
    assert len(set(lengths)) > 1
    assert {p.name for p in phoneme_root.glob("*/*.phn.txt")} == {p.stem + ".phn.txt" for p in phoneme_root.glob("*/*.wav")}


def test_ensure_phoneme_corpus(phoneme_root: Path, tmp_path: Path) -> None:
    params = {k: v for k, v in SMALL_PHONEMES.items() if k != "progress"}
    root = ensure_phoneme_corpus(tmp_path, seed=0, workers=1, progress=False, **params)
    assert root.name.startswith("embedded_phonemes-")
    assert _tree_bytes(root) == _tree_bytes(phoneme_root)
    assert ensure_phoneme_corpus(tmp_path, seed=0, progress=False, **params) == root


def test_declared_train_sizes_equal_the_prepared_splits(kws_root: Path, phoneme_root: Path) -> None:
    from specsweep.data import speechcommands
    from specsweep.data.datasets import phoneme_corpus_sources

    params = {k: v for k, v in SMALL_KWS.items() if k != "progress"}
    real = len(speechcommands.speech_commands_sources(kws_root)["train"])
    assert embedded.speech_commands_train_clips(seed=0, **params) == real
    # The count follows the parameters: one more clip per word adds training clips.
    assert embedded.speech_commands_train_clips(seed=0, **{**params, "clips_per_word": 7}) > real
    phonemes = {k: v for k, v in SMALL_PHONEMES.items() if k != "progress"}
    assert embedded.phoneme_corpus_train_utterances(seed=0, **phonemes) == len(phoneme_corpus_sources(phoneme_root)[1]["train"])


@pytest.mark.parametrize("params", [{}, {"clips_per_word": 6}, {"clips_per_word": 3, "n_speakers": 5},
                                    {"clips_per_word": 250, "clips_per_unknown": 0}])
def test_split_sizes_are_counted_as_the_clip_plan_assigns_speakers(params):
    """The declared split sizes (counted, not drawn) are the clip plan's, also at the
    largest size a spec may ask for."""
    for seed in (0, 3):
        plan = keywords._plan_kws(keywords._kws_params(seed=seed, **params))
        expected = {}
        for split in ("train", "val", "test"):
            clips = [p for p in plan if p.speaker.split == split]
            keyword_clips = sum(p.word in keywords.KEYWORDS for p in clips)
            expected[split] = len(clips) + max(1, keyword_clips // len(keywords.KEYWORDS))
        assert embedded.speech_commands_split_clips(seed, **params) == expected
    sizes = embedded.speech_commands_split_clips(0, clips_per_word=10_000)
    assert sum(sizes.values()) > 10 * 10_000
