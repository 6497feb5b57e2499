"""Google Speech Commands v2 in its on-disk layout, as the 12-class task.

The 10 keywords, ``_unknown_`` (every other word) and ``_silence_`` (one-second slices
of ``_background_noise_``), split by the official ``validation_list.txt`` and
``testing_list.txt``. The embedded synthetic set uses the same layout and this loader.

The test split comes either from ``testing_list.txt`` (with silence sliced from the noise
files) or from the separate test archive ``speech_commands_test_set_v0.02`` (4,890 clips,
balanced over the 12 classes), which extracts into one folder per class, ``_unknown_``
and ``_silence_`` included. Either way ``testing_list.txt`` clips never enter training.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import soundfile

from specsweep.data.cache import AudioDecodeError, ClipSource, build_atomically
from specsweep.data.progressbar import progress_bar

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = KEYWORDS + ("_unknown_", "_silence_")
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
SPLITS = ("train", "val", "test")
DOWNLOAD_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
TEST_ARCHIVE_URL = "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz"
# Default folder of the extracted test archive inside the dataset root.
TEST_FOLDER = "speech_commands_test_set_v0.02"
TEST_ARCHIVE_CLIPS = 4890
# Size in bytes and SHA-256 of the published archives, as TensorFlow Datasets records them
# (tensorflow_datasets/url_checksums/speech_commands.txt).
ARCHIVE_CHECKSUMS = {
    DOWNLOAD_URL: (2428923189, "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
    TEST_ARCHIVE_URL: (112563277, "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
}

# Share of each background-noise file that each split slices its silence from, so
# that no noise sample is heard in two splits.
SILENCE_SPANS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
# The original experiments' silence (AudioLoader's SPEECHCOMMANDS_12C): one-second slices
# every half second, validation from running_tap only, training from the other noise files.
PAPER_SILENCE_VAL_FILE = "running_tap.wav"
SILENCE_MODES = ("spans", "paper")


class DatasetMissingError(FileNotFoundError):
    """The dataset root does not exist or lacks the expected files."""


class ChecksumError(DatasetMissingError):
    """A downloaded archive differs from the published one (size or SHA-256)."""


def check_root(root: Path, test_root: Optional[Path] = None) -> Path:
    """``root`` if it holds the extracted main archive; the error's command also fetches
    the test archive when ``test_root`` (where it belongs) is given."""
    root = Path(root).expanduser()
    missing = [name for name in ("validation_list.txt", "testing_list.txt", "_background_noise_") if not (root / name).exists()]
    if missing:
        raise DatasetMissingError(
            f"Speech Commands v2 not found at {root} (missing {', '.join(missing)}). "
            f"Fetch it with `{_prepare_command(root, test_root)}` "
            "or point data.root at an extracted speech_commands_v0.02 folder."
        )
    return root


def default_test_root(root: Path) -> Path:
    """Where the extracted test archive lives unless ``data.test_root`` says otherwise."""
    return Path(root).expanduser() / TEST_FOLDER


def _prepare_command(root: Path, test_root: Optional[Path]) -> str:
    command = f"specsweep data prepare speechcommands --root {root}"
    if test_root is not None:
        command += " --set test_set=archive"
        if Path(test_root) != default_test_root(root):
            command += f" --set test_root={test_root}"
    return command + " --download"


def archive_present(test_root: Path) -> bool:
    """Whether ``test_root`` holds class folders of an extracted test archive."""
    test_root = Path(test_root).expanduser()
    return test_root.is_dir() and any(p.is_dir() and p.name in CLASSES for p in test_root.iterdir())


def check_test_root(test_root: Path, root: Path) -> Path:
    """``test_root`` if it holds class folders of the extracted test archive.

    Raises
    ------
    DatasetMissingError
        Naming the folder and the command that downloads the archive into it.
    """
    test_root = Path(test_root).expanduser()
    if not archive_present(test_root):
        raise DatasetMissingError(
            f"Speech Commands test archive not found at {test_root} (data.test_set: archive wants the extracted "
            f"{TEST_FOLDER}.tar.gz there, one folder per class). Fetch it with "
            f"`{_prepare_command(root, test_root)}`, point data.test_root at an extracted copy, "
            "or set data.test_set: list to test on testing_list.txt."
        )
    return test_root


def archive_sources(test_root: Path) -> List[ClipSource]:
    """Clips of the extracted test archive, labelled by their folder, zero-padded at the
    end (or cropped) to one second.

    Raises
    ------
    DatasetMissingError
        If a folder is not one of the 12 classes or there is no clip.
    """
    folders = sorted(p for p in Path(test_root).iterdir() if p.is_dir() and not p.name.startswith("."))
    unexpected = [p.name for p in folders if p.name not in CLASSES]
    if unexpected:
        raise DatasetMissingError(
            f"{test_root}: folders {unexpected} are not among the 12 classes ({', '.join(CLASSES)}); "
            f"data.test_root must be the extracted {TEST_FOLDER} archive"
        )
    # Some file names in the archive end in ".wav.wav"; the glob takes them as they are.
    clips = [
        ClipSource(str(wav), (CLASSES.index(folder.name),), pad_to=CLIP_SAMPLES)
        for folder in folders
        for wav in sorted(folder.glob("*.wav"))
    ]
    if not clips:
        raise DatasetMissingError(f"{test_root}: no WAV clips in the class folders of the test archive")
    return clips


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def speech_commands_sources(
    root: Path, silence_per_split: Dict[str, int] | None = None, test_root: Optional[Path] = None,
    silence: str = "spans",
) -> Dict[str, List[ClipSource]]:
    """Clip sources of every split, labels as indices into :data:`CLASSES`.

    Parameters
    ----------
    root : Path
        Folder holding one sub-folder per word, the two list files and ``_background_noise_``.
    silence_per_split : dict, optional
        Number of ``_silence_`` clips per split; by default as many as the average keyword.
    test_root : Path, optional
        The extracted test archive. When given, the test split is its clips (silence
        included) and the ``testing_list.txt`` clips of ``root`` are left out of every split;
        otherwise the test split is those clips plus silence sliced from the noise files.
    silence : {"spans", "paper"}
        ``"spans"``: each split slices ``silence_per_split`` clips, evenly spaced, from its
        own share of every noise file. ``"paper"``: the original experiments' slices, one
        second every half second, of ``running_tap.wav`` for validation and of the other
        noise files for training; no sliced silence in the test split.
    """
    root = check_root(root, test_root)
    if test_root is not None:
        test_root = check_test_root(test_root, root)
    val_files = _read_list(root / "validation_list.txt")
    test_files = _read_list(root / "testing_list.txt")
    sources: Dict[str, List[ClipSource]] = {split: [] for split in SPLITS}
    word_dirs = sorted(
        p for p in root.iterdir()
        if p.is_dir() and not p.name.startswith("_") and p.name != TEST_FOLDER
        and (test_root is None or p.resolve() != test_root.resolve())
    )
    for word_dir in word_dirs:
        label = CLASSES.index(word_dir.name) if word_dir.name in KEYWORDS else CLASSES.index("_unknown_")
        for wav in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{wav.name}"
            split = "val" if rel in val_files else "test" if rel in test_files else "train"
            sources[split].append(ClipSource(str(wav), (label,), pad_to=CLIP_SAMPLES))
    noise_files = sorted((root / "_background_noise_").glob("*.wav"))
    if not noise_files:
        raise DatasetMissingError(f"no WAV files in {root / '_background_noise_'} to slice _silence_ clips from")
    if silence == "paper":
        for split in ("train", "val"):
            sources[split] += _paper_silence(noise_files, split)
        if test_root is not None:
            sources["test"] = archive_sources(test_root)
        return sources
    sliced = SPLITS if test_root is None else ("train", "val")
    for split in sliced:
        keyword_clips = sum(1 for s in sources[split] if s.targets[0] < len(KEYWORDS))
        wanted = (silence_per_split or {}).get(split, max(1, keyword_clips // len(KEYWORDS)))
        sources[split] += _silence_slices(noise_files, split, wanted)
    if test_root is not None:
        sources["test"] = archive_sources(test_root)
    return sources


def write_archive_layout(root: Path, test_root: Path) -> Path:
    """Write the test split of a list-split layout at ``root`` in the test archive's layout.

    The ``testing_list.txt`` clips go to the folder of their class (hard links where the
    file system allows, copies elsewhere; ``_unknown_`` names carry their word), the
    silence slices of the test split become WAV files in ``_silence_``. So the embedded set
    exercises ``test_set: archive`` without a download. The folder appears by an atomic
    rename; an existing one is kept.
    """
    return build_atomically(test_root, archive_present, lambda folder: _write_test_classes(root, folder),
                            "class folder")


def _write_test_classes(root: Path, folder: Path) -> None:
    """The test split of ``root`` as one folder of clips per class inside ``folder``."""
    for clip in speech_commands_sources(root)["test"]:
        name = CLASSES[clip.targets[0]]
        src = Path(clip.path)
        (folder / name).mkdir(exist_ok=True)
        if clip.frames is not None:
            audio, rate = soundfile.read(src, start=clip.start, frames=clip.frames, dtype="int16")
            soundfile.write(folder / name / f"{src.stem}_{clip.start}_nohash_0.wav", audio, rate, subtype="PCM_16")
            continue
        dest = folder / name / (src.name if name == src.parent.name else f"{src.parent.name}_{src.name}")
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)


def _frames(path: Path) -> int:
    """Samples in the audio file ``path``; a damaged one is named (exit 2), not a traceback."""
    try:
        return soundfile.info(str(path)).frames
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioDecodeError(f"{path}: cannot read this background noise file ({err})") from None


def _paper_silence(noise_files: List[Path], split: str) -> List[ClipSource]:
    """One-second ``_silence_`` slices every half second (the last partial second left out)."""
    names = [p.name for p in noise_files]
    if PAPER_SILENCE_VAL_FILE not in names:
        raise DatasetMissingError(
            f"silence: paper needs _background_noise_/{PAPER_SILENCE_VAL_FILE} for validation silence; "
            f"found {', '.join(names)} (use data.silence: spans)")
    files = [p for p in noise_files if (p.name == PAPER_SILENCE_VAL_FILE) == (split == "val")]
    label = CLASSES.index("_silence_")
    return [ClipSource(str(path), (label,), start=start, frames=CLIP_SAMPLES)
            for path in files
            for start in range(0, _frames(path) - CLIP_SAMPLES, CLIP_SAMPLES // 2)]


def _silence_slices(noise_files: List[Path], split: str, count: int) -> List[ClipSource]:
    lo, hi = SILENCE_SPANS[split]
    spans = []
    for path in noise_files:
        frames = _frames(path)
        start, end = int(lo * frames), int(hi * frames) - CLIP_SAMPLES
        if end > start:
            spans.append((path, start, end))
    if not spans:
        raise DatasetMissingError(f"background noise files are too short for one-second {split} silence clips")
    label = CLASSES.index("_silence_")
    slices = []
    for i in range(count):
        path, start, end = spans[i % len(spans)]
        # Evenly spaced, deterministic offsets within the span of this split.
        k, n = i // len(spans), -(-count // len(spans))
        offset = start + (end - start) * k // max(1, n - 1) if n > 1 else start
        slices.append(ClipSource(str(path), (label,), start=offset, frames=CLIP_SAMPLES))
    return slices


def verify_archive(path: Path, size: int, sha256: str) -> None:
    """Check a file against its published size in bytes and SHA-256.

    Raises
    ------
    ChecksumError
        Naming the file and both values when either differs.
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ChecksumError(f"{path}: {actual_size} bytes, the published archive has {size}")
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != sha256:
        raise ChecksumError(f"{path}: SHA-256 {actual} differs from the published {sha256}")


