"""FastAudio front-end (Fu et al., ICASSP 2022): learnable triangular filters, each with a
centre frequency and a bandwidth, on top of the nnAudio STFT."""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from speechbrain.processing.features import Filterbank
from torch import nn
from torchaudio.functional import amplitude_to_DB

from specsweep.frontends.base import FRONTENDS, is_number, raise_problems, with_defaults
from specsweep.frontends.stft import StftFrontEnd


CLAMPS = ("forward", "step")
TOP_DB_OVER = ("batch", "clip")
DB_SCALES = (10, 20)


@FRONTENDS.register("fastaudio")
class FastAudioFrontEnd(StftFrontEnd):
    """Log (dB) filterbank energies of learnable triangular filters (SpeechBrain's
    :class:`~speechbrain.processing.features.Filterbank` holds the centres and bandwidths
    and draws the triangles), over the same STFT as
    :class:`~specsweep.frontends.nnaudio.NnAudioFrontEnd` (conv kernels when
    ``trainable_stft``, FFT otherwise).

    The defaults compute FastAudio as the trainable-STFT-Mel study did: the STFT magnitude
    (``power=1``) through the triangles, ``10 * log10`` (``db_scale``), clipped ``top_db``
    below the batch's maximum; centres clamped to ``[0, sample_rate / 2]`` and bandwidths
    (half-widths of the triangles) to ``[3.1, 603.7]`` Hz inside ``forward``, whether the
    filters are trained or frozen (``clamp="forward"``: the parameters themselves may leave
    the range, the filters applied never do). ``clamp="step"`` instead projects trainable
    parameters back after each optimizer step, and ``power=2, top_db_over="clip"`` is
    SpeechBrain's own computation.

    Centre frequencies and bandwidths start on the Mel scale between ``f_min`` and ``f_max``.

    Parameters
    ----------
    sample_rate, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels, trainable_stft, mask_bins
        STFT options, as in :class:`~specsweep.frontends.stft.StftFrontEnd` (``power`` 1:
        magnitude; ``n_mels`` filters).
    f_min, f_max : float
        Range of the initial filters in Hz (``f_max`` None: ``sample_rate / 2``).
    trainable_filterbank : bool
        Learn both the centre frequencies and the bandwidths (80 parameters for 40 filters).
    min_band_hz, max_band_hz : float
        Allowed bandwidth range in Hz (``max_band_hz`` None: ``sample_rate / 2``).
    clamp : {"forward", "step"}
        Where centres and bandwidths are held in range: in the forward pass (always) or by
        projecting trainable parameters after each optimizer step.
    sort_centres : bool
        Order output channels by current centre frequency. The order is applied in
        ``forward`` rather than by permuting the parameters, which would leave the
        optimizer's per-element state (e.g. Adam moments) attached to the wrong filters.
    param_change_factor : float
        SpeechBrain's speed of change of the filter parameters: they are stored divided
        by ``sample_rate * param_change_factor ** 2``, so the gradient step in Hz scales
        with ``param_change_factor ** 4``. Unlike SpeechBrain 1.1.2, whose initial filters
        are scaled by ``param_change_factor``, the filters here start on the Mel scale
        whatever its value.
    param_rand_factor : float
        SpeechBrain's regularisation: in training mode a frozen filterbank's centres and
        bands are scaled by random factors in ``1 +- param_rand_factor`` (no effect when
        the filterbank is trainable, as in SpeechBrain).
    amin, top_db : float
        dB conversion: ``db_scale * log10(max(x, amin))``, clipped to ``top_db`` below the
        maximum over ``top_db_over``.
    db_scale : {10, 20}
        10 for power spectra (and, as in the study, for magnitudes too), 20 for amplitudes.
    top_db_over : {"batch", "clip"}
        What the ``top_db`` floor hangs from: the batch's maximum (the study) or each clip's
        (SpeechBrain).

    Examples
    --------
    >>> fe = FastAudioFrontEnd(trainable_filterbank=True)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 40, 101])
    >>> fe.trainable_parameter_counts(), fe.setting
    ({'stft': 0, 'filterbank': 80}, 'B')
    >>> fe.centre_hz().detach()[:3].round()
    tensor([ 44.,  92., 142.])
    >>> round(FastAudioFrontEnd(n_mels=10).applied_band_hz().max().item(), 1)  # capped, also frozen
    603.7
    """

    frequency_range = ("f_min", "f_max")

    def __init__(
        self,
        *,
        power: float = 1.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        trainable_filterbank: bool = False,
        min_band_hz: float = 3.1,
        max_band_hz: float | None = 603.7,
        clamp: str = "forward",
        sort_centres: bool = False,
        param_change_factor: float = 1.0,
        param_rand_factor: float = 0.0,
        amin: float = 1e-10,
        top_db: float = 80.0,
        db_scale: float = 10.0,
        top_db_over: str = "batch",
        **stft: Any,
    ) -> None:
        raise_problems(self.config_problems(
            power=power, f_min=f_min, f_max=f_max, trainable_filterbank=trainable_filterbank,
            min_band_hz=min_band_hz, max_band_hz=max_band_hz, clamp=clamp, sort_centres=sort_centres,
            param_change_factor=param_change_factor, param_rand_factor=param_rand_factor,
            amin=amin, top_db=top_db, db_scale=db_scale, top_db_over=top_db_over, **stft,
        ))
        super().__init__(power=power, **stft)
        self.trainable_filterbank = trainable_filterbank
        self.sort_centres = sort_centres
        self.clamp = clamp
        self.param_rand_factor = float(param_rand_factor)
        self.amin, self.top_db, self.db_scale = float(amin), float(top_db), float(db_scale)
        self.top_db_over = top_db_over
        self.min_band_hz = float(min_band_hz)
        self.max_band_hz = float(self.sample_rate / 2 if max_band_hz is None else max_band_hz)
        self.fbank = Filterbank(
            n_mels=self.n_bins,
            log_mel=False,
            filter_shape="triangular",
            f_min=f_min,
            f_max=self.sample_rate / 2 if f_max is None else f_max,
            n_fft=self.n_fft,
            sample_rate=self.sample_rate,
            param_change_factor=param_change_factor,
            param_rand_factor=param_rand_factor,
            freeze=not trainable_filterbank,
        )
        self._adopt_filterbank_tensors()
        # Stored value times this is Hz (SpeechBrain's scaling of trainable filters).
        self._hz_per_unit = self.sample_rate * param_change_factor**2 if trainable_filterbank else 1.0
        if trainable_filterbank:
            with torch.no_grad():
                # SpeechBrain stores Hz / (sr * pcf) but reads value * sr * pcf**2.
                self.fbank.f_central.mul_(1.0 / param_change_factor)
                self.fbank.band.mul_(1.0 / param_change_factor)
        else:
            # Frozen triangles are built once, not in every step (a dozen small kernels), and
            # as a buffer they move with the module, outside any compiled or captured graph.
            with torch.no_grad():
                self.register_buffer("frozen_matrix", self._build_matrix(False), persistent=False)
        self.after_optimizer_step()

    def _adopt_filterbank_tensors(self) -> None:
        """Make SpeechBrain's plain tensor attributes buffers so ``.to()`` moves them."""
        fb = self.fbank
        # The exact STFT bin frequencies; SpeechBrain's linspace(0, sr // 2, n_freq) is
        # off the bins for odd n_fft.
        freqs = torch.arange(self.n_freq, dtype=torch.float32) * (self.sample_rate / self.n_fft)
        del fb.all_freqs_mat
        fb.register_buffer("all_freqs_mat", freqs.repeat(fb.n_mels, 1), persistent=False)
        if fb.freeze:
            centres, bands = fb.f_central, fb.band
            del fb.f_central, fb.band
            fb.register_buffer("f_central", centres, persistent=False)
            fb.register_buffer("band", bands, persistent=False)

    def _apply(self, fn: Any, recurse: bool = True) -> "FastAudioFrontEnd":
        super()._apply(fn, recurse)
        # SpeechBrain builds a helper zero on this device inside its triangle code.
        self.fbank.device_inp = self.fbank.all_freqs_mat.device
        return self

    @classmethod
    def filterbank_parameters(cls, n_bins: int, n_freq: int) -> int:
        # Centre frequency and bandwidth of each triangle.
        return 2 * n_bins

    @classmethod
    def config_problems(cls, **args: Any) -> List[str]:
        """One line per bad constructor argument (missing ones take their defaults)."""
        problems = super().config_problems(**args)
        a = with_defaults(cls, args)
        for key, allowed in (("clamp", CLAMPS), ("top_db_over", TOP_DB_OVER), ("db_scale", DB_SCALES)):
            if isinstance(a[key], bool) or a[key] not in allowed:
                problems.append(f"{key}: must be one of {', '.join(map(str, allowed))}, got {a[key]!r}")
        nyquist = a["sample_rate"] / 2 if is_number(a["sample_rate"]) else float("inf")
        max_band = nyquist if a["max_band_hz"] is None else a["max_band_hz"]
        if not is_number(a["min_band_hz"]) or a["min_band_hz"] <= 0:
            problems.append(f"min_band_hz: must be a number > 0, got {a['min_band_hz']!r}")
        elif not is_number(max_band) or max_band <= a["min_band_hz"]:
            problems.append(f"max_band_hz: must be > min_band_hz = {a['min_band_hz']} or None, "
                            f"got {a['max_band_hz']!r}")
        if not is_number(a["param_change_factor"]) or a["param_change_factor"] <= 0:
            problems.append(f"param_change_factor: must be a number > 0, got {a['param_change_factor']!r}")
        if not is_number(a["param_rand_factor"]) or not 0 <= a["param_rand_factor"] < 1:
            problems.append(f"param_rand_factor: must be in [0, 1), got {a['param_rand_factor']!r}")
        if not is_number(a["amin"]) or a["amin"] <= 0:
            problems.append(f"amin: must be a number > 0, got {a['amin']!r}")
        if not is_number(a["top_db"]) or a["top_db"] <= 0:
            problems.append(f"top_db: must be a number > 0, got {a['top_db']!r}")
        return problems

    def project(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, n_freq, frames)`` spectrogram to ``(batch, n_mels, frames)`` dB."""
        energies = torch.matmul(self._matrix(perturb=self.training), spec)
        # torchaudio floors at top_db below the maximum over its last three dimensions:
        # the whole batch here, or one clip given a channel dimension.
        if self.top_db_over == "batch":
            return amplitude_to_DB(energies, self.db_scale, self.amin, 0.0, self.top_db)
        return amplitude_to_DB(energies[:, None], self.db_scale, self.amin, 0.0, self.top_db)[:, 0]

    def _order(self) -> torch.Tensor:
        return torch.argsort(self.centre_hz().detach(), stable=True)

    def centre_hz(self) -> torch.Tensor:
        """Centre frequencies ``(n_mels,)`` in Hz, in parameter order, as stored."""
        return self.fbank.f_central * self._hz_per_unit

    def band_hz(self) -> torch.Tensor:
        """Bandwidths (triangle half-widths) ``(n_mels,)`` in Hz, in parameter order, as stored."""
        return self.fbank.band * self._hz_per_unit

    def applied_centre_hz(self) -> torch.Tensor:
        """Centre frequencies ``(n_mels,)`` in Hz as the filters use them."""
        centres = self.centre_hz()
        return centres.clamp(0.0, self.sample_rate / 2) if self.clamp == "forward" else centres

    def applied_band_hz(self) -> torch.Tensor:
        """Bandwidths ``(n_mels,)`` in Hz as the filters use them."""
        bands = self.band_hz()
        return bands.clamp(self.min_band_hz, self.max_band_hz) if self.clamp == "forward" else bands

    def _matrix(self, perturb: bool = False) -> torch.Tensor:
        """The triangles ``(n_mels, n_freq)`` in output order, masked columns zero;
        ``perturb`` applies SpeechBrain's random scaling of a frozen filterbank."""
        perturb = perturb and bool(self.param_rand_factor) and not self.trainable_filterbank
        if not self.trainable_filterbank and not perturb:
            return self.frozen_matrix
        return self._build_matrix(perturb)

    def _build_matrix(self, perturb: bool) -> torch.Tensor:
        centres, bands = self.applied_centre_hz(), self.applied_band_hz()
        if perturb:
            change = 1.0 + (torch.rand(2) * 2 - 1) * self.param_rand_factor
            centres, bands = centres * change[0], bands * change[1]
        freqs = self.fbank.all_freqs_mat
        matrix = self.fbank._create_fbank_matrix(centres[:, None].expand_as(freqs),
                                                 bands[:, None].expand_as(freqs)).transpose(0, 1)
        if self.bin_mask is not None:
            matrix = matrix * self.bin_mask
        if self.sort_centres:
            matrix = matrix[self._order()]
        return matrix

    def filterbank(self) -> torch.Tensor:
        """The triangles as applied, ``(n_mels, n_freq)``: output order, masked columns zero,
        without the training-time random perturbation of ``param_rand_factor``."""
        return self._matrix()

    def parameter_parts(self) -> Dict[str, List[nn.Parameter]]:
        return {
            "stft": self.spectrogram.parameters_list(),
            "filterbank": [self.fbank.f_central, self.fbank.band] if self.trainable_filterbank else [],
        }

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if not self.trainable_filterbank or self.clamp != "step":
            return
        unit = self._hz_per_unit
        self.fbank.f_central.clamp_(0.0, self.sample_rate / 2 / unit)
        self.fbank.band.clamp_(self.min_band_hz / unit, self.max_band_hz / unit)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, band_hz=[{self.min_band_hz}, {self.max_band_hz}], "
                f"clamp={self.clamp}, sort_centres={self.sort_centres}")
