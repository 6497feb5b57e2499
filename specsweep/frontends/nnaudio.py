"""nnAudio Mel spectrogram front-end with optionally trainable STFT kernels and Mel basis."""

from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
from nnAudio.librosa_functions import get_mel
from torch import nn

from specsweep.frontends.base import FRONTENDS, is_number, raise_problems, with_defaults
from specsweep.frontends.stft import StftFrontEnd


@FRONTENDS.register("nnaudio")
class NnAudioFrontEnd(StftFrontEnd):
    """Log-Mel spectrogram in the style of nnAudio's ``MelSpectrogram``, where the STFT
    kernels and the Mel basis can each be trained (settings A-D).

    Parameters
    ----------
    sample_rate, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels, trainable_stft, mask_bins
        STFT options, as in :class:`~specsweep.frontends.stft.StftFrontEnd` (``power`` 2:
        power spectrogram; ``n_mels`` Mel bands).
    fmin, fmax : float
        Frequency range of the Mel basis in Hz (``fmax`` None: ``sample_rate / 2``).
    htk : bool
        HTK Mel scale instead of Slaney's.
    norm : {1, None, inf}
        1: Slaney area normalisation of each triangle; None: peak 1.
    trainable_mel : bool
        Learn the ``(n_mels, n_freq)`` Mel basis.
    clamp_mel : bool
        Clamp the trainable Mel basis to [0, 1] in :meth:`after_optimizer_step`, which
        also keeps ``log(mel + eps)`` defined.
    random_mel_init : bool
        Start the Mel basis from ``relu(kaiming_uniform)`` values (torch's global RNG)
        instead of Slaney triangles.
    eps : float
        Offset inside the log.

    Attributes
    ----------
    mel_basis : torch.Tensor
        ``(n_mels, n_freq)``; a parameter when ``trainable_mel``, a buffer otherwise.

    Examples
    --------
    >>> fe = NnAudioFrontEnd(trainable_mel=True, n_mels=64)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 64, 101])
    >>> fe.setting, fe.trainable_parameter_counts()["filterbank"]  # a (64, 241) Mel basis
    ('B', 15424)
    """

    filterbank_flag = "trainable_mel"
    frequency_range = ("fmin", "fmax")

    def __init__(
        self,
        *,
        fmin: float = 0.0,
        fmax: float | None = None,
        htk: bool = False,
        norm: Any = 1,
        trainable_mel: bool = False,
        clamp_mel: bool = True,
        random_mel_init: bool = False,
        eps: float = 1e-10,
        **stft: Any,
    ) -> None:
        raise_problems(self.config_problems(
            fmin=fmin, fmax=fmax, htk=htk, norm=norm, trainable_mel=trainable_mel, clamp_mel=clamp_mel,
            random_mel_init=random_mel_init, eps=eps, **stft,
        ))
        super().__init__(**stft)
        self.trainable_mel = trainable_mel
        self.clamp_mel = clamp_mel
        self.eps = eps
        if random_mel_init:
            basis = torch.empty(self.n_bins, self.n_freq)
            nn.init.kaiming_uniform_(basis)
            basis = basis.relu()
        else:
            basis = torch.from_numpy(get_mel(self.sample_rate, self.n_fft, self.n_bins, fmin, fmax, htk=htk, norm=norm))
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
        problems = super().config_problems(**args)
        a = with_defaults(cls, args)
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
