"""Embedded datasets synthesized offline with espeak-ng: nothing to download.

* A spoken-keyword set in the Google Speech Commands v2 on-disk layout (one folder per
  word of one-second 16 kHz clips, ``validation_list.txt``, ``testing_list.txt``,
  ``_background_noise_/``), read by :mod:`specsweep.data.speechcommands` as the usual
  12-class task (10 keywords, ``_unknown_``, ``_silence_``).
* A phoneme-recognition corpus of short synthesized sentences with their espeak phoneme
  transcriptions, for CTC training.

Both are deterministic functions of their parameters: the same seed gives byte-identical
files, whatever the number of worker processes (across machines, only as far as libespeak-ng,
numpy and torch compute bit-identical floats there).
They are written into a temporary sibling folder and renamed into place at the end, with a
``.complete`` marker holding the generation parameters: an interrupted generation is never
taken for a finished one, and a repeated call with the same parameters returns at once.
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
from specsweep.data.speechcommands import CLIP_SAMPLES, KEYWORDS, SILENCE_SPANS
from specsweep.data.synth import DEFAULT_VARIANTS, RATE_RANGE, Synthesizer, resample_many

SAMPLE_RATE = 16000
MARKER = ".complete"
FORMAT_VERSION = 1

# The words of Speech Commands v1 besides its KEYWORDS, spoken as ``_unknown_``.
UNKNOWN_WORDS: Tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
    "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
)
NOISE_KINDS: Tuple[str, ...] = ("white_noise", "pink_noise", "brown_noise", "hum")

#: Words the phoneme-corpus sentences are drawn from: everyday English with a broad
#: coverage of the espeak en-us phoneme set.
SENTENCE_WORDS: Tuple[str, ...] = (
    "a", "the", "this", "that", "these", "those", "my", "your", "his", "her", "our", "their",
    "i", "you", "he", "she", "we", "they", "it", "who", "what", "where", "when", "why", "how",
    "is", "was", "are", "were", "be", "have", "has", "had", "do", "does", "did", "will", "can",
    "could", "should", "would", "may", "must", "not", "and", "or", "but", "if", "so", "then",
    "in", "on", "at", "to", "from", "with", "under", "over", "near", "through", "between",
    "big", "small", "red", "blue", "green", "yellow", "orange", "purple", "brown", "black",
    "white", "old", "new", "good", "bad", "hot", "cold", "warm", "cool", "long", "short",
    "fast", "slow", "happy", "sad", "quiet", "loud", "early", "late", "young", "bright", "dark",
    "man", "woman", "child", "boy", "girl", "friend", "teacher", "doctor", "farmer", "king",
    "queen", "hand", "eye", "head", "foot", "voice", "door", "window", "book", "table", "chair",
    "cup", "milk", "bread", "cheese", "apple", "sugar", "water", "coffee", "fish", "bird", "dog",
    "cat", "horse", "cow", "sheep", "pig", "chicken", "mouse", "tree", "flower", "garden",
    "house", "school", "church", "village", "city", "road", "bridge", "river", "sea", "ship",
    "boat", "train", "plane", "car", "bicycle", "sun", "moon", "star", "rain", "snow", "wind",
    "fire", "stone", "hill", "mountain", "forest", "island", "morning", "evening", "night",
    "day", "week", "year", "time", "music", "song", "story", "letter", "question", "answer",
    "run", "walk", "jump", "sit", "stand", "eat", "drink", "sleep", "read", "write", "sing",
    "play", "open", "close", "give", "take", "make", "see", "hear", "say", "think", "know",
    "want", "like", "love", "help", "stop", "start", "find", "keep", "hold", "turn", "move",
    "live", "work", "bring", "carry", "push", "pull", "wash", "watch", "wait", "learn",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "hundred",
    "yes", "no", "up", "down", "left", "right", "off", "go", "very", "always", "never",
    "again", "today", "tomorrow", "yesterday", "here", "there", "everywhere", "together",
    "thing", "measure", "treasure", "vision", "judge", "june", "thank", "thought", "though",
    "zoo", "zebra", "quick", "jazz", "shoe", "choice", "joy", "boy", "toy", "noise", "coin",
)

PHONEME_SPLITS = ("train", "valid", "test")
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


def _generate(root: Union[str, Path], params: Dict[str, Any], build: Callable[..., None],
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


def _ensure(cache_dir: Optional[Union[str, Path]], prefix: str, params: Dict[str, Any],
            build: Callable[..., None], workers: Optional[int], progress: bool) -> Path:
    """:func:`_generate` into ``<cache_dir>/<prefix>-<hash of params>``."""
    parent = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
    return _generate(parent / f"{prefix}-{_params_digest(params)}", params, build, workers, progress)


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


def _synthesized(jobs: Sequence[Tuple[Any, ...]], workers: int, what: str, unit: str,
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


def _to_int16(audio: np.ndarray) -> np.ndarray:
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    return np.round(audio * 32767.0).astype(np.int16)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    # Encoded in memory: closing a real file makes libsndfile fsync it, which costs more
    # than the rest of a clip's generation on slow disks; the final rename is the commit.
    buffer = io.BytesIO()
    soundfile.write(buffer, _to_int16(audio), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def _shaped_noise(rng: np.random.Generator, samples: int, exponent: float) -> np.ndarray:
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


def _background_noise(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One long background recording, shape (seconds * 16000,), float64 in (-1, 1)."""
    n = int(round(seconds * SAMPLE_RATE))
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        mains = rng.choice([50.0, 60.0])
        wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
        tone = sum((0.6**h) * np.sin(2 * np.pi * mains * (h + 1) * t + rng.uniform(0, 2 * np.pi)) for h in range(6))
        noise = tone * wobble + 0.05 * _shaped_noise(rng, n, 1.0)
        level = 0.04
    else:
        exponent = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}[kind]
        noise = _shaped_noise(rng, n, exponent)
        level = {"white_noise": 0.03, "pink_noise": 0.05, "brown_noise": 0.08}[kind]
    noise = noise * (level / max(float(np.sqrt((noise**2).mean())), 1e-12))
    return np.clip(noise, -0.99, 0.99)


