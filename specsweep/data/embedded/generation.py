"""What both embedded datasets share: parallel synthesis, speakers, noise, WAV files and
the ``.complete`` marker of a finished set.

A set is a deterministic function of its parameters: the same seed gives byte-identical
files, whatever the number of worker processes (across machines, only as far as libespeak-ng,
numpy and torch compute bit-identical floats there). It is written into a temporary sibling
folder and renamed into place at the end, with a ``.complete`` marker holding the generation
parameters: an interrupted generation is never taken for a finished one, and a repeated call
with the same parameters returns at once.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile

from specsweep.data.cache import build_atomically, default_cache_root
from specsweep.data.progressbar import progress_bar
from specsweep.data.synth import RATE_RANGE, Synthesizer, resample_many

SAMPLE_RATE = 16000
MARKER = ".complete"
FORMAT_VERSION = 1
_FRAME = 0.010
_MARGIN = 0.020
_RESAMPLE_BATCH = 64
# Starting spawned workers costs about a second; smaller jobs run in-process.
_POOL_MIN_JOBS = 64


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def _map_ordered(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> Iterator[Any]:
    """``map(fn, jobs)``, in a pool of ``workers`` spawned processes when that pays off.

    Results only depend on each job, so the order of completion cannot change the output.
    ``spawn`` rather than ``fork``: the parent may run torch's OpenMP pool or Ray threads,
    which a forked child can deadlock on.
    """
    if workers <= 1 or len(jobs) < _POOL_MIN_JOBS:
        for job in jobs:
            yield fn(job)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield from pool.map(fn, jobs, chunksize=8)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _normalise(params: Dict[str, Any]) -> Dict[str, Any]:
    # Tuples and lists compare equal after a JSON round trip, as they do in the marker.
    return json.loads(json.dumps(params, sort_keys=True))


def _params_digest(params: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_normalise(params), sort_keys=True).encode()).hexdigest()[:12]


def _read_marker(root: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, params: Dict[str, Any]) -> bool:
    """Whether ``root`` holds the set generated with ``params``; FileExistsError when it
    holds one generated with other parameters."""
    marker = _read_marker(root)
    if marker is not None and marker != _normalise(params):
        raise FileExistsError(f"{root} holds a dataset generated with other parameters; remove it or pick another folder")
    return marker is not None


def generate(root: Union[str, Path], params: Dict[str, Any], build: Callable[..., None],
              workers: Optional[int], progress: bool) -> Path:
    """``build(folder, params, workers, progress, name)`` into a temporary sibling of
    ``root``, renamed into place with the ``.complete`` marker (see
    :func:`~specsweep.data.cache.build_atomically`); at once when ``root`` is complete."""
    n_workers = _default_workers() if workers is None else workers
    name = Path(root).name

    def write(folder: Path) -> None:
        build(folder, params, n_workers, progress, name)
        (folder / MARKER).write_text(json.dumps(_normalise(params), sort_keys=True, indent=1) + "\n")

    return build_atomically(Path(root), lambda folder: _is_complete(folder, params), write, MARKER)


def ensure(cache_dir: Optional[Union[str, Path]], prefix: str, params: Dict[str, Any],
            build: Callable[..., None], workers: Optional[int], progress: bool) -> Path:
    """:func:`generate` into ``<cache_dir>/<prefix>-<hash of params>``."""
    parent = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
    return generate(parent / f"{prefix}-{_params_digest(params)}", params, build, workers, progress)


def _trim(audio: np.ndarray, sample_rate: int, floor_db: float = -45.0) -> np.ndarray:
    """Cut leading and trailing silence, keeping a short margin.

    Frames quieter than ``floor_db`` relative to the loudest 10 ms frame count as silence.

    Parameters
    ----------
    audio : ndarray, shape (samples,)

    Returns
    -------
    ndarray, shape (trimmed,)
    """
    frame = int(_FRAME * sample_rate)
    n = len(audio) // frame
    if n == 0:
        return audio
    energy = (audio[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    if energy.max() <= 0:
        return audio[:0]
    active = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 10))
    margin = int(_MARGIN * sample_rate)
    start = max(0, active[0] * frame - margin)
    end = min(len(audio), (active[-1] + 1) * frame + margin)
    return audio[start:end]


def _speech_job(job: Tuple[str, str, int, int, int, Optional[float], Optional[str]]) -> Tuple[np.ndarray, List[str]]:
    """Worker: ``(text, voice, rate, pitch, seed, max_seconds, phoneme_voice)`` to trimmed
    speech at the synthesizer's rate and, if ``phoneme_voice`` is given, its phonemes.

    A word longer than ``max_seconds`` is spoken again, faster, so it fits the window.
    Resampling is left to the parent so that workers never import torch.
    """
    text, voice, rate, pitch, seed, max_seconds, phoneme_voice = job
    synth = Synthesizer()
    for _ in range(4):
        speech = _trim(synth.synthesize(text, voice=voice, rate=rate, pitch=pitch, seed=seed), synth.sample_rate)
        seconds = len(speech) / synth.sample_rate
        if max_seconds is None or seconds <= max_seconds or rate >= RATE_RANGE[1]:
            break
        rate = min(RATE_RANGE[1], int(np.ceil(rate * seconds / max_seconds * 1.05)))
    if max_seconds is not None:
        speech = speech[: int(max_seconds * synth.sample_rate)]
    phonemes = synth.phonemes(text, voice=phoneme_voice) if phoneme_voice else []
    return speech, phonemes


def synthesized(jobs: Sequence[Tuple[Any, ...]], workers: int, what: str, unit: str,
                 progress: bool) -> Iterator[Tuple[np.ndarray, List[str]]]:
    """16 kHz speech and phonemes of every :func:`_speech_job`, in job order, counted on
    a progress bar (``synthesizing <what>``, one ``unit`` a job) when ``progress``.

    Resampled in batches of fixed composition (consecutive jobs), so the bits do not
    depend on the number of workers.
    """
    results = _map_ordered(_speech_job, jobs, workers)
    try:
        with progress_bar(len(jobs), f"synthesizing {what}", unit, enabled=progress) as bar:
            while True:
                chunk = list(itertools.islice(results, _RESAMPLE_BATCH))
                if not chunk:
                    return
                speech = resample_many([c[0] for c in chunk], Synthesizer.sample_rate, SAMPLE_RATE)
                for item in zip(speech, (c[1] for c in chunk)):
                    yield item
                    bar.update()
    finally:
        results.close()


def to_int16(audio: np.ndarray) -> np.ndarray:
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    return np.round(audio * 32767.0).astype(np.int16)


def write_wav(path: Path, audio: np.ndarray) -> None:
    # Encoded in memory: closing a real file makes libsndfile fsync it, which costs more
    # than the rest of a clip's generation on slow disks; the final rename is the commit.
    buffer = io.BytesIO()
    soundfile.write(buffer, to_int16(audio), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def shaped_noise(rng: np.random.Generator, samples: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ``1 / f**exponent`` (0 white, 1 pink, 2 brown),
    above 20 Hz, unit RMS.

    Returns
    -------
    ndarray, shape (samples,), float64
    """
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1.0 / SAMPLE_RATE)
    gain = np.zeros_like(freqs)
    audible = freqs >= 20.0
    gain[audible] = freqs[audible] ** (-exponent / 2.0)
    noise = np.fft.irfft(spectrum * gain, n=samples)
    return noise / max(float(np.sqrt((noise**2).mean())), 1e-12)