def fetch_archive(url: str, folder: Path) -> Path:
    """The archive of ``url`` in ``folder``, downloaded unless already there, verified
    against :data:`ARCHIVE_CHECKSUMS` before it is used (only when the user asks).

    A download goes to a ``.partial`` file that is renamed only after verification and
    removed when verification fails, so a corrupt download is never extracted.
    """
    size, sha256 = ARCHIVE_CHECKSUMS[url]
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / url.rsplit("/", 1)[1]
    if archive.exists():
        try:
            verify_archive(archive, size, sha256)
        except ChecksumError as err:
            raise ChecksumError(f"{err}; delete it and run the download again") from None
        return archive

    partial = archive.with_name(archive.name + ".partial")
    with progress_bar(size, f"downloading {archive.name}", "B", unit_scale=True, unit_divisor=1024) as bar:
        def hook(blocks: int, block_size: int, total: int) -> None:
            bar.update(min(blocks * block_size, size) - bar.n)

        urllib.request.urlretrieve(url, partial, reporthook=hook)
    try:
        verify_archive(partial, size, sha256)
    except ChecksumError as err:
        partial.unlink()
        raise ChecksumError(f"{err}; the download was removed, try again") from None
    partial.rename(archive)
    return archive


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a tar archive into ``dest`` with progress on stderr.

    Members that would land outside ``dest`` are refused (tarfile's ``data`` filter). The
    archive is extracted into a temporary folder inside ``dest`` whose entries are moved
    into place at the end, so an interrupted extraction leaves no half-filled class folder.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            with progress_bar(len(members), f"extracting {archive.name}", "file") as bar:
                for member in members:
                    tar.extract(member, tmp, filter="data")
                    bar.update()
        for entry in tmp.iterdir():
            target = dest / entry.name
            if target.is_dir() and entry.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_speech_commands(root: Path) -> Path:
    """Download, verify and extract Speech Commands v2 into ``root`` (only when the user asks)."""
    root = Path(root).expanduser()
    extract_archive(fetch_archive(DOWNLOAD_URL, root), root)
    return check_root(root)


def download_test_archive(test_root: Path, root: Path) -> Path:
    """Download, verify and extract the test archive into ``test_root`` (only when the user asks)."""
    test_root = Path(test_root).expanduser()
    extract_archive(fetch_archive(TEST_ARCHIVE_URL, test_root), test_root)
    return check_test_root(test_root, root)
