"""Google Speech Commands v2 in its on-disk layout, as the 12-class task.

The 10 keywords, ``_unknown_`` (every other word) and ``_silence_`` (one-second slices
of ``_background_noise_``), split by the official ``validation_list.txt`` and
``testing_list.txt``. The embedded synthetic set uses the same layout and this loader.
"""

from __future__ import annotations

import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Dict, List

import soundfile

from specsweep.data.cache import ClipSource

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = KEYWORDS + ("_unknown_", "_silence_")
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
SPLITS = ("train", "val", "test")
DOWNLOAD_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"

# Share of each background-noise file that each split slices its silence from, so
# that no noise sample is heard in two splits.
_SILENCE_SPANS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


class DatasetMissingError(FileNotFoundError):
    """The dataset root does not exist or lacks the expected files."""


def check_root(root: Path) -> Path:
    root = Path(root).expanduser()
    missing = [name for name in ("validation_list.txt", "testing_list.txt", "_background_noise_") if not (root / name).exists()]
    if missing:
        raise DatasetMissingError(
            f"Speech Commands v2 not found at {root} (missing {', '.join(missing)}). "
            f"Fetch it with `specsweep data prepare speechcommands --root {root} --download` "
            "or point data.root at an extracted speech_commands_v0.02 folder."
        )
    return root


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def speech_commands_sources(root: Path, silence_per_split: Dict[str, int] | None = None) -> Dict[str, List[ClipSource]]:
    """Clip sources of every split, labels as indices into :data:`CLASSES`.

    Parameters
    ----------
    root : Path
        Folder holding one sub-folder per word, the two list files and ``_background_noise_``.
    silence_per_split : dict, optional
        Number of ``_silence_`` clips per split; by default as many as the average keyword.
    """
    root = check_root(root)
    val_files = _read_list(root / "validation_list.txt")
    test_files = _read_list(root / "testing_list.txt")
    sources: Dict[str, List[ClipSource]] = {split: [] for split in SPLITS}
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        label = CLASSES.index(word_dir.name) if word_dir.name in KEYWORDS else CLASSES.index("_unknown_")
        for wav in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{wav.name}"
            split = "val" if rel in val_files else "test" if rel in test_files else "train"
            sources[split].append(ClipSource(str(wav), (label,), pad_to=CLIP_SAMPLES))
    noise_files = sorted((root / "_background_noise_").glob("*.wav"))
    if not noise_files:
        raise DatasetMissingError(f"no WAV files in {root / '_background_noise_'} to slice _silence_ clips from")
    for split in SPLITS:
        keyword_clips = sum(1 for s in sources[split] if s.targets[0] < len(KEYWORDS))
        wanted = (silence_per_split or {}).get(split, max(1, keyword_clips // len(KEYWORDS)))
        sources[split] += _silence_slices(noise_files, split, wanted)
    return sources


def _silence_slices(noise_files: List[Path], split: str, count: int) -> List[ClipSource]:
    lo, hi = _SILENCE_SPANS[split]
    spans = []
    for path in noise_files:
        frames = soundfile.info(str(path)).frames
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


def download_speech_commands(root: Path) -> Path:
    """Download and extract Speech Commands v2 into ``root`` (only when the user asks)."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "speech_commands_v0.02.tar.gz"
    if not archive.exists():
        def hook(blocks: int, block_size: int, total: int) -> None:
            done = blocks * block_size
            sys.stderr.write(f"\rdownloading {archive.name}: {done / 1e6:.0f}/{total / 1e6:.0f} MB")
            sys.stderr.flush()

        partial = archive.with_suffix(".partial")
        urllib.request.urlretrieve(DOWNLOAD_URL, partial, reporthook=hook)
        partial.rename(archive)
        sys.stderr.write("\n")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for i, member in enumerate(members, 1):
            tar.extract(member, root, filter="data")
            if i % 5000 == 0 or i == len(members):
                sys.stderr.write(f"\rextracting: {i}/{len(members)} files")
        sys.stderr.write("\n")
    return check_root(root)
