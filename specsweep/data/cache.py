"""Decoded-audio cache: a dataset split decoded once per machine into one memory-mapped
int16 array, shared by every trial (and every data-loader worker) on that machine.

Layout of one cache entry ``<cache_root>/audio/<key>/``::

    audio.int16   all clips, concatenated, raw little-endian int16
    index.npz     offsets, lengths (samples), target_offsets, targets (int32)
    meta.json     sample rate, number of clips, the source description

``key`` hashes the source list (paths, sizes, modification times, slices, labels), so a
changed file list or a rewritten file gives a new entry instead of stale audio.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import soundfile
import torch
from torch.utils.data import Dataset

from specsweep.data.progressbar import progress_bar


def default_cache_root() -> Path:
    """``$SPECSWEEP_CACHE`` or ``~/.cache/specsweep``."""
    return Path(os.environ.get("SPECSWEEP_CACHE", Path.home() / ".cache" / "specsweep")).expanduser()


def build_atomically(folder: Path, complete: Callable[[Path], bool], write: Callable[[Path], None],
                     mark: str) -> Path:
    """Make ``folder`` by ``write``-ing a temporary sibling and renaming it into place,
    unless ``complete(folder)`` already holds; return ``folder`` (absolute).

    Safe to call from several processes at once: a file lock next to ``folder`` lets one
    build while the others wait and then find it complete, and the rename is atomic, so
    a reader never sees a half-written folder. Temporary siblings left by a killed build
    are removed by the next one.

    Parameters
    ----------
    folder : path
        Destination; an existing folder that is not complete is replaced only when empty.
    complete : callable
        ``complete(folder)``: whether a finished build is there (it may raise to refuse a
        folder, e.g. one built with other parameters).
    write : callable
        ``write(tmp)`` fills the empty folder ``tmp``; whatever marks a build complete
        (see ``complete``) must be written last.
    mark : str
        What marks a complete build, for the error message.

    Raises
    ------
    FileExistsError
        ``folder`` exists, is not empty and holds no complete build.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "entry"
    >>> done = lambda f: (f / "done").exists()
    >>> build_atomically(folder, done, lambda tmp: (tmp / "done").write_text("1"), "done").name
    'entry'
    >>> build_atomically(folder, done, lambda tmp: 1 / 0, "done").name  # already complete
    'entry'
    """
    folder = Path(folder).expanduser().absolute()
    if complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete(folder):
            return folder
        if folder.exists():
            if any(folder.iterdir()):
                raise FileExistsError(f"{folder} exists, is not empty and has no {mark} marker; refusing to overwrite it")
            folder.rmdir()
        for stale in folder.parent.glob(f".{folder.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
        try:
            write(tmp)
            # mkdtemp makes the folder private; what it holds is meant to be shared.
            os.chmod(tmp, 0o755)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


class AudioDecodeError(RuntimeError):
    """A source file is missing, truncated or unreadable."""


@dataclass(frozen=True)
class ClipSource:
    """One clip to decode: a file, an optional ``[start, start + frames)`` slice, its targets.

    ``frames=None`` means the whole file from ``start``; ``pad_to`` zero-pads (or crops)
    the clip to a fixed length, as keyword spotting wants one-second clips.
    """

    path: str
    targets: Tuple[int, ...]
    start: int = 0
    frames: Optional[int] = None
    pad_to: Optional[int] = None


def _source_key(sources: Sequence[ClipSource], sample_rate: int) -> str:
    digest = hashlib.sha256(f"v1 sr={sample_rate}\n".encode())
    stats = {}
    for src in sources:
        if src.path not in stats:
            try:
                st = os.stat(src.path)
            except OSError as err:
                raise AudioDecodeError(f"cannot read audio file {src.path}: {err.strerror}") from None
            stats[src.path] = (st.st_size, st.st_mtime_ns)
        size, mtime = stats[src.path]
        digest.update(
            f"{src.path}\t{size}\t{mtime}\t{src.start}\t{src.frames}\t{src.pad_to}\t{src.targets}\n".encode()
        )
    return digest.hexdigest()[:24]


def _decode(src: ClipSource, sample_rate: int) -> np.ndarray:
    try:
        with soundfile.SoundFile(src.path) as f:
            if f.samplerate != sample_rate:
                raise AudioDecodeError(f"{src.path}: sample rate {f.samplerate} Hz, expected {sample_rate} Hz")
            if src.frames is not None and src.start + src.frames > f.frames:
                raise AudioDecodeError(
                    f"{src.path}: slice [{src.start}, {src.start + src.frames}) past its end ({f.frames} samples)"
                )
            f.seek(src.start)
            audio = f.read(frames=-1 if src.frames is None else src.frames, dtype="int16", always_2d=True)
    except AudioDecodeError:
        raise
    except Exception as err:  # soundfile raises several types for unreadable files
        raise AudioDecodeError(f"cannot decode audio file {src.path}: {err}") from None
    expected = None if src.frames is None else src.frames
    if expected is not None and len(audio) != expected:
        raise AudioDecodeError(f"{src.path}: truncated, read {len(audio)} of {expected} samples")
    if len(audio) == 0:
        raise AudioDecodeError(f"{src.path}: no audio samples")
    mono = audio[:, 0]
    if src.pad_to is not None:
        mono = np.pad(mono[: src.pad_to], (0, max(0, src.pad_to - len(mono))))
    return mono


def build_cache(
    sources: Sequence[ClipSource],
    sample_rate: int,
    cache_root: Optional[Path] = None,
    label: str = "audio",
    description: Optional[dict] = None,
) -> Path:
    """Decode ``sources`` into a cache entry unless it exists; return its folder.

    Safe to call from several processes at once: one decodes under a file lock while the
    others wait, and the entry appears by an atomic rename, so a reader never sees a
    half-written cache.

    Raises
    ------
    AudioDecodeError
        Naming the first missing, truncated or unreadable file.
    """
    if not sources:
        raise ValueError(f"{label}: no clips to cache")
    key = _source_key(sources, sample_rate)
    return build_atomically(
        Path(cache_root or default_cache_root()) / "audio" / key,
        lambda folder: (folder / "meta.json").exists(),
        lambda folder: _write_entry(folder, sources, sample_rate, label, description),
        "meta.json",
    )


def _write_entry(
    folder: Path, sources: Sequence[ClipSource], sample_rate: int, label: str, description: Optional[dict]
) -> None:
    lengths = np.zeros(len(sources), dtype=np.int64)
    target_lengths = np.array([len(s.targets) for s in sources], dtype=np.int64)
    with open(folder / "audio.int16", "wb") as out, progress_bar(len(sources), f"decoding {label}", "clip") as bar:
        for i, src in enumerate(sources):
            clip = _decode(src, sample_rate)
            out.write(clip.astype("<i2", copy=False).tobytes())
            lengths[i] = len(clip)
            bar.update()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    target_offsets = np.concatenate([[0], np.cumsum(target_lengths)[:-1]])
    targets = np.fromiter((t for s in sources for t in s.targets), dtype=np.int32, count=int(target_lengths.sum()))
    np.savez(folder / "index.npz", offsets=offsets, lengths=lengths, target_offsets=target_offsets,
             target_lengths=target_lengths, targets=targets)
    meta = {"sample_rate": sample_rate, "clips": len(sources), "samples": int(lengths.sum()),
            "label": label, "source": description or {}}
    # meta.json is written last: its presence marks a complete entry.
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


class CachedAudio(Dataset):
    """Clips of a cache entry as ``(waveform float32 (samples,), targets int64 (n,))``.

    The memory map is opened lazily in each process, so data-loader workers and
    concurrent trials share the page cache instead of holding copies.

    Examples
    --------
    >>> import tempfile, numpy as np, soundfile
    >>> d = Path(tempfile.mkdtemp()); soundfile.write(d / "a.wav", np.zeros(800, "int16"), 16000)
    >>> ds = CachedAudio(build_cache([ClipSource(str(d / "a.wav"), (3,), pad_to=1600)], 16000, d / "c"))
    >>> wave, target = ds[0]
    >>> tuple(wave.shape), target.tolist()
    ((1600,), [3])
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            self.meta = json.loads((self.folder / "meta.json").read_text())
            with np.load(self.folder / "index.npz") as index:
                self.offsets = index["offsets"]
                self.lengths = index["lengths"]
                self.target_offsets = index["target_offsets"]
                self.target_lengths = index["target_lengths"]
                self.targets = index["targets"]
            samples = int(self.offsets[-1] + self.lengths[-1]) if len(self.offsets) else 0
            size = (self.folder / "audio.int16").stat().st_size
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise AudioDecodeError(f"{self.folder}: damaged cache entry ({type(err).__name__}: {err}); delete the "
                                   f"folder and it is decoded again") from None
        # A truncated audio file would give short clips that fail far from here.
        if size != 2 * samples:
            raise AudioDecodeError(f"{self.folder}: damaged cache entry (audio.int16 holds {size // 2} samples, the "
                                   f"index {samples}); delete the folder and it is decoded again")
        self._audio: Optional[np.memmap] = None

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    def _memmap(self) -> np.memmap:
        if self._audio is None:
            self._audio = np.memmap(self.folder / "audio.int16", dtype="<i2", mode="r")
        return self._audio

    def __getstate__(self) -> dict:
        # Pickled into worker processes: each opens its own map of the shared file.
        state = self.__dict__.copy()
        state["_audio"] = None
        return state

    def __len__(self) -> int:
        return len(self.offsets)

    def clip_targets(self, i: int) -> np.ndarray:
        start = self.target_offsets[i]
        return self.targets[start : start + self.target_lengths[i]]

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        start = self.offsets[i]
        clip = np.asarray(self._memmap()[start : start + self.lengths[i]], dtype=np.float32) / 32768.0
        return torch.from_numpy(clip), torch.from_numpy(self.clip_targets(i).astype(np.int64))

    def first_targets(self) -> np.ndarray:
        """The first target of every clip (the class, for keyword spotting)."""
        return self.targets[self.target_offsets]
