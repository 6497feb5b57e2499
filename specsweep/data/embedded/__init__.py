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

:mod:`~specsweep.data.embedded.generation` holds what both share (parallel synthesis,
speakers, noise, WAV files, the marker), :mod:`~specsweep.data.embedded.keywords` the keyword
set and :mod:`~specsweep.data.embedded.phonemes` the phoneme corpus.
"""

from specsweep.data.embedded.generation import MARKER, SAMPLE_RATE
from specsweep.data.embedded.keywords import (
    UNKNOWN_WORDS,
    ensure_speech_commands,
    generate_speech_commands,
    speech_commands_split_clips,
    speech_commands_train_clips,
)
from specsweep.data.embedded.phonemes import (
    PHONEME_SPLITS,
    SENTENCE_WORDS,
    ensure_phoneme_corpus,
    generate_phoneme_corpus,
    phoneme_corpus_inventory,
    phoneme_corpus_split_sizes,
    phoneme_corpus_train_utterances,
    read_phoneme_inventory,
)

__all__ = [
    "MARKER",
    "PHONEME_SPLITS",
    "SAMPLE_RATE",
    "SENTENCE_WORDS",
    "UNKNOWN_WORDS",
    "ensure_phoneme_corpus",
    "ensure_speech_commands",
    "generate_phoneme_corpus",
    "generate_speech_commands",
    "phoneme_corpus_inventory",
    "phoneme_corpus_split_sizes",
    "phoneme_corpus_train_utterances",
    "read_phoneme_inventory",
    "speech_commands_split_clips",
    "speech_commands_train_clips",
]
