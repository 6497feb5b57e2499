"""Offline speech synthesis with libespeak-ng (from the ``espeakng-loader`` wheel) via ctypes.

The synthesizer is a pure function of its arguments: the same text, voice, rate, pitch and
seed give the same samples in any process, in any call order. Two things stand in the way
in espeak-ng itself. It seeds the noise generator behind breathy voices from the clock at
initialisation, so every call reseeds it explicitly. And it keeps wave-generator state in
C statics that survive ``espeak_Terminate`` (the pitch-flutter phase, the automatic gain
control, the glottal cycle counter), so two identical calls in a row differ. Every call
therefore runs on a freshly loaded library instance: a private copy of the
shared object is ``dlopen``-ed, initialised, used and ``dlclose``-d, which resets every
static (about 1 ms). The private copy also keeps this module's instance apart from any
other user of ``espeakng_loader`` in the process (whose state we would otherwise reset, or
which would keep the library from unloading).

Selecting a voice by name makes espeak read all 245 voice files to find it (5-15 ms per
call) unless ``<data>/lang/<identifier>`` exists under the lower-cased name it looks up
first, which fails for mixed-case files such as ``gmw/en-US``. The private runtime
therefore also holds a view of ``espeak-ng-data`` made of symbolic links, with the
``lang`` files under lower-case names, and voices are selected by identifier
(``gmw/en-us+m3``); the audio is identical to selecting ``en-us+m3``.

Audio comes back through ``AUDIO_OUTPUT_SYNCHRONOUS`` and a synth callback, as float32 at
the library's rate (22050 Hz). :func:`resample` takes it to 16 kHz with torchaudio.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import functools
import locale
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import espeakng_loader
import numpy as np

# Values from espeak-ng's speak_lib.h / espeak_ng.h.
_ENOUTPUT_MODE_SYNCHRONOUS = 0x0001
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_ESPEAK_PHONEMES_IPA = 0x02
# The phoneme separator goes in bits 8-23 of phonememode. Words stay separated by spaces,
# so multi-character phonemes (``dʒ``, ``aʊ``, ``ɑːɹ``) come out as single units.
_PHONEME_SEPARATOR = "_"
_PHONEME_MODE = _ESPEAK_PHONEMES_IPA | (ord(_PHONEME_SEPARATOR) << 8)
_STRESS_MARKS = "ˈˌ"

SAMPLE_RATE = 22050
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 99)

#: A selection of the shipped voice variants (``voices/!v``) that sound like ordinary
#: speakers; the others include robots, whispers, croaks and similar effects.
DEFAULT_VARIANTS: Tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7",
    "f1", "f2", "f3", "f4",
    "klatt", "klatt2", "klatt3",
    "Alicia", "Andy", "Annie", "Denis", "Gene", "Lee", "Michael",
    "adam", "belinda", "david", "edward", "grandma", "grandpa", "linda", "max", "steph", "travis", "zac",
)
# en-Shaw reads the Shavian alphabet; on Latin text it is just another British voice.
_EXCLUDED_LANGUAGE_VOICES = frozenset({"en-shaw"})

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class SynthesisError(RuntimeError):
    """libespeak-ng failed to initialise or to synthesize."""


# One lock for the whole process: the library is not re-entrant, and the callback
# appends to a module-level buffer.
_LOCK = threading.RLock()
_runtime: Optional[Tuple[int, str, str, bool]] = None
_samples: List[np.ndarray] = []


def _collect(wav: "ctypes._Pointer[ctypes.c_short]", count: int, events: int) -> int:
    if count > 0 and wav:
        _samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
    return 0


_CALLBACK = _SynthCallback(_collect)


def _remove_runtime(pid: int, folder: str) -> None:
    # A forked child inherits this handler; only the creating process may delete.
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


def _link_data(source: Path, target: Path) -> None:
    """``target`` mirrors the espeak-ng-data folder ``source`` with symbolic links, the
    files under ``lang`` under lower-case names."""
    target.mkdir()
    for entry in source.iterdir():
        if entry.name != "lang":
            os.symlink(entry, target / entry.name)
    for entry in sorted((source / "lang").rglob("*")):
        if entry.is_file():
            link = target / "lang" / str(entry.relative_to(source / "lang")).lower()
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(entry, link)


def _runtime_paths() -> Tuple[str, str, bool]:
    """``(library, data folder, voices selectable by identifier)`` for this process."""
    with _LOCK:
        return _make_runtime()


def _make_runtime() -> Tuple[str, str, bool]:
    global _runtime
    if _runtime is not None and _runtime[0] == os.getpid() and os.path.exists(_runtime[1]):
        return _runtime[1], _runtime[2], _runtime[3]
    library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    try:
        folder = tempfile.mkdtemp(prefix="specsweep-espeak-")
    except OSError:
        return library, data, False
    atexit.register(_remove_runtime, os.getpid(), folder)
    try:
        private_library = os.path.join(folder, os.path.basename(library))
        shutil.copyfile(library, private_library)
        library = private_library
    except OSError:
        pass
    by_identifier = True
    try:
        _link_data(Path(data), Path(folder) / "espeak-ng-data")
        data = os.path.join(folder, "espeak-ng-data")
    except OSError:
        by_identifier = False
    _runtime = (os.getpid(), library, data, by_identifier)
    return library, data, by_identifier


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_ng_InitializePath.argtypes = [ctypes.c_char_p]
    lib.espeak_ng_InitializePath.restype = None
    lib.espeak_ng_Initialize.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    lib.espeak_ng_Initialize.restype = ctypes.c_int
    lib.espeak_ng_ClearErrorContext.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    lib.espeak_ng_ClearErrorContext.restype = None
    lib.espeak_ng_GetStatusCodeMessage.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    lib.espeak_ng_GetStatusCodeMessage.restype = None
    lib.espeak_ng_InitializeOutput.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
    lib.espeak_ng_InitializeOutput.restype = ctypes.c_int
    lib.espeak_ng_GetSampleRate.argtypes = []
    lib.espeak_ng_GetSampleRate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_void_p
    lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int


def _status_message(lib: ctypes.CDLL, status: int) -> str:
    buffer = ctypes.create_string_buffer(512)
    lib.espeak_ng_GetStatusCodeMessage(status, buffer, len(buffer))
    return buffer.value.decode(errors="replace") or f"status {status:#x}"


@contextmanager
def _engine() -> Iterator[ctypes.CDLL]:
    """A freshly loaded and initialised library instance, torn down on exit.

    Uses the espeak_ng_* initialisation calls: unlike ``espeak_Initialize`` they report
    errors as status codes instead of printing to stderr (or calling ``exit``).
    """
    with _LOCK:
        # espeak_ng_Initialize sets LC_CTYPE to a UTF-8 locale for its wctype calls;
        # the rest of the process gets its own setting back afterwards.
        saved_ctype = locale.setlocale(locale.LC_CTYPE)
        library, data, _ = _runtime_paths()
        lib = ctypes.CDLL(library, mode=ctypes.RTLD_LOCAL)
        initialised = False
        try:
            _declare(lib)
            lib.espeak_ng_InitializePath(data.encode())
            context = ctypes.c_void_p()
            status = lib.espeak_ng_Initialize(ctypes.byref(context))
            if status != 0:
                message = _status_message(lib, status)
                lib.espeak_ng_ClearErrorContext(ctypes.byref(context))
                raise SynthesisError(f"espeak-ng failed to initialise: {message}")
            initialised = True
            status = lib.espeak_ng_InitializeOutput(_ENOUTPUT_MODE_SYNCHRONOUS, 0, None)
            if status != 0:
                raise SynthesisError(f"espeak-ng output setup failed: {_status_message(lib, status)}")
            if lib.espeak_ng_GetSampleRate() != SAMPLE_RATE:
                raise SynthesisError(f"espeak-ng runs at {lib.espeak_ng_GetSampleRate()} Hz, expected {SAMPLE_RATE} Hz")
            lib.espeak_SetSynthCallback(_CALLBACK)
            yield lib
        finally:
            if initialised:
                lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)
            locale.setlocale(locale.LC_CTYPE, saved_ctype)


def _list_voices(lib: ctypes.CDLL, spec: Optional[_Voice]) -> List[Tuple[str, str]]:
    """``(identifier, first language)`` of every voice matching ``spec``."""
    array = lib.espeak_ListVoices(ctypes.byref(spec) if spec is not None else None)
    voices = []
    i = 0
    while array[i]:
        voice = array[i].contents
        # languages: a priority byte, a NUL-terminated name, repeated; the first is primary.
        language = ctypes.string_at(voice.languages + 1).decode() if voice.languages else ""
        voices.append((voice.identifier.decode(), language))
        i += 1
    return voices


class _Catalogue(NamedTuple):
    languages: Dict[str, str]  # English language voice name -> espeak identifier
    variants: Tuple[str, ...]
    version: str


@functools.lru_cache(maxsize=1)
def _catalogue() -> _Catalogue:
    """English language voices, all variant names and the library version."""
    with _engine() as lib:
        languages = {
            # "en-gb" is what espeak calls the voice that answers to "en".
            ("en" if language == "en-gb" else language): identifier
            for identifier, language in _list_voices(lib, None)
            if (language == "en" or language.startswith("en-")) and language not in _EXCLUDED_LANGUAGE_VOICES
        }
        variant_language = ctypes.create_string_buffer(b"variant")
        spec = _Voice()
        spec.languages = ctypes.addressof(variant_language)
        variants = sorted(identifier.split("/", 1)[1] for identifier, _ in _list_voices(lib, spec))
        version = lib.espeak_Info(None).decode()
    return _Catalogue(dict(sorted(languages.items())), tuple(variants), version)


class Synthesizer:
    """English text to speech and to phonemes with libespeak-ng.

    Instances are cheap and share one process-wide lock; calls from several threads are
    serialised. Voices are espeak names, ``"<language voice>[+<variant>]"``, e.g. ``"en"``,
    ``"en-us"``, ``"en+f3"``, ``"en-gb-scotland+m2"``; see :meth:`voices`.

    Examples
    --------
    >>> synth = Synthesizer()
    >>> audio = synth.synthesize("yes", voice="en-us+f2")
    >>> audio.dtype, synth.sample_rate
    (dtype('float32'), 22050)
    >>> synth.phonemes("yes")
    ['j', 'ɛ', 's']
    """

    #: Output sample rate of libespeak-ng, fixed by its phoneme data.
    sample_rate: int = SAMPLE_RATE

    @property
    def version(self) -> str:
        """libespeak-ng version string."""
        return _catalogue().version

    def languages(self) -> List[str]:
        """English language voices of the shipped data, e.g. ``["en", "en-029", ..., "en-us"]``."""
        return list(_catalogue().languages)

    def variants(self) -> List[str]:
        """Every voice variant name of the shipped data (``voices/!v``)."""
        return list(_catalogue().variants)

    def voices(self, variants: Optional[Sequence[str]] = DEFAULT_VARIANTS) -> List[str]:
        """Usable English voices: every language voice, alone and with each variant.

        Parameters
        ----------
        variants : sequence of str, optional
            Variant names to combine with each language voice; those the shipped data
            lacks are skipped. ``None`` gives the language voices only.

        Returns
        -------
        list of str
            Sorted voice names such as ``"en"``, ``"en+f3"``, ``"en-us+m2"``.
        """
        catalogue = _catalogue()
        chosen = [v for v in (variants or ()) if v in catalogue.variants]
        return sorted(list(catalogue.languages) + [f"{lang}+{variant}" for lang in catalogue.languages for variant in chosen])

    def _espeak_name(self, voice: str, with_variant: bool = True) -> bytes:
        """The name to select ``voice`` by: its file identifier where that loads directly."""
        language, _, variant = voice.partition("+")
        language = "en" if language.lower() == "en-gb" else language.lower()
        catalogue = _catalogue()
        if language not in catalogue.languages:
            raise ValueError(f"unknown English voice {voice!r}; available: {', '.join(catalogue.languages)}")
        # espeak silently ignores an unknown variant, which would hide a typo.
        if variant and variant not in catalogue.variants:
            raise ValueError(f"unknown voice variant {variant!r} in {voice!r}")
        name = catalogue.languages[language] if _runtime_paths()[2] else language
        if variant and with_variant:
            name = f"{name}+{variant}"
        return name.encode()

    def synthesize(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50, seed: int = 0) -> np.ndarray:
        """Speak ``text``.

        Parameters
        ----------
        text : str
            UTF-8 text; espeak reads numbers, abbreviations and punctuation.
        voice : str
            Voice name, see :meth:`voices`.
        rate : int
            Speaking rate in words per minute, within :data:`RATE_RANGE`.
        pitch : int
            Base pitch, 0-99 (50 is the voice's normal pitch).
        seed : int
            Seed of espeak's noise generator, heard as the breathiness of some variants
            (``f2``, ``f3``, ``Alicia``...); espeak would otherwise seed it from the clock.

        Returns
        -------
        ndarray, shape (samples,), float32
            Mono audio in [-1, 1) at :attr:`sample_rate`, including espeak's own short
            leading and trailing silence.
        """
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise ValueError(f"rate {rate} outside {RATE_RANGE} words per minute")
        if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
            raise ValueError(f"pitch {pitch} outside {PITCH_RANGE}")
        name = self._espeak_name(voice)
        data = ctypes.create_string_buffer(text.encode("utf-8"))
        with _engine() as lib:
            if lib.espeak_SetVoiceByName(name) != _EE_OK:
                raise ValueError(f"espeak-ng cannot load voice {voice!r}")
            lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
            lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
            lib.espeak_ng_SetRandSeed(int(seed) % 2**31)
            _samples.clear()
            try:
                status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
                lib.espeak_Synchronize()
                if status != _EE_OK:
                    raise SynthesisError(f"espeak_Synth failed with status {status} for {text!r}")
                pcm = np.concatenate(_samples) if _samples else np.zeros(0, dtype=np.int16)
            finally:
                _samples.clear()
        return pcm.astype(np.float32) / 32768.0

    def phonemes(self, text: str, voice: str = "en", stress: bool = False) -> List[str]:
        """IPA phonemes of ``text`` as espeak would speak it with ``voice``.

        ``espeak_TextToPhonemes`` runs in IPA mode with ``_`` as the separator between
        phonemes (phonememode ``0x02 | ord("_") << 8``), so multi-character phonemes such
        as ``dʒ``, ``aɪ`` or ``ɑːɹ`` stay single symbols. Word boundaries are dropped.
        Only the language part of ``voice`` matters (variants change the sound, not the
        pronunciation).

        Parameters
        ----------
        text : str
        voice : str
        stress : bool
            Keep espeak's stress marks (``ˈ``, ``ˌ``) attached to the vowel they precede.

        Returns
        -------
        list of str
            E.g. ``["j", "ɛ", "s"]`` for ``"yes"``.
        """
        name = self._espeak_name(voice, with_variant=False)
        data = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(data))
        clauses = []
        with _engine() as lib:
            if lib.espeak_SetVoiceByName(name) != _EE_OK:
                raise ValueError(f"espeak-ng cannot load voice {voice!r}")
            # One clause per call; the library advances the pointer and sets it to NULL at the end.
            while pointer.value:
                result = lib.espeak_TextToPhonemes(ctypes.byref(pointer), _ESPEAK_CHARS_UTF8, _PHONEME_MODE)
                if result:
                    clauses.append(ctypes.string_at(result).decode("utf-8"))
        symbols = []
        for word in " ".join(clauses).split():
            for symbol in word.split(_PHONEME_SEPARATOR):
                if not stress:
                    symbol = symbol.strip(_STRESS_MARKS)
                if symbol:
                    symbols.append(symbol)
        return symbols


@functools.lru_cache(maxsize=8)
def _resampler(orig_sr: int, new_sr: int):  # noqa: ANN202 - torchaudio is imported lazily
    import torchaudio

    return torchaudio.transforms.Resample(orig_sr, new_sr)


def resample(audio: np.ndarray, orig_sr: int, new_sr: int = 16000) -> np.ndarray:
    """Band-limited resampling with torchaudio: ``transforms.Resample``, which is
    ``functional.resample`` with its sinc kernel computed once per rate pair.

    Parameters
    ----------
    audio : ndarray, shape (..., samples)
    orig_sr, new_sr : int

    Returns
    -------
    ndarray, shape (..., ceil(samples * new_sr / orig_sr)), float32
    """
    import torch

    if orig_sr == new_sr:
        return np.asarray(audio, dtype=np.float32)
    with torch.no_grad():
        out = _resampler(orig_sr, new_sr)(torch.from_numpy(np.asarray(audio, dtype=np.float32)))
    return out.numpy()


def resample_many(clips: Sequence[np.ndarray], orig_sr: int, new_sr: int = 16000) -> List[np.ndarray]:
    """:func:`resample` of several clips in one batched convolution.

    Small convolutions one by one cost more in torch's dispatch and thread start-up than
    in arithmetic. Zero-padding the clips to a common length and cutting each result back
    gives the same samples up to float rounding (the kernel sees zeros past a clip's end
    either way); the same batch always gives the same bits.

    Parameters
    ----------
    clips : sequence of ndarray, each shape (samples_i,)

    Returns
    -------
    list of ndarray, each shape (ceil(samples_i * new_sr / orig_sr),), float32
    """
    if not clips:
        return []
    longest = max(len(c) for c in clips)
    batch = np.zeros((len(clips), longest), dtype=np.float32)
    for row, clip in zip(batch, clips):
        row[: len(clip)] = clip
    out = resample(batch, orig_sr, new_sr)
    return [out[i, : -(-len(c) * new_sr // orig_sr)].copy() for i, c in enumerate(clips)]


__all__ = ["DEFAULT_VARIANTS", "PITCH_RANGE", "RATE_RANGE", "SAMPLE_RATE", "SynthesisError", "Synthesizer", "resample", "resample_many"]