def _mix_at_snr(speech_power: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise_power = max(float((noise**2).mean()), 1e-20)
    return noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))


@dataclass(frozen=True)
class _Speaker:
    id: str
    voice: str
    rate: int
    pitch: int
    split: str

    def take(self, rng: np.random.Generator, params: Dict[str, Any]) -> Dict[str, Any]:
        """The ``speaker``, ``rate`` and ``pitch`` fields of one :class:`_Recording` by this
        speaker: repetitions vary a little, as a person's do, within the set's
        ``rate_range`` and ``pitch_range``."""
        rate = int(np.clip(self.rate + rng.integers(-8, 9), *params["rate_range"]))
        pitch = int(np.clip(self.pitch + rng.integers(-4, 5), *params["pitch_range"]))
        return {"speaker": self, "rate": rate, "pitch": pitch}


@dataclass(frozen=True)
class _Recording:
    """What every planned recording draws: the ``speaker``, this take's ``rate`` and
    ``pitch``, the synthesizer's seed, the peak level and the speech-to-noise ratio."""

    speaker: _Speaker
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


def _draw_speakers(params: Dict[str, Any], stream: int, split_names: Tuple[str, str, str]) -> List[_Speaker]:
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
    return [_Speaker(i, *drawn[i], split_of[i]) for i in ids]


def _check_words(words: Iterable[str], what: str) -> Tuple[str, ...]:
    words = tuple(words)
    bad = [w for w in words if not (w.isascii() and w.isalpha() and w.islower())]
    if bad or len(set(words)) != len(words):
        raise ValueError(f"{what} must be distinct lowercase ASCII words, got {list(words)}")
    return words


