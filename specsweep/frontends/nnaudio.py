"""nnAudio Mel spectrogram front-end with optionally trainable STFT kernels and Mel basis."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from nnAudio.features import STFT
from nnAudio.librosa_functions import get_mel, pad_center
from scipy.signal import get_window
from torch import nn
from torch.nn import functional as F

from specsweep.contract import Footprint
from specsweep.frontends.base import (
    FrontEnd,
    bin_mask,
    check_waveform,
    is_int,
    is_number,
    mask_bins_problems,
    normalise_mask_bins,
    raise_problems,
    with_defaults,
)

PAD_MODES = ("reflect", "constant")


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
            problems.extend(mask_bins_problems(pairs, n_freq))
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
    ) -> None:
        super().__init__()
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
        if self.power == 2.0:
            return parts.square().sum(1)
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


class StftFrontEnd(FrontEnd):
    """A filterbank on a :class:`PowerSpectrogram`: the STFT part, the masked bins and the
    forward pass that every such front-end shares. Subclasses validate their arguments,
    build the filterbank and implement ``project``."""

    def __init__(
        self,
        spectrogram: PowerSpectrogram,
        sample_rate: int,
        n_bins: int,
        mask_bins: Sequence[int] | Sequence[Sequence[int]] | None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_bins = n_bins
        self.n_fft = spectrogram.n_fft
        self.n_freq = spectrogram.n_freq
        self.trainable_stft = spectrogram.trainable
        self.mask_bins = normalise_mask_bins(mask_bins)
        self.spectrogram = spectrogram
        self.register_buffer("bin_mask", bin_mask(self.mask_bins, self.n_freq), persistent=False)

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
    def input_problems(cls, num_samples: int, **args: Any) -> List[str]:
        """Problems of the arguments with clips of ``num_samples`` samples: the STFT
        window must fit in a clip."""
        n_fft = with_defaults(cls, args)["n_fft"]
        if is_int(n_fft) and n_fft > num_samples:
            return [f"n_fft: must be at most the clip length, {num_samples} samples, got {n_fft}"]
        return []

    @classmethod
    def footprint(cls, num_samples: int, **args: Any) -> Footprint:
        """Sizes at clips of ``num_samples`` samples, from valid arguments, without
        building: nnAudio's STFT kernels ``2 * (n_fft // 2 + 1) * n_fft`` (built in
        float64 first) when ``trainable_stft``, the ``(n_bins, n_freq)`` filterbank, and
        the spectrograms of one example.

        Examples
        --------
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


