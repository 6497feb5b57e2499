"""The embedded phoneme-recognition corpus: short synthesized sentences with their espeak
phoneme transcriptions, for CTC training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from specsweep.data.embedded.generation import (SAMPLE_RATE, Recording, check_range, check_words, draw_speakers, ensure,
                                                 generate, mix_at_snr, shaped_noise, synthesized, voice_params, write_wav)
from specsweep.data.synth import DEFAULT_VARIANTS, Synthesizer

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
    words = tuple(sorted(set(check_words(tuple(dict.fromkeys(words)), "words"))))
    if n_speakers < 3:
        raise ValueError("n_speakers must be at least 3")
    synth = Synthesizer()
    unknown = sorted(set(languages) - set(synth.languages()))
    if unknown:
        raise ValueError(f"unknown English language voices {unknown}; available: {synth.languages()}")
    voices = sorted(set(v for v in synth.voices(tuple(variants)) if v.partition("+")[0] in set(languages)))
    return {
        **voice_params(synth, "embedded_phonemes", seed, rate_range, pitch_range, snr_db, gain_db),
        "n_utterances": list(_split_sizes(n_utterances)),
        "words_per_utterance": list(check_range(words_per_utterance, "words_per_utterance", 1, 50)),
        "words": list(words),
        "voices": voices,
        "n_speakers": int(n_speakers),
    }


@dataclass(frozen=True)
class _UtterancePlan(Recording):
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
    """Every utterance's random choices, drawn up front so rendering is a pure function."""
    seed = params["seed"]
    speakers = draw_speakers(params, 10, PHONEME_SPLITS)
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
    noise = shaped_noise(np.random.default_rng(plan.noise_seed), len(audio), plan.noise_exponent)
    return audio + mix_at_snr(float((speech**2).mean()), noise, plan.snr_db)


def _build_phonemes(folder: Path, params: Dict[str, Any], workers: int, progress: bool, name: str) -> None:
    plans = _plan_phonemes(params)
    for split in PHONEME_SPLITS:
        (folder / split).mkdir()
    jobs = [p.speech_job(p.text, None, phonemes=True) for p in plans]
    inventory = set()
    for plan, (speech, phonemes) in zip(plans, synthesized(jobs, workers, f"phoneme corpus {name}", "utterance", progress)):
        if not phonemes:
            raise RuntimeError(f"espeak-ng gave no phonemes for {plan.text!r}")
        write_wav(folder / plan.split / f"{plan.utt_id}.wav", _render_utterance(speech, plan))
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
        As in :func:`~specsweep.data.embedded.keywords.generate_speech_commands`.
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
    return generate(root, _phoneme_params(seed=seed, **params), _build_phonemes, workers, progress)


def ensure_phoneme_corpus(cache_dir: Optional[Union[str, Path]] = None, seed: int = 0, workers: Optional[int] = None,
                          progress: bool = True, **params: Any) -> Path:
    """The embedded phoneme corpus for ``seed`` and ``params``, generated on first use
    into ``<cache_dir>/embedded_phonemes-<hash>`` (see
    :func:`~specsweep.data.embedded.keywords.ensure_speech_commands`)."""
    return ensure(cache_dir, "embedded_phonemes", _phoneme_params(seed=seed, **params), _build_phonemes, workers, progress)


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


def read_phoneme_inventory(root: Union[str, Path]) -> List[str]:
    """The symbols of ``root/phonemes.txt``, in file order."""
    return [line for line in Path(root, "phonemes.txt").read_text(encoding="utf-8").splitlines() if line]

