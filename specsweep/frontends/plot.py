"""Figures of a front-end's filterbank and STFT kernels, next to their initial values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from specsweep.frontends.base import FrontEnd

# STFT bins drawn, as fractions of the Nyquist bin (80, 400, 1200, 3200 Hz at 16 kHz):
# higher bins oscillate too fast to read even in the zoomed window.
KERNEL_FRACTIONS = (0.01, 0.05, 0.15, 0.4)


def snapshot_frontend(frontend: FrontEnd) -> Dict[str, torch.Tensor]:
    """Detached CPU copies of what :func:`plot_frontend` draws.

    Returns
    -------
    dict
        ``"filterbank"``: ``(n_bins, n_freq)``; ``"stft_kernels"``: ``(n_freq, n_fft)``,
        only when the front-end has learnable kernels.

    Examples
    --------
    >>> from specsweep.frontends import build_frontend
    >>> snap = snapshot_frontend(build_frontend({"name": "nnaudio", "setting": "C"}))
    >>> {k: tuple(v.shape) for k, v in snap.items()}
    {'filterbank': (40, 241), 'stft_kernels': (241, 480)}
    """
    with torch.no_grad():
        snap = {"filterbank": frontend.filterbank().detach().cpu().clone()}
        kernels = frontend.stft_kernels()
        if kernels is not None:
            snap["stft_kernels"] = kernels.detach().cpu().clone()
    return snap


def plot_frontend(
    frontend: FrontEnd, initial: Dict[str, torch.Tensor] | None = None, path: str | Path | None = None
) -> Figure:
    """Draw the filterbank rows over frequency (top) and, when the STFT is trainable, a
    few STFT kernels (bottom); current values in colour, ``initial`` ones dashed grey.

    Parameters
    ----------
    frontend : FrontEnd
        Any registered front-end.
    initial : dict, optional
        :func:`snapshot_frontend` taken at construction.
    path : str or Path, optional
        Where to save a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Rendered with the Agg canvas, independent of pyplot's global state.

    Examples
    --------
    >>> from specsweep.frontends import build_frontend
    >>> fe = build_frontend({"name": "fastaudio", "setting": "D", "n_mels": 8})
    >>> fig = plot_frontend(fe, initial=snapshot_frontend(fe))
    >>> len(fig.axes)
    5
    """
    current = snapshot_frontend(frontend)
    initial = initial or {}
    n_bins, n_freq = current["filterbank"].shape
    hz = torch.arange(n_freq) * (frontend.sample_rate / frontend.n_fft)

    kernels = current.get("stft_kernels")
    rows = 1 if kernels is None else 2
    fig = Figure(figsize=(12, 4 if kernels is None else 7), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, len(KERNEL_FRACTIONS), height_ratios=(3, 2)[:rows])

    ax = fig.add_subplot(grid[0, :])
    if "filterbank" in initial and initial["filterbank"].shape == current["filterbank"].shape:
        for row in initial["filterbank"]:
            ax.plot(hz, row, color="0.6", lw=0.8, ls="--")
    colours = _row_colours(n_bins)
    for row, colour in zip(current["filterbank"], colours):
        ax.plot(hz, row, color=colour, lw=1.0)
    ax.set_xlim(0, float(hz[-1]))
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("weight")
    stft_note = "fixed STFT (FFT)" if kernels is None else "trainable STFT"
    ax.set_title(f"{type(frontend).__name__} (setting {frontend.setting}, {stft_note}): "
                 f"{n_bins} filters; dashed grey: initial")
    if kernels is not None:
        _draw_kernels(fig, grid, kernels, initial.get("stft_kernels"), hz)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _draw_kernels(fig: Figure, grid: Any, kernels: torch.Tensor, initial: torch.Tensor | None,
                  hz: torch.Tensor) -> None:
    n_freq, n_fft = kernels.shape
    # The central quarter of each kernel, where the window is largest: drawn whole, a
    # mid-frequency kernel is a solid band at this size.
    span = torch.arange(n_fft // 2 - n_fft // 8, n_fft // 2 + n_fft // 8)
    for i, fraction in enumerate(KERNEL_FRACTIONS):
        ax = fig.add_subplot(grid[1, i])
        k = max(1, round(fraction * (n_freq - 1)))
        title = f"cos kernel, bin {k} ({float(hz[k]):.0f} Hz)"
        if initial is not None and initial.shape == kernels.shape:
            ax.plot(span, initial[k, span], color="0.6", lw=1.0, ls="--")
            title += f"\nmax |change| {float((kernels[k] - initial[k]).abs().max()):.3g}"
        ax.plot(span, kernels[k, span], color="C0", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sample (centre quarter)")


def _row_colours(n: int) -> list:
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]
