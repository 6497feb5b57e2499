"""The Speech Commands test archive (data.test_set: archive) on small real WAV layouts."""

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import write_tone

from specsweep.cli import main
from specsweep.data.cache import CachedAudio, build_cache
from specsweep.data.datasets import DatasetConfigError, dataset_config_problems, declared_train_clips, prepare_dataset
from specsweep.data.speechcommands import (
    ARCHIVE_CHECKSUMS,
    CLASSES,
    TEST_ARCHIVE_URL,
    TEST_FOLDER,
    ChecksumError,
    DatasetMissingError,
    archive_sources,
    fetch_archive,
    speech_commands_sources,
    verify_archive,
    write_archive_layout,
)

# Clips per class folder of the generated archive: unequal, so counts cannot match by accident.
PER_CLASS = {name: 1 + i % 3 for i, name in enumerate(CLASSES)}


def write_archive(folder: Path) -> Path:
    """The layout of the extracted test archive: one folder per class, ``_unknown_`` and
    ``_silence_`` included; the first clip of each class is 0.6 s (to be padded), one name
    ends in ``.wav.wav`` as some names in the real archive do."""
    for c, name in enumerate(CLASSES):
        for k in range(PER_CLASS[name]):
            suffix = ".wav.wav" if (c, k) == (0, 0) else ".wav"
            write_tone(folder / name / f"t{c:02d}{k}_nohash_0{suffix}", 300 + 40 * c, seconds=0.6 if k == 0 else 1.0,
                       seed=500 + 10 * c + k)
    return folder


def test_archive_test_split_counts_labels_and_padding(speech_commands_tree, cache_dir):
    archive = write_archive(speech_commands_tree / TEST_FOLDER)
    data = prepare_dataset({"name": "speechcommands", "root": str(speech_commands_tree), "test_set": "archive"})
    test = CachedAudio(Path(data.splits["test"]))
    counts = np.bincount(test.first_targets(), minlength=len(CLASSES))
    assert dict(zip(CLASSES, counts.tolist())) == PER_CLASS
    sources = speech_commands_sources(speech_commands_tree, test_root=archive)["test"]
    assert [CLASSES[s.targets[0]] for s in sources] == [Path(s.path).parent.name for s in sources]
    for i, src in enumerate(sources):
        wave, _ = test[i]
        expected, _ = soundfile.read(src.path, dtype="int16")
        assert wave.shape == (16000,)
        np.testing.assert_array_equal((wave[: len(expected)].numpy() * 32768).astype(np.int16), expected)
        assert (wave[len(expected):] == 0).all()
    assert sum(soundfile.info(s.path).frames < 16000 for s in sources) == len(CLASSES)


def test_archive_keeps_training_from_the_main_archive_without_testing_list(speech_commands_tree):
    listed = speech_commands_sources(speech_commands_tree)
    archived = speech_commands_sources(speech_commands_tree, test_root=write_archive(speech_commands_tree / TEST_FOLDER))
    assert archived["train"] == listed["train"] and archived["val"] == listed["val"]
    # testing_list.txt clips (speaker cc33) are in no split; the archive folder is not a word of the corpus.
    paths = [s.path for split in archived.values() for s in split]
    assert not any("cc33" in p for p in paths)
    assert all(Path(s.path).is_relative_to(speech_commands_tree / TEST_FOLDER) for s in archived["test"])


def test_missing_archive_names_folder_and_download_command(speech_commands_tree, capsys, cache_dir):
    root = speech_commands_tree
    command = f"specsweep data prepare speechcommands --root {root} --set test_set=archive --download"
    with pytest.raises(DatasetMissingError) as err:
        prepare_dataset({"name": "speechcommands", "root": str(root), "test_set": "archive"})
    assert str(root / TEST_FOLDER) in str(err.value) and command in str(err.value)
    assert main(["data", "prepare", "speechcommands", "--root", str(root), "--set", "test_set=archive"]) == 2
    stderr = capsys.readouterr().err
    assert command in stderr and "Traceback" not in stderr
    elsewhere = root.parent / "sc_test"
    with pytest.raises(DatasetMissingError, match=f"--set test_root={elsewhere} --download"):
        prepare_dataset({"name": "speechcommands", "root": str(root), "test_set": "archive", "test_root": str(elsewhere)})
    # Without the main archive either, one command fetches both.
    with pytest.raises(DatasetMissingError, match=f"Speech Commands v2 not found at {root.parent}.*--root {root.parent} "
                       "--set test_set=archive --download"):
        prepare_dataset({"name": "speechcommands", "root": str(root.parent), "test_set": "archive"})


