"""Speech Commands loader and the decoded-audio cache on real WAV files."""

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from specsweep.cli import main
from specsweep.data.cache import AudioDecodeError, CachedAudio, ClipSource, build_cache
from specsweep.data.datasets import prepare_dataset
from specsweep.data.loaders import class_sampling_weights, make_loaders
from specsweep.data.speechcommands import CLASSES, DatasetMissingError, speech_commands_sources


def test_speech_commands_splits_labels_and_silence(speech_commands_tree):
    sources = speech_commands_sources(speech_commands_tree)
    assert set(sources) == {"train", "val", "test"}
    by_split = {s: [Path(c.path).name for c in clips if c.frames is None] for s, clips in sources.items()}
    assert all("aa11" in n for n in by_split["train"])
    assert all("bb22" in n for n in by_split["val"]) and all("cc33" in n for n in by_split["test"])
    labels = {CLASSES[c.targets[0]] for c in sources["train"]}
    assert labels == set(CLASSES)
    unknown = [c for c in sources["train"] if CLASSES[c.targets[0]] == "_unknown_"]
    assert {Path(c.path).parent.name for c in unknown} == {"bed", "cat"}
    silence = {s: [c for c in clips if CLASSES[c.targets[0]] == "_silence_"] for s, clips in sources.items()}
    assert all(len(v) >= 1 for v in silence.values())
    # Silence slices of different splits come from disjoint spans of the noise files.
    spans = {s: {(c.path, c.start) for c in v} for s, v in silence.items()}
    assert not spans["train"] & spans["test"]
    assert all(c.frames == 16000 for v in silence.values() for c in v)


def test_missing_root_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissingError, match="--download"):
        speech_commands_sources(tmp_path / "nowhere")


def test_cache_round_trip_padding_and_slices(speech_commands_tree, tmp_path):
    sources = speech_commands_sources(speech_commands_tree)["train"]
    folder = build_cache(sources, 16000, tmp_path / "c")
    ds = CachedAudio(folder)
    assert len(ds) == len(sources)
    for i, src in enumerate(sources):
        wave, target = ds[i]
        assert wave.shape == (16000,) and wave.dtype == torch.float32
        assert target.tolist() == list(src.targets)
        with soundfile.SoundFile(src.path) as f:
            f.seek(src.start)
            expected = f.read(frames=src.frames or -1, dtype="int16")[:16000]
        np.testing.assert_array_equal((wave[: len(expected)].numpy() * 32768).round().astype(np.int16), expected)
        assert (wave[len(expected):] == 0).all()


def test_cache_is_reused_and_rebuilt_when_a_file_changes(speech_commands_tree, tmp_path):
    sources = speech_commands_sources(speech_commands_tree)["val"]
    first = build_cache(sources, 16000, tmp_path / "c")
    mtime = (first / "audio.int16").stat().st_mtime_ns
    assert build_cache(sources, 16000, tmp_path / "c") == first
    assert (first / "audio.int16").stat().st_mtime_ns == mtime
    changed = Path(sources[0].path)
    data, sr = soundfile.read(changed, dtype="int16")
    soundfile.write(changed, data[::-1].copy(), sr, subtype="PCM_16")
    second = build_cache(speech_commands_sources(speech_commands_tree)["val"], 16000, tmp_path / "c")
    assert second != first
    assert not np.array_equal(CachedAudio(first)[0][0].numpy(), CachedAudio(second)[0][0].numpy())


def test_corrupt_file_stops_preparation_naming_it(speech_commands_tree, tmp_path):
    bad = speech_commands_tree / "yes" / "aa11_nohash_0.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav")
    with pytest.raises(AudioDecodeError, match="aa11_nohash_0.wav"):
        build_cache(speech_commands_sources(speech_commands_tree)["train"], 16000, tmp_path / "c")
    assert not any(p.name.endswith("meta.json") for p in (tmp_path / "c").rglob("*"))


