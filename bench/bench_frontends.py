"""Throughput of the spectrogram front-ends, forward + backward, per setting A-D.

Compares, on one-second clips:

* nnAudio conv: upstream ``nnAudio.features.MelSpectrogram`` (conv STFT in every setting),
* NnAudioFrontEnd: ours, FFT fast path when the STFT is fixed (A, B), nnAudio conv otherwise,
* FastAudioFrontEnd: ours, same STFT choice, learnable triangles,
* torchaudio: ``torchaudio.transforms.MelSpectrogram`` (fixed STFT only; B makes its
  Mel matrix a parameter).

Each iteration runs the forward pass and, when anything in the front-end is trainable,
``output.mean().backward()``; in setting A there is nothing to backpropagate into, so
only the forward pass counts (as in training, where the gradient stops at the front-end).

Usage::

    python -m bench.bench_frontends                 # batch 100, writes bench/results/frontends.md
    python -m bench.bench_frontends --tiny          # CI smoke run: 1 iteration, batch 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Hashable, List, Optional

import torch
import torchaudio
from nnAudio.features import MelSpectrogram
from torch import nn

from bench.common import machine_line
from specsweep.frontends import SETTINGS, build_frontend

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 480, 160, 40


class LogMel(nn.Module):
    """``log(mel + 1e-10)`` around a module that returns a Mel power spectrogram."""

    def __init__(self, mel: nn.Module) -> None:
        super().__init__()
        self.mel = mel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(x) + 1e-10)


def upstream_nnaudio(setting: str) -> nn.Module:
    stft, mel = SETTINGS[setting]
    return LogMel(MelSpectrogram(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, hop_length=HOP,
                                 trainable_mel=mel, trainable_STFT=stft, verbose=False))


def torchaudio_mel(setting: str) -> Optional[nn.Module]:
    stft, mel = SETTINGS[setting]
    if stft:
        return None
    module = torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=2.0,
        norm="slaney", mel_scale="slaney",
    )
    if mel:
        module.mel_scale.fb = nn.Parameter(module.mel_scale.fb.clone())
    return LogMel(module)


VARIANTS: Dict[str, Callable[[str], Optional[nn.Module]]] = {
    "nnAudio conv (upstream)": upstream_nnaudio,
    "NnAudioFrontEnd (FFT in A/B)": lambda s: build_frontend({"name": "nnaudio", "setting": s}),
    "FastAudioFrontEnd": lambda s: build_frontend({"name": "fastaudio", "setting": s}),
    "torchaudio MelSpectrogram": torchaudio_mel,
}


def make_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One training-style iteration: forward, plus backward when something is trainable."""
    trainable = [p for p in module.parameters() if p.requires_grad]

    def step() -> None:
        for p in trainable:
            p.grad = None
        out = module(x)
        if trainable:
            out.mean().backward()

    return step


def measure(steps: Dict[Hashable, Callable[[], None]], iters: int, warmup: int) -> Dict[Hashable, float]:
    """Median seconds per iteration of each step.

    The steps take turns, one iteration each per round, so that load from other
    processes sharing the cores falls on all of them alike; the median drops the spikes.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: Dict[Hashable, List[float]] = {key: [] for key in steps}
    for _ in range(iters):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) for key, t in times.items()}


def markdown(rows: Dict[str, Dict[str, Optional[float]]], args: argparse.Namespace) -> str:
    lines = [
        "# Front-end throughput (clips/s, forward + backward)",
        "",
        machine_line(),
        f"- torch {torch.__version__}, torchaudio {torchaudio.__version__}",
        f"- batch {args.batch}, {args.seconds:g} s clips at {SAMPLE_RATE} Hz, n_fft {N_FFT}, "
        f"hop {HOP}, {N_MELS} bins; {args.warmup} warm-up + {args.iters} timed rounds, all cells taking "
        "turns each round; median per cell",
        "- setting A: forward only (nothing trainable); n/a: torchaudio has no trainable STFT",
        "",
        "| setting | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---:|" * len(VARIANTS),
    ]
    for setting, cells in rows.items():
        stft, fb = SETTINGS[setting]
        label = f"{setting} (STFT {'trainable' if stft else 'fixed'}, filterbank {'trainable' if fb else 'fixed'})"
        lines.append(f"| {label} | " + " | ".join(
            "n/a" if v is None else f"{v:,.0f}" for v in cells.values()) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per cell")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--settings", default="ABCD")
    parser.add_argument("--tiny", action="store_true", help="1 iteration, batch 4, no warm-up (CI)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/frontends.md"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.iters, args.warmup = 4, 1, 0
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, int(args.seconds * SAMPLE_RATE))
    steps: Dict[Hashable, Callable[[], None]] = {}
    for setting in args.settings:
        for variant, make in VARIANTS.items():
            module = make(setting)
            if module is not None:
                steps[setting, variant] = make_step(module, x)
    seconds = measure(steps, args.iters, args.warmup)
    rows: Dict[str, Dict[str, Optional[float]]] = {
        setting: {variant: (args.batch / seconds[setting, variant] if (setting, variant) in seconds else None)
                  for variant in VARIANTS}
        for setting in args.settings
    }
    table = markdown(rows, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