def _check_range(value: Sequence[float], what: str, low: float, high: float) -> Tuple[Any, Any]:
    lo, hi = value
    if not low <= lo <= hi <= high:
        raise ValueError(f"{what} must satisfy {low} <= low <= high <= {high}, got {tuple(value)}")
    return lo, hi


def _voice_params(synth: Synthesizer, dataset: str, seed: int, rate_range: Tuple[int, int],
                  pitch_range: Tuple[int, int], snr_db: Tuple[float, float], gain_db: Tuple[float, float]) -> Dict[str, Any]:
    """The generation parameters both embedded sets share, checked and made JSON-ready."""
    return {
        "dataset": dataset,
        "format": FORMAT_VERSION,
        "espeak": synth.version,
        "seed": int(seed),
        "rate_range": list(_check_range(rate_range, "rate_range", *RATE_RANGE)),
        "pitch_range": list(_check_range(pitch_range, "pitch_range", 0, 99)),
        "snr_db": list(_check_range(snr_db, "snr_db", -20.0, 100.0)),
        "gain_db": list(_check_range(gain_db, "gain_db", -60.0, 0.0)),
    }


# ---------------------------------------------------------------------------------------
# Keyword spotting


def _kws_params(
    seed: int = 0,
    clips_per_word: int = 120,
    clips_per_unknown: int = 25,
    keywords: Sequence[str] = KEYWORDS,
    unknown_words: Sequence[str] = UNKNOWN_WORDS,
    n_speakers: int = 100,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    rate_range: Tuple[int, int] = (130, 220),
    pitch_range: Tuple[int, int] = (20, 80),
    snr_db: Tuple[float, float] = (5.0, 30.0),
    gain_db: Tuple[float, float] = (-20.0, -3.0),
    noise_seconds: float = 20.0,
) -> Dict[str, Any]:
    """The checked, JSON-ready parameters of :func:`generate_speech_commands` (see there):
    what its ``.complete`` marker holds and the cache folder's name hashes."""
    keywords = _check_words(keywords, "keywords")
    unknown_words = _check_words(unknown_words, "unknown_words")
    if set(keywords) & set(unknown_words):
        raise ValueError(f"keywords and unknown_words overlap: {sorted(set(keywords) & set(unknown_words))}")
    if clips_per_word < 1 or clips_per_unknown < 0 or n_speakers < 3:
        raise ValueError("need clips_per_word >= 1, clips_per_unknown >= 0 and n_speakers >= 3")
    if noise_seconds < 12.0:
        raise ValueError("noise_seconds must be at least 12 so that each split's 10% share holds one-second slices")
    synth = Synthesizer()
    return {
        **_voice_params(synth, "embedded_speech_commands", seed, rate_range, pitch_range, snr_db, gain_db),
        "clips_per_word": int(clips_per_word),
        "clips_per_unknown": int(clips_per_unknown),
        "keywords": list(keywords),
        "unknown_words": list(unknown_words),
        "n_speakers": int(n_speakers),
        "voices": synth.voices(tuple(variants)),
        "noise_seconds": float(noise_seconds),
    }


@dataclass(frozen=True)
class _ClipPlan(_Recording):
    """One keyword clip: the ``word``, its ``path`` in the set, and where it sits in the
    window (``shift``, 0 at the start to 1 at the end) over which background-noise file
    (``noise``, from ``noise_offset`` of its split's share)."""

    word: str
    path: str
    shift: float
    noise: int
    noise_offset: float