class NnAudioFrontEnd(StftFrontEnd):
    """Log-Mel spectrogram in the style of nnAudio's ``MelSpectrogram``, where the STFT
    kernels and the Mel basis can each be trained (settings A-D).

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
        Exponent of the magnitude before the Mel projection.
    n_mels : int
        Number of Mel bands, in ``[1, n_fft // 2 + 1]``.
    fmin, fmax : float
        Frequency range of the Mel basis in Hz (``fmax`` None: ``sample_rate / 2``).
    htk : bool
        HTK Mel scale instead of Slaney's.
    norm : {1, None, inf}
        1: Slaney area normalisation of each triangle; None: peak 1.
    trainable_stft : bool
        Learn the STFT kernels (``wsin``, ``wcos``; conv path) instead of the FFT.
    trainable_mel : bool
        Learn the ``(n_mels, n_freq)`` Mel basis.
    clamp_mel : bool
        Clamp the trainable Mel basis to [0, 1] in :meth:`after_optimizer_step`, which
        also keeps ``log(mel + eps)`` defined.
    random_mel_init : bool
        Start the Mel basis from ``relu(kaiming_uniform)`` values (torch's global RNG)
        instead of Slaney triangles.
    mask_bins : [start, end) pair, list of pairs, or None
        STFT bins zeroed before the Mel projection.
    eps : float
        Offset inside the log.

    Attributes
    ----------
    mel_basis : torch.Tensor
        ``(n_mels, n_freq)``; a parameter when ``trainable_mel``, a buffer otherwise.
    spectrogram : PowerSpectrogram
        The STFT part: nnAudio conv kernels when ``trainable_stft``, otherwise ``torch.stft``
        with no kernels stored at all.

    Examples
    --------
    >>> fe = NnAudioFrontEnd(trainable_mel=True)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 40, 101])
    >>> fe.trainable_parameter_counts(), fe.setting
    ({'stft': 0, 'filterbank': 9640}, 'B')
    """

    filterbank_flag = "trainable_mel"

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 480,
        hop_length: int = 160,
        win_length: int | None = None,
        window: Any = "hann",
        center: bool = True,
        pad_mode: str = "reflect",
        power: float = 2.0,
        n_mels: int = 40,
        fmin: float = 0.0,
        fmax: float | None = None,
        htk: bool = False,
        norm: Any = 1,
        trainable_stft: bool = False,
        trainable_mel: bool = False,
        clamp_mel: bool = True,
        random_mel_init: bool = False,
        mask_bins: Sequence[int] | Sequence[Sequence[int]] | None = None,
        eps: float = 1e-10,
    ) -> None:
        raise_problems(self.config_problems(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
            window=window, pad_mode=pad_mode, power=power, n_mels=n_mels, fmin=fmin, fmax=fmax, norm=norm,
            trainable_stft=trainable_stft, trainable_mel=trainable_mel, clamp_mel=clamp_mel,
            random_mel_init=random_mel_init, center=center, htk=htk, mask_bins=mask_bins, eps=eps,
        ))
        spectrogram = PowerSpectrogram(
            sample_rate, n_fft, hop_length, win_length, window, center, pad_mode, power, trainable_stft
        )
        super().__init__(spectrogram, sample_rate, n_mels, mask_bins)
        self.trainable_mel = trainable_mel
        self.clamp_mel = clamp_mel
        self.eps = eps
        if random_mel_init:
            basis = torch.empty(n_mels, self.n_freq)
            nn.init.kaiming_uniform_(basis)
            basis = basis.relu()
        else:
            basis = torch.from_numpy(get_mel(sample_rate, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm))
        if trainable_mel:
            self.mel_basis = nn.Parameter(basis)
        else:
            self.register_buffer("mel_basis", basis)

    @classmethod
    def filterbank_parameters(cls, n_bins: int, n_freq: int) -> int:
        return n_bins * n_freq

    @classmethod
    def config_problems(cls, **args: Any) -> List[str]:
        """One line per bad constructor argument (missing ones take their defaults)."""
        a = with_defaults(cls, args)
        problems = stft_problems(a["sample_rate"], a["n_fft"], a["hop_length"], a["win_length"],
                                 a["pad_mode"], a["power"], a["window"])
        problems += filterbank_problems(a["n_mels"], a["n_fft"], a["mask_bins"])
        problems += bool_problems(**{k: a[k] for k in (
            "center", "htk", "trainable_stft", "trainable_mel", "clamp_mel", "random_mel_init")})
        nyquist = a["sample_rate"] / 2 if is_number(a["sample_rate"]) else math.inf
        fmax = nyquist if a["fmax"] is None else a["fmax"]
        if not is_number(a["fmin"]) or a["fmin"] < 0:
            problems.append(f"fmin: must be a number >= 0, got {a['fmin']!r}")
        elif not is_number(fmax) or not a["fmin"] < fmax <= nyquist:
            problems.append(f"fmax: must be in (fmin, sample_rate / 2] = ({a['fmin']}, {nyquist}] or None, "
                            f"got {a['fmax']!r}")
        if a["norm"] not in (None, 1, math.inf):
            problems.append(f"norm: must be 1 (Slaney), None or inf, got {a['norm']!r}")
        if not is_number(a["eps"]) or a["eps"] <= 0:
            problems.append(f"eps: must be a number > 0, got {a['eps']!r}")
        return problems

    def project(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, n_freq, frames)`` power spectrogram to ``(batch, n_mels, frames)`` log-Mel.

        Masked bins are zeroed by the filterbank's zero columns (cheaper than masking the
        spectrogram, and the same result).
        """
        return torch.log(torch.matmul(self.filterbank(), spec) + self.eps)

    def filterbank(self) -> torch.Tensor:
        """The Mel basis as applied, ``(n_mels, n_freq)``, masked columns zero."""
        if self.bin_mask is None:
            return self.mel_basis
        return self.mel_basis * self.bin_mask

    def parameter_parts(self) -> Dict[str, List[nn.Parameter]]:
        return {
            "stft": self.spectrogram.parameters_list(),
            "filterbank": [self.mel_basis] if self.trainable_mel else [],
        }

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self.trainable_mel and self.clamp_mel:
            self.mel_basis.clamp_(0.0, 1.0)

    def extra_repr(self) -> str:
        return (f"setting={self.setting}, n_mels={self.n_bins}, n_fft={self.n_fft}, "
                f"stft={'conv' if self.trainable_stft else 'fft'}, mask_bins={self.mask_bins}")