def test_corrupt_file_from_the_command_line_is_named_with_exit_2(speech_commands_tree, cache_dir, capsys):
    (speech_commands_tree / "yes" / "aa11_nohash_0.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    assert main(["data", "prepare", "speechcommands", "--root", str(speech_commands_tree)]) == 2
    err = capsys.readouterr().err
    assert "aa11_nohash_0.wav" in err and "Traceback" not in err


@pytest.mark.parametrize("silence", ["spans", "paper"])
def test_corrupt_noise_file_is_named_with_exit_2(speech_commands_tree, cache_dir, capsys, silence):
    # silence: paper takes its validation silence from running_tap.wav, which must be there.
    noise = speech_commands_tree / "_background_noise_" / ("running_tap.wav" if silence == "paper" else "white_noise.wav")
    noise.write_bytes(b"RIFF\x00\x00not really a wav")
    assert main(["data", "prepare", "speechcommands", "--root", str(speech_commands_tree), "--set",
                 f"silence={silence}"]) == 2
    err = capsys.readouterr().err
    assert f"{noise}: cannot read this background noise file" in err and "Traceback" not in err


def test_damaged_cache_entry_is_named(speech_commands_tree, tmp_path):
    folder = build_cache(speech_commands_sources(speech_commands_tree)["train"], 16000, tmp_path / "c")
    audio = folder / "audio.int16"
    audio.write_bytes(audio.read_bytes()[:-100])
    with pytest.raises(AudioDecodeError, match=f"{folder}: damaged cache entry .*holds"):
        CachedAudio(folder)
    (folder / "index.npz").write_bytes(b"not a zip")
    with pytest.raises(AudioDecodeError, match=f"{folder}: damaged cache entry"):
        CachedAudio(folder)


def test_truncated_slice_is_an_error(tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.zeros(1000, dtype=np.int16), 16000)
    with pytest.raises(AudioDecodeError, match="short.wav"):
        build_cache([ClipSource(str(path), (0,), start=500, frames=16000)], 16000, tmp_path / "c")


def _build_in_child(args):
    tree, cache = args
    sources = speech_commands_sources(Path(tree))["train"]
    return str(build_cache(sources, 16000, Path(cache)))


def test_concurrent_preparation_builds_one_entry(speech_commands_tree, tmp_path):
    cache = tmp_path / "c"
    with mp.get_context("spawn").Pool(2) as pool:
        folders = pool.map(_build_in_child, [(str(speech_commands_tree), str(cache))] * 2)
    assert folders[0] == folders[1]
    entries = [p for p in (cache / "audio").iterdir() if p.is_dir()]
    assert len(entries) == 1
    assert len(CachedAudio(Path(folders[0]))) == len(speech_commands_sources(speech_commands_tree)["train"])


def test_prepare_speechcommands_and_loaders(speech_commands_tree, cache_dir):
    data = prepare_dataset({"name": "speechcommands", "root": str(speech_commands_tree)})
    assert data.labels == list(CLASSES) and data.clip_samples == 16000
    loaders = make_loaders(data, batch_size=4, generator=torch.Generator().manual_seed(0), balance_classes=True)
    waves, targets = next(iter(loaders["train"]))
    assert waves.shape == (4, 16000) and targets.shape == (4, 1)
    assert len(loaders["test"].dataset) == len(speech_commands_sources(speech_commands_tree)["test"])


def test_class_sampling_weights_favour_rare_classes():
    weights = class_sampling_weights([0] * 8 + [1] * 2, ["_unknown_", "_silence_"])
    assert weights[9] == pytest.approx(4 * weights[0])
    boosted = class_sampling_weights([0] * 8 + [1] * 2, ["_unknown_", "_silence_"], {"_silence_": 2.0})
    assert boosted[9] / boosted[0] == pytest.approx(8)
    with pytest.raises(ValueError, match="unknown classes"):
        class_sampling_weights([0, 1], ["a", "b"], {"c": 1.0})
