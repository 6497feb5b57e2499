"""The embedded spoken-keyword set: the Google Speech Commands v2 on-disk layout (one
folder per word of one-second 16 kHz clips, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``), read by :mod:`specsweep.data.speechcommands` as the usual 12-class
task (10 keywords, ``_unknown_``, ``_silence_``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from specsweep.data.embedded.generation import (SAMPLE_RATE, Recording, check_words, draw_speakers, ensure, generate,
                                                 mix_at_snr, shaped_noise, synthesized, to_int16, voice_params, write_wav)
from specsweep.data.speechcommands import CLIP_SAMPLES, KEYWORDS, SILENCE_SPANS
from specsweep.data.synth import DEFAULT_VARIANTS, Synthesizer

# The words of Speech Commands v1 besides its KEYWORDS, spoken as ``_unknown_``.
UNKNOWN_WORDS: Tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
    "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
)
NOISE_KINDS: Tuple[str, ...] = ("white_noise", "pink_noise", "brown_noise", "hum")


def _background_noise(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One long background recording, shape (seconds * 16000,), float64 in (-1, 1)."""
    n = int(round(seconds * SAMPLE_RATE))
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        mains = rng.choice([50.0, 60.0])
        wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
        tone = sum((0.6**h) * np.sin(2 * np.pi * mains * (h + 1) * t + rng.uniform(0, 2 * np.pi)) for h in range(6))
        noise = tone * wobble + 0.05 * shaped_noise(rng, n, 1.0)
        level = 0.04
    else:
        exponent = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}[kind]
        noise = shaped_noise(rng, n, exponent)
        level = {"white_noise": 0.03, "pink_noise": 0.05, "brown_noise": 0.08}[kind]
    noise = noise * (level / max(float(np.sqrt((noise**2).mean())), 1e-12))
    return np.clip(noise, -0.99, 0.99)


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
    keywords = check_words(keywords, "keywords")
    unknown_words = check_words(unknown_words, "unknown_words")
    if set(keywords) & set(unknown_words):
        raise ValueError(f"keywords and unknown_words overlap: {sorted(set(keywords) & set(unknown_words))}")
    if clips_per_word < 1 or clips_per_unknown < 0 or n_speakers < 3:
        raise ValueError("need clips_per_word >= 1, clips_per_unknown >= 0 and n_speakers >= 3")
    if noise_seconds < 12.0:
        raise ValueError("noise_seconds must be at least 12 so that each split's 10% share holds one-second slices")
    synth = Synthesizer()
    return {
        **voice_params(synth, "embedded_speech_commands", seed, rate_range, pitch_range, snr_db, gain_db),
        "clips_per_word": int(clips_per_word),
        "clips_per_unknown": int(clips_per_unknown),
        "keywords": list(keywords),
        "unknown_words": list(unknown_words),
        "n_speakers": int(n_speakers),
        "voices": synth.voices(tuple(variants)),
        "noise_seconds": float(noise_seconds),
    }


@dataclass(frozen=True)
class _ClipPlan(Recording):
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
    speakers = draw_speakers(params, 0, ("train", "val", "test"))
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
    clip += mix_at_snr(float((speech**2).mean()), noise[start : start + CLIP_SAMPLES], plan.snr_db)
    return clip


def _build_kws(folder: Path, params: Dict[str, Any], workers: int, progress: bool, name: str) -> None:
    plans = _plan_kws(params)
    noise_dir = folder / "_background_noise_"
    noise_dir.mkdir()
    noises = []
    for i, kind in enumerate(NOISE_KINDS):
        noise = _background_noise(kind, params["noise_seconds"], np.random.default_rng([params["seed"], 3, i]))
        write_wav(noise_dir / f"{kind}.wav", noise)
        # Mix from the quantised file content, exactly what the loader slices silence from.
        noises.append(to_int16(noise).astype(np.float64) / 32767.0)
    for word in params["keywords"] + params["unknown_words"]:
        (folder / word).mkdir()
    # The word must fit the window with room to move: at most 0.9 s of it.
    jobs = [p.speech_job(p.word, 0.9, phonemes=False) for p in plans]
    for plan, (speech, _) in zip(plans, synthesized(jobs, workers, f"keyword set {name}", "clip", progress)):
        write_wav(folder / plan.path, _render_clip(speech[:CLIP_SAMPLES], plan, noises))
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
    return generate(root, _kws_params(seed=seed, **params), _build_kws, workers, progress)


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
    return ensure(cache_dir, "embedded_kws", _kws_params(seed=seed, **params), _build_kws, workers, progress)


def speech_commands_split_clips(seed: int = 0, **params: Any) -> Dict[str, int]:
    """Clips per split (train, val, test) of the embedded keyword set for ``seed`` and
    ``params``, as the Speech Commands loader builds the splits (each split's speakers'
    clips plus ``_silence_``, as many as the split's average keyword), from the clip plan
    alone: nothing is synthesized. Counted as :func:`_plan_kws` assigns speakers (clip k
    of a word to the word's k-th speaker in its own order, cyclically), without drawing
    each clip's choices: in milliseconds whatever the sizes."""
    params = _kws_params(seed=seed, **params)
    splits = ("train", "val", "test")
    speakers = draw_speakers(params, 0, splits)
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