def mix_at_snr(speech_power: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise_power = max(float((noise**2).mean()), 1e-20)
    return noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))


@dataclass(frozen=True)
class Speaker:
    id: str
    voice: str
    rate: int
    pitch: int
    split: str

    def take(self, rng: np.random.Generator, params: Dict[str, Any]) -> Dict[str, Any]:
        """The ``speaker``, ``rate`` and ``pitch`` fields of one :class:`Recording` by this
        speaker: repetitions vary a little, as a person's do, within the set's
        ``rate_range`` and ``pitch_range``."""
        rate = int(np.clip(self.rate + rng.integers(-8, 9), *params["rate_range"]))
        pitch = int(np.clip(self.pitch + rng.integers(-4, 5), *params["pitch_range"]))
        return {"speaker": self, "rate": rate, "pitch": pitch}


@dataclass(frozen=True)
class Recording:
    """What every planned recording draws: the ``speaker``, this take's ``rate`` and
    ``pitch``, the synthesizer's seed, the peak level and the speech-to-noise ratio."""

    speaker: Speaker
    rate: int
    pitch: int
    gain_db: float
    snr_db: float
    synth_seed: int

    def speech_job(self, text: str, max_seconds: Optional[float], phonemes: bool) -> Tuple[Any, ...]:
        """The :func:`_speech_job` speaking ``text`` as this recording, with its phonemes
        in the speaker's language voice when ``phonemes``."""
        phoneme_voice = self.speaker.voice.partition("+")[0] if phonemes else None
        return (text, self.speaker.voice, self.rate, self.pitch, self.synth_seed, max_seconds, phoneme_voice)