def _plan_kws(params: Dict[str, Any]) -> List[_ClipPlan]:
    """Every clip's random choices, drawn up front so rendering is a pure function."""
    words = [(w, params["clips_per_word"]) for w in params["keywords"]]
    words += [(w, params["clips_per_unknown"]) for w in params["unknown_words"]]
    seed = params["seed"]
    speakers = _draw_speakers(params, 0, ("train", "val", "test"))
    plans = []
    for word_index, (word, count) in enumerate(words):
        word_rng = np.random.default_rng([seed, 1, word_index])
        # A per-word speaker order spreads every word over all speakers (and so over the
        # splits in the 80/10/10 speaker proportion) even when count < n_speakers.
        order = word_rng.permutation(len(speakers))
        for k in range(count):
            speaker = speakers[order[k % len(speakers)]]
            repeat = k // len(speakers)
            rng = np.random.default_rng([seed, 2, word_index, k])
            plans.append(
                _ClipPlan(
                    word=word,
                    path=f"{word}/{speaker.id}_nohash_{repeat}.wav",
                    **speaker.take(rng, params),
                    shift=float(rng.uniform()),
                    gain_db=float(rng.uniform(*params["gain_db"])),
                    noise=int(rng.integers(len(NOISE_KINDS))),
                    noise_offset=float(rng.uniform()),
                    snr_db=float(rng.uniform(*params["snr_db"])),
                    synth_seed=int(rng.integers(2**31)),
                )
            )
    return plans


def _render_clip(speech: np.ndarray, plan: _ClipPlan, noises: Sequence[np.ndarray]) -> np.ndarray:
    """Place a word in a one-second window over background noise.

    Parameters
    ----------
    speech : ndarray, shape (samples <= 16000,)
        Trimmed 16 kHz speech.

    Returns
    -------
    ndarray, shape (16000,), float64
    """
    speech = speech.astype(np.float64)
    peak = max(float(np.abs(speech).max()), 1e-9)
    speech = speech * (10 ** (plan.gain_db / 20) / peak)
    offset = int(round(plan.shift * (CLIP_SAMPLES - len(speech))))
    clip = np.zeros(CLIP_SAMPLES)
    clip[offset : offset + len(speech)] = speech
    noise = noises[plan.noise]
    # The loader's silence share of this split, so no noise sample is heard in two splits.
    lo, hi = SILENCE_SPANS[plan.speaker.split]
    first, last = int(lo * len(noise)), int(hi * len(noise)) - CLIP_SAMPLES
    start = first + int(plan.noise_offset * max(0, last - first))
    clip += _mix_at_snr(float((speech**2).mean()), noise[start : start + CLIP_SAMPLES], plan.snr_db)
    return clip


def _build_kws(folder: Path, params: Dict[str, Any], workers: int, progress: bool, name: str) -> None:
    plans = _plan_kws(params)
    noise_dir = folder / "_background_noise_"
    noise_dir.mkdir()
    noises = []
    for i, kind in enumerate(NOISE_KINDS):
        noise = _background_noise(kind, params["noise_seconds"], np.random.default_rng([params["seed"], 3, i]))
        _write_wav(noise_dir / f"{kind}.wav", noise)
        # Mix from the quantised file content, exactly what the loader slices silence from.
        noises.append(_to_int16(noise).astype(np.float64) / 32767.0)
    for word in params["keywords"] + params["unknown_words"]:
        (folder / word).mkdir()
    # The word must fit the window with room to move: at most 0.9 s of it.
    jobs = [p.speech_job(p.word, 0.9, phonemes=False) for p in plans]
    for plan, (speech, _) in zip(plans, _synthesized(jobs, workers, f"keyword set {name}", "clip", progress)):
        _write_wav(folder / plan.path, _render_clip(speech[:CLIP_SAMPLES], plan, noises))
    lists = {"val": "validation_list.txt", "test": "testing_list.txt"}
    for split, filename in lists.items():
        entries = sorted(p.path for p in plans if p.speaker.split == split)
        (folder / filename).write_text("".join(f"{e}\n" for e in entries))
    speakers = sorted({p.speaker for p in plans}, key=lambda s: s.id)
    (folder / "speakers.tsv").write_text(
        "speaker\tvoice\trate\tpitch\tsplit\n" + "".join(f"{s.id}\t{s.voice}\t{s.rate}\t{s.pitch}\t{s.split}\n" for s in speakers)
    )


