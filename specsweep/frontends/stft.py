"""The STFT part that every spectrogram front-end here shares: nnAudio's STFT (trained
conv kernels or ``torch.stft``), masked STFT bins, the checks of the STFT arguments, and
:class:`StftFrontEnd`, the base class that puts a filterbank on top of it."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from nnAudio.features import STFT
from nnAudio.librosa_functions import pad_center
from scipy.signal import get_window
from torch import nn
from torch.nn import functional as F

from specsweep.contract import STORED_RUN, Footprint
from specsweep.frontends.base import (
    FrontEnd,
    check_waveform,
    constructor_parameters,
    is_int,
    is_number,
    with_defaults,
)

PAD_MODES = ("reflect", "constant")

MaskBins = List[Tuple[int, int]]


def normalise_mask_bins(mask_bins: object) -> MaskBins:
    """Accept one ``[start, end)`` pair or a list of pairs; return a list of int pairs.

    Raises ValueError (naming ``mask_bins``) for anything else; ranges are checked by
    :func:`mask_bins_problems`.

    Examples
    --------
    >>> normalise_mask_bins([3, 5])
    [(3, 5)]
    >>> normalise_mask_bins([[0, 2], [10, 12]])
    [(0, 2), (10, 12)]
    >>> normalise_mask_bins(None)
    []
    """
    if mask_bins is None:
        return []
    if not isinstance(mask_bins, (list, tuple)):
        raise ValueError(f"mask_bins: must be a [start, end) pair or a list of pairs, got {mask_bins!r}")
    if len(mask_bins) == 2 and all(is_int(v) for v in mask_bins):
        mask_bins = [mask_bins]
    pairs = []
    for pair in mask_bins:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(is_int(v) for v in pair)):
            raise ValueError(f"mask_bins: each entry must be a [start, end) pair of ints, got {pair!r}")
        pairs.append((int(pair[0]), int(pair[1])))
    return pairs


def mask_bins_problems(pairs: MaskBins, n_freq: int) -> List[str]:
    """One line per bad ``[start, end)`` pair: ``0 <= start < end <= n_freq`` must hold.

    Examples
    --------
    >>> mask_bins_problems([(0, 2), (5, 5), (200, 300)], n_freq=241)  # doctest: +NORMALIZE_WHITESPACE
    ['mask_bins: [5, 5) must satisfy 0 <= start < end <= 241 (n_fft // 2 + 1)',
     'mask_bins: [200, 300) must satisfy 0 <= start < end <= 241 (n_fft // 2 + 1)']
    """
    return [
        f"mask_bins: [{start}, {end}) must satisfy 0 <= start < end <= {n_freq} (n_fft // 2 + 1)"
        for start, end in pairs
        if not 0 <= start < end <= n_freq
    ]


def bin_mask(pairs: MaskBins, n_freq: int) -> torch.Tensor | None:
    """``(n_freq,)`` float mask, 0 on masked STFT bins and 1 elsewhere; None without pairs.

    Examples
    --------
    >>> bin_mask([(1, 3)], n_freq=5)
    tensor([1., 0., 0., 1., 1.])
    """
    if not pairs:
        return None
    mask = torch.ones(n_freq)
    for start, end in pairs:
        mask[start:end] = 0.0
    return mask



def stft_problems(
    sample_rate: Any, n_fft: Any, hop_length: Any, win_length: Any, pad_mode: Any, power: Any,
    window: Any = "hann",
) -> List[str]:
    """One line per bad STFT argument, each starting with the argument's name.

    Examples
    --------
    >>> stft_problems(16000, 480, 0, 512, "reflect", 2.0)  # doctest: +NORMALIZE_WHITESPACE
    ['hop_length: must be an int >= 1, got 0',
     'win_length: must be an int in [1, 480] (n_fft) or None, got 512']
    """
    problems = []
    try:
        get_window(scipy_window(window), 8, fftbins=True)
    except (ValueError, TypeError):
        problems.append(f"window: must be a window name or (name, parameter) that "
                        f"scipy.signal.get_window accepts, got {window!r}")
    if not is_number(sample_rate) or sample_rate <= 0:
        problems.append(f"sample_rate: must be a number > 0, got {sample_rate!r}")
    if not is_int(n_fft) or n_fft < 2:
        problems.append(f"n_fft: must be an int >= 2, got {n_fft!r}")
    if not is_int(hop_length) or hop_length < 1:
        problems.append(f"hop_length: must be an int >= 1, got {hop_length!r}")
    elif is_int(n_fft) and hop_length > n_fft:
        # Frames start hop_length samples apart and each reads n_fft: a longer hop leaves
        # samples between frames that no frame analyses. (The clip bounds n_fft, so this
        # also keeps hop_length within the clip.)
        problems.append(f"hop_length: must be at most n_fft ({n_fft}): frames {hop_length} samples apart, each "
                        f"{n_fft} long, would leave samples between them unanalysed; got {hop_length}")
    if win_length is not None and is_int(n_fft) and (not is_int(win_length) or not 1 <= win_length <= n_fft):
        problems.append(f"win_length: must be an int in [1, {n_fft}] (n_fft) or None, got {win_length!r}")
    if pad_mode not in PAD_MODES:
        problems.append(f"pad_mode: must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
    if not is_number(power) or power <= 0:
        problems.append(f"power: must be a number > 0, got {power!r}")
    return problems


def filterbank_problems(n_mels: Any, n_fft: Any, mask_bins: Any) -> List[str]:
    """Problems with ``n_mels`` and ``mask_bins`` given ``n_fft`` (shared by all front-ends)."""
    n_freq = n_fft // 2 + 1 if is_int(n_fft) and n_fft >= 2 else None
    problems = []
    if not is_int(n_mels) or (n_freq is not None and not 1 <= n_mels <= n_freq):
        upper = f"{n_freq}] (n_fft // 2 + 1)" if n_freq is not None else "n_fft // 2 + 1]"
        problems.append(f"n_mels: must be an int in [1, {upper}, got {n_mels!r}")
    try:
        pairs = normalise_mask_bins(mask_bins)
    except ValueError as err:
        problems.append(str(err))
    else:
        if n_freq is not None:
            bad = mask_bins_problems(pairs, n_freq)
            problems.extend(bad)
            if not bad and pairs and bin_mask(pairs, n_freq).sum() == 0:
                problems.append(f"mask_bins: {[list(p) for p in pairs]} masks every one of the {n_freq} STFT bins "
                                f"(n_fft // 2 + 1): the spectrogram would be all zeros; leave at least one bin")
    return problems


def bool_problems(**flags: Any) -> List[str]:
    """Problems with arguments that must be booleans.

    Examples
    --------
    >>> bool_problems(center=True, trainable_mel="yes")
    ["trainable_mel: must be true or false, got 'yes'"]
    """
    return [f"{name}: must be true or false, got {value!r}" for name, value in flags.items()
            if not isinstance(value, bool)]


def scipy_window(window: Any) -> Any:
    """Configs from YAML/JSON give lists where scipy wants a ``(name, parameter)`` tuple."""
    return tuple(window) if isinstance(window, list) else window


def nnaudio_window(window: Any, win_length: int, n_fft: int) -> torch.Tensor:
    """The analysis window nnAudio bakes into its kernels: scipy's periodic window of
    ``win_length`` samples, zero-padded on both sides to ``n_fft``.

    Examples
    --------
    >>> w = nnaudio_window("hann", 4, 6)
    >>> w
    tensor([0.0000, 0.0000, 0.5000, 1.0000, 0.5000, 0.0000])
    """
    periodic = get_window(scipy_window(window), win_length, fftbins=True)
    return torch.from_numpy(pad_center(periodic, n_fft).astype(np.float32))


# nnAudio's STFT(trainable=True) returns sqrt(re**2 + im**2 + 1e-8) as its magnitude.
NNAUDIO_TRAINABLE_EPS = 1e-8


class PowerSpectrogram(nn.Module):
    """Power spectrogram ``|STFT(x)|**power`` with nnAudio's STFT conventions.

    With ``trainable=True`` it is a conv1d (stride ``hop_length``) over the ``2 * n_freq``
    windowed cosine/sine kernels of nnAudio's :class:`~nnAudio.features.STFT` (``wcos``,
    ``wsin``, each ``(n_freq, 1, n_fft)``, parameters), with nnAudio's padding. With
    ``trainable=False`` the kernels could never change, so it computes the same values
    with ``torch.stft`` (an FFT) and keeps only the ``(n_fft,)`` window.

    Parameters
    ----------
    sample_rate, n_fft, hop_length, win_length, window, center, pad_mode
        As in :class:`NnAudioFrontEnd`.
    power : float
        Exponent applied to the magnitude (2: power spectrogram).
    trainable : bool
        Learn the STFT kernels (conv path) or not (FFT path).
    trainable_eps : float
        Added to ``re**2 + im**2`` of the conv path before the exponent, as nnAudio's
        trainable STFT adds it under its square root (its guard against NaN gradients at
        silent bins); nnAudio's fixed STFT adds nothing, nor does the FFT path.

    Examples
    --------
    >>> spec = PowerSpectrogram(16000, 480, 160, None, "hann", True, "reflect", 2.0, trainable=False)
    >>> spec(torch.randn(2, 16000)).shape
    torch.Size([2, 241, 101])
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        win_length: int | None,
        window: Any,
        center: bool,
        pad_mode: str,
        power: float,
        trainable: bool,
        trainable_eps: float = NNAUDIO_TRAINABLE_EPS,
    ) -> None:
        super().__init__()
        self.trainable_eps = float(trainable_eps)
        self.n_fft = n_fft
        self.n_freq = n_fft // 2 + 1
        self.hop_length = hop_length
        self.center = center
        self.pad_mode = pad_mode
        self.power = float(power)
        self.trainable = trainable
        if trainable:
            self.stft: STFT | None = STFT(
                n_fft=n_fft,
                win_length=win_length,
                freq_bins=None,
                hop_length=hop_length,
                window=scipy_window(window),
                freq_scale="no",
                center=center,
                pad_mode=pad_mode,
                sr=sample_rate,
                trainable=True,
                output_format="Complex",
                verbose=False,
            )
        else:
            self.stft = None
            # Derived from the config, so it stays out of checkpoints.
            self.register_buffer(
                "window", nnaudio_window(window, win_length or n_fft, n_fft), persistent=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` waveform to ``(batch, n_freq, frames)`` spectrogram."""
        if self.stft is not None:
            return self._conv_power(x)
        z = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        if self.power == 2.0:
            return z.real.square() + z.imag.square()
        return z.abs().pow(self.power)

    def _conv_power(self, x: torch.Tensor) -> torch.Tensor:
        # nnAudio's own forward runs two convs and stacks real/imaginary parts; one conv
        # over both kernel sets (same padding, same kernels) was about 1.4x faster forward + backward on CPU.
        x = x[:, None, :]
        if self.center:
            x = F.pad(x, (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
        kernels = torch.cat([self.stft.wcos, self.stft.wsin])
        parts = F.conv1d(x, kernels, stride=self.hop_length).unflatten(1, (2, self.n_freq))
        if self.trainable_eps or self.power == 2.0:
            squared = parts.square().sum(1) + self.trainable_eps
            return squared if self.power == 2.0 else squared.pow(self.power / 2)
        # Complex abs has a zero (not NaN) gradient at exactly-zero bins.
        return torch.complex(parts[:, 0], parts[:, 1]).abs().pow(self.power)

    def parameters_list(self) -> List[nn.Parameter]:
        return [self.stft.wsin, self.stft.wcos] if self.stft is not None else []

    def kernels(self) -> torch.Tensor | None:
        """Windowed cosine kernels ``(n_freq, n_fft)`` when trainable, else None."""
        return self.stft.wcos[:, 0, :] if self.stft is not None else None

    def num_frames(self, num_samples: int) -> int:
        padded = num_samples + 2 * (self.n_fft // 2) if self.center else num_samples
        return 1 + (padded - self.n_fft) // self.hop_length


def frequency_range_problems(args: Dict[str, Any], low: str, high: str) -> List[str]:
    """Problems of a filterbank's frequency range ``args[low]`` to ``args[high]`` (None:
    ``sample_rate / 2``), which must satisfy ``0 <= low < high <= sample_rate / 2``.

    Examples
    --------
    >>> frequency_range_problems({"sample_rate": 16000, "f_min": 0.0, "f_max": 9000}, "f_min", "f_max")
    ['f_max: must be in (f_min, sample_rate / 2] = (0.0, 8000.0] or None, got 9000']
    """
    nyquist = args["sample_rate"] / 2 if is_number(args["sample_rate"]) else math.inf
    top = nyquist if args[high] is None else args[high]
    if not is_number(args[low]) or args[low] < 0:
        return [f"{low}: must be a number >= 0, got {args[low]!r}"]
    if not is_number(top) or not args[low] < top <= nyquist:
        return [f"{high}: must be in ({low}, sample_rate / 2] = ({args[low]}, {nyquist}] or None, "
                f"got {args[high]!r}"]
    return []


class StftFrontEnd(FrontEnd):
    """``n_mels`` filterbank bands on a :class:`PowerSpectrogram`: the STFT arguments and
    their checks, the masked bins, the footprint and the forward pass that every such
    front-end shares.

    Subclasses declare their own (filterbank) arguments keyword-only, pass the rest on
    as ``**stft`` (:func:`~specsweep.frontends.base.constructor_parameters` reads both),
    check them all with :meth:`config_problems` first, then build the filterbank and
    implement :meth:`project`.

    Parameters
    ----------
    sample_rate : int
        Sampling rate of the input in Hz.
    n_fft : int
        FFT size and STFT kernel length; the spectrogram has ``n_fft // 2 + 1`` bins.
    hop_length : int
        Samples between frames.
    win_length : int or None
        Window length, zero-padded to ``n_fft`` (None: ``n_fft``).
    window : str or tuple
        Any window ``scipy.signal.get_window`` accepts.
    center : bool
        Pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred at ``t * hop_length``.
    pad_mode : {"reflect", "constant"}
        Padding used with ``center``.
    power : float
        Exponent of the magnitude before the filterbank (2: power, 1: magnitude).
    n_mels : int
        Number of filterbank bands, in ``[1, n_fft // 2 + 1]``.
    trainable_stft : bool
        Learn the STFT kernels (``wsin``, ``wcos``; conv path) instead of the FFT.
    trainable_stft_eps : float
        Added to the power ``re**2 + im**2`` of a trainable STFT, as nnAudio's trainable
        STFT does (1e-8 under its magnitude's square root): silent frames of settings C
        and D then give what nnAudio gives (see :class:`PowerSpectrogram`). 0: nothing added.
    mask_bins : [start, end) pair, list of pairs, or None
        STFT bins zeroed before the filterbank.

    Attributes
    ----------
    spectrogram : PowerSpectrogram
        The STFT part: nnAudio conv kernels when ``trainable_stft``, otherwise ``torch.stft``
        with no kernels stored at all.
    bin_mask : torch.Tensor or None
        ``(n_freq,)``, 0 on masked bins (see :func:`bin_mask`).
    """

    # Names of the constructor arguments bounding the filterbank's frequency range.
    frequency_range: Tuple[str, str]

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_fft: int = 480,
        hop_length: int = 160,
        win_length: int | None = None,
        window: Any = "hann",
        center: bool = True,
        pad_mode: str = "reflect",
        power: float = 2.0,
        n_mels: int = 40,
        trainable_stft: bool = False,
        trainable_stft_eps: float = NNAUDIO_TRAINABLE_EPS,
        mask_bins: Sequence[int] | Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_bins = n_mels
        self.n_fft = n_fft
        self.n_freq = n_fft // 2 + 1
        self.trainable_stft = trainable_stft
        self.mask_bins = normalise_mask_bins(mask_bins)
        self.spectrogram = PowerSpectrogram(
            sample_rate, n_fft, hop_length, win_length, window, center, pad_mode, power, trainable_stft,
            trainable_stft_eps,
        )
        self.register_buffer("bin_mask", bin_mask(self.mask_bins, self.n_freq), persistent=False)

    @classmethod
    def config_problems(cls, **args: Any) -> List[str]:
        """One line per bad constructor argument (missing ones take their defaults): the
        STFT's, ``n_mels`` and ``mask_bins``, every argument with a bool default, and the
        filterbank's :attr:`frequency_range`. Subclasses add the checks of their own."""
        a = with_defaults(cls, args)
        problems = stft_problems(a["sample_rate"], a["n_fft"], a["hop_length"], a["win_length"],
                                 a["pad_mode"], a["power"], a["window"])
        problems += filterbank_problems(a["n_mels"], a["n_fft"], a["mask_bins"])
        if not is_number(a["trainable_stft_eps"]) or not 0 <= a["trainable_stft_eps"] < math.inf:
            problems.append(f"trainable_stft_eps: must be a finite number >= 0, got {a['trainable_stft_eps']!r}")
        problems += bool_problems(**{name: a[name] for name, param in constructor_parameters(cls).items()
                                     if isinstance(param.default, bool)})
        return problems + frequency_range_problems(a, *cls.frequency_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` waveform to ``(batch, n_bins, frames)``: :meth:`project` of
        its power spectrogram."""
        check_waveform(x)
        return self.project(self.spectrogram(x))

    def project(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, n_freq, frames)`` power spectrogram to ``(batch, n_bins, frames)``."""
        raise NotImplementedError

    def stft_kernels(self) -> torch.Tensor | None:
        return self.spectrogram.kernels()

    @classmethod
    def input_problems(cls, num_samples: int, data_rate: int | None = None, **args: Any) -> List[str]:
        """Problems of the arguments with clips of ``num_samples`` samples at
        ``data_rate`` Hz (None: not checked): the STFT window must fit in a clip, and
        ``sample_rate`` (which places the filterbank's frequencies) must be the data's,
        since clips are not resampled."""
        a = with_defaults(cls, args)
        problems = []
        if is_int(a["n_fft"]) and a["n_fft"] > num_samples:
            problems.append(f"n_fft: must be at most the clip length, {num_samples} samples, got {a['n_fft']}")
        # Not for a stored run: a check added since it started must not lock its results.
        if data_rate is not None and a["sample_rate"] != data_rate and not STORED_RUN.get():
            problems.append(f"sample_rate: must be the dataset's, {data_rate} Hz (clips are not resampled, and the "
                            f"filterbank's frequencies follow sample_rate), got {a['sample_rate']!r}")
        return problems

    @classmethod
    def footprint(cls, num_samples: int, **args: Any) -> Footprint:
        """Sizes at clips of ``num_samples`` samples, from valid arguments, without
        building: nnAudio's STFT kernels ``2 * (n_fft // 2 + 1) * n_fft`` (built in
        float64 first) when ``trainable_stft``, the ``(n_bins, n_freq)`` filterbank, and
        the spectrograms of one example.

        Examples
        --------
        >>> from specsweep.frontends.nnaudio import NnAudioFrontEnd
        >>> fp = NnAudioFrontEnd.footprint(16000, n_fft=480, trainable_stft=True)
        >>> fp.trainable == NnAudioFrontEnd(trainable_stft=True).trainable_parameter_counts()
        True
        """
        a = with_defaults(cls, args)
        n_fft, n_bins = a["n_fft"], a["n_mels"]
        n_freq = n_fft // 2 + 1
        frames = 1 + (num_samples + (2 * (n_fft // 2) if a["center"] else 0) - n_fft) // a["hop_length"]
        kernels = 2 * n_freq * n_fft if a["trainable_stft"] else 0
        filterbank = cls.filterbank_parameters(n_bins, n_freq)
        trainable_bank = a[cls.filterbank_flag]
        # Waveform and its padding, real and imaginary parts, power, projection and log.
        activations = 2 * num_samples + n_fft + 3 * n_freq * frames + 2 * n_bins * frames
        return Footprint(
            {"stft": kernels, "filterbank": filterbank if trainable_bank else 0},
            frozen=n_fft + n_bins * n_freq + (0 if trainable_bank else filterbank),
            activations=activations,
            build=3 * kernels,
            shape=(n_bins, frames),
        )

    @classmethod
    def filterbank_parameters(cls, n_bins: int, n_freq: int) -> int:
        """Parameters of the filterbank of ``n_bins`` bands over ``n_freq`` STFT bins."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        return self.spectrogram.num_frames(num_samples)

    def extra_repr(self) -> str:
        return (f"setting={self.setting}, n_mels={self.n_bins}, n_fft={self.n_fft}, "
                f"stft={'conv' if self.trainable_stft else 'fft'}, mask_bins={self.mask_bins}")