def draw_speakers(params: Dict[str, Any], stream: int, split_names: Tuple[str, str, str]) -> List[Speaker]:
    """``params["n_speakers"]`` distinct "speakers" (one of ``params["voices"]``, a rate
    and a pitch in the set's ranges), 80/10/10 over ``split_names``, drawn from the random
    ``stream`` of the set's seed."""
    rng = np.random.default_rng([params["seed"], stream])
    n, voices = params["n_speakers"], params["voices"]
    rate_range, pitch_range = params["rate_range"], params["pitch_range"]
    drawn: Dict[str, Tuple[str, int, int]] = {}
    while len(drawn) < n:
        voice = voices[int(rng.integers(len(voices)))]
        rate = int(rng.integers(rate_range[0], rate_range[1] + 1))
        pitch = int(rng.integers(pitch_range[0], pitch_range[1] + 1))
        speaker_id = hashlib.sha1(f"{voice}|{rate}|{pitch}".encode()).hexdigest()[:8]
        drawn.setdefault(speaker_id, (voice, rate, pitch))
    ids = sorted(drawn)
    order = rng.permutation(len(ids))
    n_held = max(1, int(round(0.1 * n)))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[ids[i]] = split_names[1] if rank < n_held else split_names[2] if rank < 2 * n_held else split_names[0]
    return [Speaker(i, *drawn[i], split_of[i]) for i in ids]


def check_words(words: Iterable[str], what: str) -> Tuple[str, ...]:
    words = tuple(words)
    bad = [w for w in words if not (w.isascii() and w.isalpha() and w.islower())]
    if bad or len(set(words)) != len(words):
        raise ValueError(f"{what} must be distinct lowercase ASCII words, got {list(words)}")
    return words


def check_range(value: Sequence[float], what: str, low: float, high: float) -> Tuple[Any, Any]:
    lo, hi = value
    if not low <= lo <= hi <= high:
        raise ValueError(f"{what} must satisfy {low} <= low <= high <= {high}, got {tuple(value)}")
    return lo, hi


def voice_params(synth: Synthesizer, dataset: str, seed: int, rate_range: Tuple[int, int],
                  pitch_range: Tuple[int, int], snr_db: Tuple[float, float], gain_db: Tuple[float, float]) -> Dict[str, Any]:
    """The generation parameters both embedded sets share, checked and made JSON-ready."""
    return {
        "dataset": dataset,
        "format": FORMAT_VERSION,
        "espeak": synth.version,
        "seed": int(seed),
        "rate_range": list(check_range(rate_range, "rate_range", *RATE_RANGE)),
        "pitch_range": list(check_range(pitch_range, "pitch_range", 0, 99)),
        "snr_db": list(check_range(snr_db, "snr_db", -20.0, 100.0)),
        "gain_db": list(check_range(gain_db, "gain_db", -60.0, 0.0)),
    }