def generate_speech_commands(root: Union[str, Path], seed: int = 0, workers: Optional[int] = None,
                             progress: bool = True, **params: Any) -> Path:
    """Synthesize a small spoken-keyword set in the Speech Commands v2 layout at ``root``.

    Layout::

        root/<word>/<speaker>_nohash_<i>.wav    1 s, 16 kHz, mono, int16 PCM
        root/validation_list.txt                 "<word>/<file>.wav" per line
        root/testing_list.txt
        root/_background_noise_/{white_noise,pink_noise,brown_noise,hum}.wav
        root/speakers.tsv                        speaker id, voice, rate, pitch, split
        root/.complete                           the generation parameters (JSON)

    A "speaker" is an espeak voice (language voice + variant) with a base rate and pitch;
    its repetitions of a word vary the rate by up to 8 wpm and the pitch by up to 4.
    Splits are by speaker, 80/10/10, like the real set's hash of the speaker id. Each
    clip has the word at a random position fully inside the window, a random peak level
    (``gain_db``) and background noise from the noise files at an SNR drawn from
    ``snr_db`` (speech power over the word, noise power over the window), taken from the
    same 80/10/10 time share of the noise file that the loader slices that split's
    ``_silence_`` clips from.

    Parameters
    ----------
    root : path
        Destination; must not exist, be empty, or hold a set with the same parameters
        (then this call returns at once).
    seed : int
        Everything random derives from it: same seed, byte-identical files.
    **params
        The generation parameters, each with its default:

        clips_per_word : int, default 120
            Clips of each keyword.
        clips_per_unknown : int, default 25
            Clips of each word in ``unknown_words`` (pooled into ``_unknown_`` by the loader).
        keywords : sequence of str, default the loader's ``KEYWORDS``
        unknown_words : sequence of str, default :data:`UNKNOWN_WORDS`
        n_speakers : int, default 100
            Distinct voice/rate/pitch speakers; at least 3.
        variants : sequence of str, default ``synth.DEFAULT_VARIANTS``
            espeak voice variants combined with every English language voice.
        rate_range : (int, int), default (130, 220)
            Speaking rate, words per minute.
        pitch_range : (int, int), default (20, 80)
            espeak pitch, 0-99.
        snr_db : (float, float), default (5.0, 30.0)
        gain_db : (float, float), default (-20.0, -3.0)
            Peak level of the word, dBFS.
        noise_seconds : float, default 20.0
            Length of each background-noise file.
    workers : int, optional
        Synthesis processes; by default up to 2. The output does not depend on it.
    progress : bool
        Print a counter on stderr.

    Returns
    -------
    Path
        ``root`` made absolute, in the layout :mod:`specsweep.data.speechcommands` reads.
    """
    return _generate(root, _kws_params(seed=seed, **params), _build_kws, workers, progress)


def ensure_speech_commands(cache_dir: Optional[Union[str, Path]] = None, seed: int = 0, workers: Optional[int] = None,
                           progress: bool = True, **params: Any) -> Path:
    """The embedded keyword set for ``seed`` and ``params``, generated on first use.

    Parameters
    ----------
    cache_dir : path, optional
        Parent folder; by default :func:`~specsweep.data.cache.default_cache_root`. The set lives in
        ``embedded_kws-<hash of the parameters>``; a file lock makes concurrent callers
        generate it once.
    seed : int
    workers, progress
        As in :func:`generate_speech_commands`; they do not change the data.
    **params
        Any other argument of :func:`generate_speech_commands`.

    Returns
    -------
    Path
        The dataset root, in the Speech Commands v2 layout.
    """
    return _ensure(cache_dir, "embedded_kws", _kws_params(seed=seed, **params), _build_kws, workers, progress)


