"""What every spectrogram front-end offers to backbones, tasks and plots."""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from specsweep.registry import Registry

# The front-ends a spec's ``frontend.name`` selects; each registers where its class is defined.
FRONTENDS = Registry("frontend")

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
    # FFT size of the STFT underneath (filterbank columns are its n_fft // 2 + 1 bins).
    n_fft: int

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for a clip of ``num_samples`` samples. Integer
        arithmetic that also works elementwise on an integer tensor of lengths lets the
        ASR task count a batch's frames without leaving the GPU."""
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

    def trainable_bases(self) -> Dict[str, torch.Tensor]:
        """Detached CPU copies of the bases being trained, by part: ``"filterbank"`` as
        applied ``(n_bins, n_freq)`` and ``"stft"`` (every kernel parameter, flattened);
        fixed parts are left out.

        Examples
        --------
        >>> from specsweep.frontends import build_frontend
        >>> bases = build_frontend({"name": "nnaudio", "setting": "D"}).trainable_bases()
        >>> {k: tuple(v.shape) for k, v in bases.items()}
        {'filterbank': (40, 241), 'stft': (231360,)}
        """
        parts = self.parameter_parts()
        bases: Dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if any(p.requires_grad for p in parts.get("filterbank", [])):
                bases["filterbank"] = self.filterbank().detach().cpu().clone()
            stft = [p for p in parts.get("stft", []) if p.requires_grad]
            if stft:
                bases["stft"] = torch.cat([p.detach().flatten() for p in stft]).cpu()
        return bases

    # Constructor argument that makes the filterbank trainable, so that ``build_frontend``
    # can map a setting letter onto any front-end's own flag name.
    filterbank_flag = "trainable_filterbank"

    @property
    def setting(self) -> str:
        """The setting letter A-D of this front-end's trainable parts."""
        counts = {part: bool(params) and all(p.requires_grad for p in params)
                  for part, params in self.parameter_parts().items()}
        return setting_name(counts.get("stft", False), counts.get("filterbank", False))


DRIFT_PARTS = ("filterbank", "stft")


def basis_drift(current: Dict[str, torch.Tensor], initial: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """How far each trainable basis moved: ``||W - W0||_F / ||W0||_F`` per part of
    :data:`DRIFT_PARTS`, 0 for a part that is fixed (absent from both dicts).

    Examples
    --------
    >>> w0 = torch.ones(2, 2)
    >>> basis_drift({"filterbank": w0 * 1.5}, {"filterbank": w0})
    {'filterbank': 0.5, 'stft': 0.0}
    """
    drift = {}
    for part in DRIFT_PARTS:
        if part in current and part in initial:
            reference = initial[part].norm().item()
            drift[part] = (current[part] - initial[part]).norm().item() / max(reference, 1e-12)
        else:
            drift[part] = 0.0
    return drift


def raise_problems(problems: List[str]) -> None:
    """Raise one ValueError with a line per problem (each line starts with the field name)."""
    if problems:
        raise ValueError("\n".join(problems))


def is_int(value: object) -> bool:
    """True for ints (numpy's included) but not bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for ints and floats (numpy's included) but not bools."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def constructor_parameters(cls: type) -> Dict[str, inspect.Parameter]:
    """Named constructor arguments of ``cls``: those of its ``__init__`` and, where that
    passes ``**kwargs`` on, those of its base classes' (the nearest declaration wins, so
    a subclass may change a default).

    Examples
    --------
    >>> from specsweep.frontends.fastaudio import FastAudioFrontEnd
    >>> params = constructor_parameters(FastAudioFrontEnd)
    >>> params["power"].default, params["n_fft"].default, "stft" in params
    (1.0, 480, False)
    """
    params: Dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        passes_on = False
        for name, param in inspect.signature(klass.__init__).parameters.items():
            if param.kind is param.VAR_KEYWORD:
                passes_on = True
            elif name != "self" and param.kind is not param.VAR_POSITIONAL:
                params.setdefault(name, param)
        if not passes_on:
            break
    return params


def with_defaults(cls: type, args: Dict[str, Any]) -> Dict[str, Any]:
    """``args`` completed with the defaults of ``cls``'s constructor (see
    :func:`constructor_parameters`)."""
    return {name: args.get(name, p.default) for name, p in constructor_parameters(cls).items()}


def check_waveform(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a ``(batch, samples)`` waveform batch."""
    if x.dim() != 2:
        raise ValueError(f"waveform must be (batch, samples), got shape {tuple(x.shape)}")
