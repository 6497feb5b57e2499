"""What every spectrogram front-end offers to backbones, tasks and plots."""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

# Settings of the original experiments: (trainable STFT, trainable filterbank).
SETTINGS: Dict[str, Tuple[bool, bool]] = {
    "A": (False, False),
    "B": (False, True),
    "C": (True, False),
    "D": (True, True),
}


def setting_flags(setting: str) -> Tuple[bool, bool]:
    """Return ``(trainable_stft, trainable_filterbank)`` for a setting letter A-D."""
    try:
        return SETTINGS[setting]
    except KeyError:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}") from None


def setting_name(trainable_stft: bool, trainable_filterbank: bool) -> str:
    """Inverse of :func:`setting_flags`."""
    for name, flags in SETTINGS.items():
        if flags == (bool(trainable_stft), bool(trainable_filterbank)):
            return name
    raise AssertionError("unreachable: SETTINGS covers all flag pairs")


class FrontEnd(nn.Module):
    """Base class of spectrogram front-ends: waveform ``(batch, samples)`` to
    log-spectrogram ``(batch, bins, frames)``.

    Subclasses set ``sample_rate`` and ``n_bins`` and implement ``forward``,
    ``num_frames``, ``parameter_parts`` and ``filterbank``.
    """

    sample_rate: int
    n_bins: int

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for a clip of ``num_samples`` samples."""
        raise NotImplementedError

    def output_shape(self, num_samples: int) -> Tuple[int, int]:
        """``(bins, frames)`` of the output for one clip of ``num_samples`` samples."""
        return self.n_bins, self.num_frames(num_samples)

    def parameter_parts(self) -> Dict[str, List[nn.Parameter]]:
        """Parameters by part, ``{"stft": [...], "filterbank": [...]}``, trainable or not."""
        raise NotImplementedError

    def trainable_parameter_counts(self) -> Dict[str, int]:
        return {
            part: sum(p.numel() for p in params if p.requires_grad)
            for part, params in self.parameter_parts().items()
        }

    def filterbank(self) -> torch.Tensor:
        """The current filterbank as a dense ``(n_bins, n_freq)`` matrix over STFT bins."""
        raise NotImplementedError

    def stft_kernels(self) -> torch.Tensor | None:
        """Real parts of the STFT kernels ``(n_freq, n_fft)``, or None when not learnable."""
        return None

    def after_optimizer_step(self) -> None:
        """Project parameters back to their allowed range (called after each optimizer step)."""