def speech_commands_split_clips(seed: int = 0, **params: Any) -> Dict[str, int]:
    """Clips per split (train, val, test) of the embedded keyword set for ``seed`` and
    ``params``, as the Speech Commands loader builds the splits (each split's speakers'
    clips plus ``_silence_``, as many as the split's average keyword), from the clip plan
    alone: nothing is synthesized. Counted as :func:`_plan_kws` assigns speakers (clip k
    of a word to the word's k-th speaker in its own order, cyclically), without drawing
    each clip's choices: in milliseconds whatever the sizes."""
    params = _kws_params(seed=seed, **params)
    splits = ("train", "val", "test")
    speakers = _draw_speakers(params, 0, splits)
    split_of = np.array([splits.index(s.split) for s in speakers])
    n = len(speakers)
    totals = np.bincount(split_of, minlength=3)
    clips, keyword_clips = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    words = [(w, params["clips_per_word"]) for w in params["keywords"]]
    words += [(w, params["clips_per_unknown"]) for w in params["unknown_words"]]
    for word_index, (word, count) in enumerate(words):
        order = np.random.default_rng([params["seed"], 1, word_index]).permutation(n)
        per_split = (count // n) * totals + np.bincount(split_of[order[: count % n]], minlength=3)
        clips += per_split
        if word in KEYWORDS:
            keyword_clips += per_split
    return {split: int(clips[i] + max(1, keyword_clips[i] // len(KEYWORDS))) for i, split in enumerate(splits)}


def speech_commands_train_clips(seed: int = 0, **params: Any) -> int:
    """Training clips of the embedded keyword set (see :func:`speech_commands_split_clips`)."""
    return speech_commands_split_clips(seed, **params)["train"]


def phoneme_corpus_split_sizes(seed: int = 0, **params: Any) -> Tuple[int, int, int]:
    """Utterances of train, valid and test of the embedded phoneme corpus for ``seed`` and
    ``params``."""
    return tuple(int(n) for n in _phoneme_params(seed=seed, **params)["n_utterances"])  # type: ignore[return-value]


def phoneme_corpus_train_utterances(seed: int = 0, **params: Any) -> int:
    """Training utterances of the embedded phoneme corpus for ``seed`` and ``params``."""
    return phoneme_corpus_split_sizes(seed, **params)[0]


def phoneme_corpus_inventory(seed: int = 0, **params: Any) -> List[str]:
    """The phoneme symbols of the embedded corpus for ``seed`` and ``params``, sorted as its
    ``phonemes.txt`` lists them: every planned utterance phonemized as synthesis does it
    (about 1 s for 800 utterances), with no audio made."""
    plans = _plan_phonemes(_phoneme_params(seed=seed, **params))
    synth = Synthesizer()
    inventory: set[str] = set()
    for plan in plans:
        inventory.update(synth.phonemes(plan.text, voice=plan.speaker.voice.partition("+")[0]))
    return sorted(inventory)


# ---------------------------------------------------------------------------------------
# Phoneme recognition


def _split_sizes(n_utterances: Union[int, Sequence[int]]) -> Tuple[int, int, int]:
    if isinstance(n_utterances, int):
        held = max(1, n_utterances // 8)
        sizes = (n_utterances - 2 * held, held, held)
    else:
        sizes = tuple(int(n) for n in n_utterances)
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"n_utterances must be a total >= 3 or (train, valid, test) counts >= 1, got {n_utterances}")
    return sizes  # type: ignore[return-value]


def _phoneme_params(
    seed: int = 0,
    n_utterances: Union[int, Sequence[int]] = (600, 100, 100),
    words_per_utterance: Tuple[int, int] = (2, 5),
    words: Sequence[str] = SENTENCE_WORDS,
    languages: Sequence[str] = ("en-us",),
    variants: Sequence[str] = DEFAULT_VARIANTS,
    n_speakers: int = 60,
    rate_range: Tuple[int, int] = (140, 210),
    pitch_range: Tuple[int, int] = (25, 75),
    snr_db: Tuple[float, float] = (20.0, 40.0),
    gain_db: Tuple[float, float] = (-12.0, -3.0),
) -> Dict[str, Any]:
    """The checked, JSON-ready parameters of :func:`generate_phoneme_corpus` (see there)."""
    words = tuple(sorted(set(_check_words(tuple(dict.fromkeys(words)), "words"))))
    if n_speakers < 3:
        raise ValueError("n_speakers must be at least 3")
    synth = Synthesizer()
    unknown = sorted(set(languages) - set(synth.languages()))
    if unknown:
        raise ValueError(f"unknown English language voices {unknown}; available: {synth.languages()}")
    voices = sorted(set(v for v in synth.voices(tuple(variants)) if v.partition("+")[0] in set(languages)))
    return {
        **_voice_params(synth, "embedded_phonemes", seed, rate_range, pitch_range, snr_db, gain_db),
        "n_utterances": list(_split_sizes(n_utterances)),
        "words_per_utterance": list(_check_range(words_per_utterance, "words_per_utterance", 1, 50)),
        "words": list(words),
        "voices": voices,
        "n_speakers": int(n_speakers),
    }


@dataclass(frozen=True)
class _UtterancePlan(_Recording):
    """One utterance: its ``split``, ``utt_id`` and ``text``, seconds of silence before
    (``lead``) and after it (``tail``), and its noise: ``1 / f ** noise_exponent`` drawn
    from ``noise_seed``."""

    split: str
    utt_id: str
    text: str
    lead: float
    tail: float
    noise_exponent: float
    noise_seed: int


def _plan_phonemes(params: Dict[str, Any]) -> List[_UtterancePlan]:
    """Every utterance's random choices, drawn up front (see :func:`_plan_kws`)."""
    seed = params["seed"]
    speakers = _draw_speakers(params, 10, PHONEME_SPLITS)
    words = params["words"]
    low, high = params["words_per_utterance"]
    plans = []
    for split_index, (split, count) in enumerate(zip(PHONEME_SPLITS, params["n_utterances"])):
        pool = [s for s in speakers if s.split == split]
        for i in range(count):
            rng = np.random.default_rng([seed, 11, split_index, i])
            speaker = pool[int(rng.integers(len(pool)))]
            text = " ".join(words[int(j)] for j in rng.integers(len(words), size=int(rng.integers(low, high + 1))))
            plans.append(
                _UtterancePlan(
                    split=split,
                    utt_id=f"{speaker.id}_{split_index}{i:05d}",
                    text=text,
                    **speaker.take(rng, params),
                    lead=float(rng.uniform(0.05, 0.25)),
                    tail=float(rng.uniform(0.05, 0.25)),
                    gain_db=float(rng.uniform(*params["gain_db"])),
                    noise_exponent=float(rng.choice([0.0, 1.0, 2.0])),
                    noise_seed=int(rng.integers(2**32)),
                    snr_db=float(rng.uniform(*params["snr_db"])),
                    synth_seed=int(rng.integers(2**31)),
                )
            )
    return plans


def _render_utterance(speech: np.ndarray, plan: _UtterancePlan) -> np.ndarray:
    """Trimmed speech with a short random lead-in and tail, a random level and light
    noise; shape (samples,) float64, variable length."""
    speech = speech.astype(np.float64)
    speech = speech * (10 ** (plan.gain_db / 20) / max(float(np.abs(speech).max()), 1e-9))
    lead, tail = int(plan.lead * SAMPLE_RATE), int(plan.tail * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    noise = _shaped_noise(np.random.default_rng(plan.noise_seed), len(audio), plan.noise_exponent)
    return audio + _mix_at_snr(float((speech**2).mean()), noise, plan.snr_db)


def _build_phonemes(folder: Path, params: Dict[str, Any], workers: int, progress: bool, name: str) -> None:
    plans = _plan_phonemes(params)
    for split in PHONEME_SPLITS:
        (folder / split).mkdir()
    jobs = [p.speech_job(p.text, None, phonemes=True) for p in plans]
    inventory = set()
    for plan, (speech, phonemes) in zip(plans, _synthesized(jobs, workers, f"phoneme corpus {name}", "utterance", progress)):
        if not phonemes:
            raise RuntimeError(f"espeak-ng gave no phonemes for {plan.text!r}")
        _write_wav(folder / plan.split / f"{plan.utt_id}.wav", _render_utterance(speech, plan))
        (folder / plan.split / f"{plan.utt_id}.phn.txt").write_text(" ".join(phonemes) + "\n", encoding="utf-8")
        inventory.update(phonemes)
    (folder / "phonemes.txt").write_text("".join(f"{p}\n" for p in sorted(inventory)), encoding="utf-8")
    (folder / "utterances.tsv").write_text(
        "split\tutterance\tvoice\trate\tpitch\ttext\n"
        + "".join(f"{p.split}\t{p.utt_id}\t{p.speaker.voice}\t{p.rate}\t{p.pitch}\t{p.text}\n" for p in plans),
        encoding="utf-8",
    )


def generate_phoneme_corpus(root: Union[str, Path], seed: int = 0, workers: Optional[int] = None,
                            progress: bool = True, **params: Any) -> Path:
    """Synthesize a phoneme-recognition corpus of short sentences at ``root``.

    Layout::

        root/{train,valid,test}/<utt>.wav       16 kHz mono int16, variable length
        root/{train,valid,test}/<utt>.phn.txt   space-separated IPA phonemes, one line
        root/phonemes.txt                        the inventory, one symbol per line, sorted
        root/utterances.tsv                      split, utterance id, voice, rate, pitch, text
        root/.complete                           the generation parameters (JSON)

    Sentences are ``words_per_utterance`` words drawn from ``words``. Transcriptions come
    from :meth:`Synthesizer.phonemes` with the same language voice that speaks the
    sentence, without stress marks, so they describe exactly what is heard. Speakers
    (voice, rate, pitch) are disjoint between splits. Each utterance is trimmed to the
    speech plus a random 50-250 ms lead-in and tail, scaled to a random peak level and
    given light white, pink or brown noise at an SNR drawn from ``snr_db``.

    Parameters
    ----------
    root : path
    seed : int
    workers : int, optional
    progress : bool
        As in :func:`generate_speech_commands`.
    **params
        The generation parameters, each with its default:

        n_utterances : int or (int, int, int), default (600, 100, 100)
            ``(train, valid, test)`` counts, or a total split 75/12.5/12.5.
        words_per_utterance : (int, int), default (2, 5)
        words : sequence of str, default :data:`SENTENCE_WORDS`
        languages : sequence of str, default ("en-us",)
            espeak language voices (accents) to use; each brings its own phoneme set.
        variants : sequence of str, default ``synth.DEFAULT_VARIANTS``
        n_speakers : int, default 60
        rate_range, pitch_range : (int, int), default (140, 210), (25, 75)
        snr_db, gain_db : (float, float), default (20.0, 40.0), (-12.0, -3.0)

    Returns
    -------
    Path
        ``root`` made absolute; :func:`specsweep.data.datasets.phoneme_corpus_sources` reads it.
    """
    return _generate(root, _phoneme_params(seed=seed, **params), _build_phonemes, workers, progress)


def ensure_phoneme_corpus(cache_dir: Optional[Union[str, Path]] = None, seed: int = 0, workers: Optional[int] = None,
                          progress: bool = True, **params: Any) -> Path:
    """The embedded phoneme corpus for ``seed`` and ``params``, generated on first use
    into ``<cache_dir>/embedded_phonemes-<hash>`` (see :func:`ensure_speech_commands`)."""
    return _ensure(cache_dir, "embedded_phonemes", _phoneme_params(seed=seed, **params), _build_phonemes, workers, progress)


def read_phoneme_inventory(root: Union[str, Path]) -> List[str]:
    """The symbols of ``root/phonemes.txt``, in file order."""
    return [line for line in Path(root, "phonemes.txt").read_text(encoding="utf-8").splitlines() if line]


__all__ = [
    "MARKER",
    "PHONEME_SPLITS",
    "SENTENCE_WORDS",
    "UNKNOWN_WORDS",
    "ensure_phoneme_corpus",
    "ensure_speech_commands",
    "generate_phoneme_corpus",
    "generate_speech_commands",
    "read_phoneme_inventory",
]