def test_archive_folders_must_be_the_twelve_classes(speech_commands_tree):
    archive = write_archive(speech_commands_tree / TEST_FOLDER)
    write_tone(archive / "bed" / "x_nohash_0.wav", 200)
    with pytest.raises(DatasetMissingError, match=r"\['bed'\] are not among the 12 classes"):
        speech_commands_sources(speech_commands_tree, test_root=archive)


def test_test_set_value_is_checked_before_preparing(speech_commands_tree, capsys):
    config = {"name": "speechcommands", "root": str(speech_commands_tree), "test_set": "canonical"}
    assert dataset_config_problems(config) == [
        "data.test_set: 'canonical' is not allowed for dataset 'speechcommands'; allowed: list, archive"
    ]
    with pytest.raises(DatasetConfigError, match="data.test_set"):
        prepare_dataset(config)
    assert main(["data", "prepare", "speechcommands", "--root", str(speech_commands_tree), "--set", "test_set=x"]) == 2
    assert main(["data", "prepare", "speechcommands", "--set", "tset_set=archive"]) == 2
    assert "test_set" in capsys.readouterr().err
    assert dataset_config_problems({"name": "speechcommands"}) == ["data.root: missing; dataset 'speechcommands' needs it"]


def test_checksum_verification_of_a_local_file(tmp_path):
    path = tmp_path / "archive.tar.gz"
    path.write_bytes(b"specsweep" * 1000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    verify_archive(path, 9000, digest)
    with pytest.raises(ChecksumError, match="9000 bytes, the published archive has 9001"):
        verify_archive(path, 9001, digest)
    with pytest.raises(ChecksumError, match=f"SHA-256 {digest} differs"):
        verify_archive(path, 9000, "0" * 64)


def test_a_corrupt_archive_on_disk_is_refused_not_extracted(tmp_path):
    folder = tmp_path / "sc_test"
    folder.mkdir()
    (folder / "speech_commands_test_set_v0.02.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ChecksumError, match="delete it and run the download again"):
        fetch_archive(TEST_ARCHIVE_URL, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["speech_commands_test_set_v0.02.tar.gz"]


def test_verified_archive_is_extracted_and_used(speech_commands_tree, tmp_path, cache_dir, monkeypatch):
    """The download path end to end without network: the archive is already in
    ``test_root``, so preparing verifies it against the checksum table, extracts it and
    tests on it. The table entry is replaced by this local archive's size and SHA-256."""
    test_root = tmp_path / "sc_test"
    test_root.mkdir()
    tarball = test_root / "speech_commands_test_set_v0.02.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(write_archive(tmp_path / "layout"), arcname=".")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    monkeypatch.setitem(ARCHIVE_CHECKSUMS, TEST_ARCHIVE_URL, (tarball.stat().st_size, digest))
    data = prepare_dataset({"name": "speechcommands", "root": str(speech_commands_tree), "test_set": "archive",
                            "test_root": str(test_root), "download": True})
    assert len(CachedAudio(Path(data.splits["test"]))) == sum(PER_CLASS.values())
    assert (test_root / "_silence_").is_dir()


def _decoded(sources, cache):
    ds = CachedAudio(build_cache(sources, 16000, cache))
    return sorted((int(ds.first_targets()[i]), ds[i][0].numpy().tobytes()) for i in range(len(ds)))


def test_list_layout_written_as_archive_holds_the_same_test_clips(speech_commands_tree, tmp_path):
    archive = write_archive_layout(speech_commands_tree, tmp_path / "archive")
    assert sorted(p.name for p in archive.iterdir()) == sorted(CLASSES)
    assert sorted(p.name for p in (archive / "_unknown_").iterdir()) == ["bed_cc33_nohash_0.wav", "cat_cc33_nohash_0.wav"]
    listed = speech_commands_sources(speech_commands_tree)["test"]
    assert _decoded(archive_sources(archive), tmp_path / "c") == _decoded(listed, tmp_path / "c")
    assert write_archive_layout(speech_commands_tree, archive) == archive


def test_embedded_set_tests_on_its_archive_layout(cache_dir):
    archived = prepare_dataset({"name": "embedded_kws", "clips_per_word": 6, "test_set": "archive"})
    listed = prepare_dataset({"name": "embedded_kws", "clips_per_word": 6})
    assert archived.splits["train"] == listed.splits["train"] and archived.splits["test"] != listed.splits["test"]
    tests = [CachedAudio(Path(d.splits["test"])) for d in (archived, listed)]
    assert np.array_equal(*(np.bincount(t.first_targets(), minlength=len(CLASSES)) for t in tests))
    declared = declared_train_clips({"name": "embedded_kws", "clips_per_word": 6, "test_set": "archive"})
    assert declared == len(CachedAudio(Path(archived.splits["train"])))


def test_paper_silence_slices_every_half_second(speech_commands_tree):
    """The original's _silence_: 1 s slices every 0.5 s, validation from running_tap only,
    training from the other noise files, none sliced for the test split."""
    from conftest import write_tone

    from specsweep.data.speechcommands import CLASSES, DatasetMissingError, speech_commands_sources

    with pytest.raises(DatasetMissingError, match="running_tap.wav"):
        speech_commands_sources(speech_commands_tree, silence="paper")
    write_tone(speech_commands_tree / "_background_noise_" / "running_tap.wav", 80, seconds=5.25, seed=7)
    sources = speech_commands_sources(speech_commands_tree, silence="paper")
    silence = CLASSES.index("_silence_")
    by_split = {split: [c for c in clips if c.targets[0] == silence] for split, clips in sources.items()}
    # As the original's range(0, len - 16000, 8000): 30 s files start slices at 0, 0.5, ..., 28.5 s
    # (58 each: a slice at 29 s would end exactly at the file's end and is left out, as there);
    # the 5.25 s running_tap at 0 ... 4.0 s (9).
    assert len(by_split["train"]) == 2 * 58
    assert {Path(c.path).name for c in by_split["train"]} == {"white_noise.wav", "pink_noise.wav"}
    assert [c.start for c in by_split["val"]] == [8000 * k for k in range(9)]
    assert {Path(c.path).name for c in by_split["val"]} == {"running_tap.wav"}
    assert by_split["test"] == []
    assert all(c.frames == 16000 for c in by_split["train"] + by_split["val"])


def test_download_is_verified_before_it_is_kept(tmp_path, monkeypatch):
    """The download branch of fetch_archive on a file:// URL (no network): a copy that
    matches the table is kept under the archive's name, one that does not is removed."""
    published = tmp_path / "published" / "speech_commands_test_set_v0.02.tar.gz"
    published.parent.mkdir()
    published.write_bytes(b"archive bytes" * 100)
    url = published.as_uri()
    monkeypatch.setitem(ARCHIVE_CHECKSUMS, url, (1300, hashlib.sha256(published.read_bytes()).hexdigest()))
    kept = fetch_archive(url, tmp_path / "good")
    assert kept.read_bytes() == published.read_bytes() and sorted(p.name for p in kept.parent.iterdir()) == [kept.name]
    monkeypatch.setitem(ARCHIVE_CHECKSUMS, url, (1300, "f" * 64))
    with pytest.raises(ChecksumError, match="the download was removed"):
        fetch_archive(url, tmp_path / "bad")
    assert list((tmp_path / "bad").iterdir()) == []
