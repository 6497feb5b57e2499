"""BC-ResNet (Kim et al., "Broadcasted Residual Learning for Efficient Keyword Spotting", 2021)."""

from __future__ import annotations

from typing import Annotated, Any, List, Optional, Sequence, Tuple

import torch
from pydantic import Field
from torch import nn

from specsweep.backbones.base import BACKBONES
from specsweep.contract import Footprint, PositiveFloat, PositiveInt, Probability

# Four stages of at least one block each.
StageBlocks = Annotated[Sequence[PositiveInt], Field(min_length=4, max_length=4)]


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


class SubSpectralNorm(nn.Module):
    """Batch norm with separate statistics per frequency sub-band.

    Parameters
    ----------
    channels : int
    freq : int
        Frequency size of the input; the number of sub-bands is the largest divisor of
        ``freq`` not above ``subbands`` so that any n_mels works.
    subbands : int

    Examples
    --------
    >>> SubSpectralNorm(8, freq=20)(torch.randn(2, 8, 20, 101)).shape
    torch.Size([2, 8, 20, 101])
    """

    def __init__(self, channels: int, freq: int, subbands: int = 5) -> None:
        super().__init__()
        self.subbands = _largest_divisor_at_most(freq, subbands)
        self.bn = nn.BatchNorm2d(channels * self.subbands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        x = self.bn(x.reshape(b, c * self.subbands, f // self.subbands, t))
        return x.reshape(b, c, f, t)


class BCResBlock(nn.Module):
    """One broadcasted residual block, ``(batch, in_ch, freq, time)`` to
    ``(batch, out_ch, freq_out, time)``.

    A 2-D frequency-wise depthwise path (f2) is averaged over frequency, passed
    through a 1-D temporal path (f1) and broadcast back. When channels or the
    frequency stride change, the block is a transition block without identity shortcut.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        freq: int,
        stride: int = 1,
        dilation: int = 1,
        dropout: float = 0.1,
        subbands: int = 5,
    ) -> None:
        super().__init__()
        self.transition = in_channels != out_channels or stride != 1
        layers: List[nn.Module] = []
        if in_channels != out_channels:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]
        self.out_freq = (freq - 1) // stride + 1
        layers += [
            nn.Conv2d(out_channels, out_channels, (3, 1), stride=(stride, 1), padding=(1, 0), groups=out_channels, bias=False),
            SubSpectralNorm(out_channels, self.out_freq, subbands),
        ]
        self.f2 = nn.Sequential(*layers)
        self.f1 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, (1, 3), padding=(0, dilation), dilation=(1, dilation), groups=out_channels, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frequency_wise = self.f2(x)
        temporal = self.f1(frequency_wise.mean(dim=2, keepdim=True))
        out = frequency_wise + temporal
        if not self.transition:
            out = out + x
        return torch.relu(out)


# Channels past which a footprint is not counted on the meta device: the head's 1x1
# convolution alone then holds over 2**40 parameters.
_MAX_CHANNELS = 2**20


@BACKBONES.register("bcresnet")
class BCResNet(nn.Module):
    """BC-ResNet on a log-spectrogram ``(batch, bins, frames)``.

    The defaults are the variant of the trainable-STFT-Mel study (heungky/trainable-STFT-Mel):
    a stem convolution with bias and no normalisation, channel dropout 0.5 in transition
    blocks and 0.1 elsewhere, a head without normalisation and a classifier without bias
    (9,160 parameters for BC-ResNet-1 at 40 Mel bins and 12 classes). Kim et al.'s own
    network has ``stem_norm=True, head_norm=True`` and ``transition_dropout=dropout``.

    Parameters
    ----------
    input_shape : (int, int)
        ``(bins, frames)`` as reported by the front-end's ``output_shape``.
    num_outputs : int
        Classes (KWS) or CTC symbols including the blank (ASR).
    head : {"utterance", "frames"}
        ``"utterance"`` returns ``(batch, num_outputs)``; ``"frames"`` keeps the time
        axis and returns ``(batch, frames, num_outputs)`` for CTC.
    width : float
        Width multiplier: BC-ResNet-1 has stage channels 8/12/16/20.
    blocks : sequence of int
        Blocks per stage.
    dropout : float
        Channel dropout of the broadcasted (non-transition) blocks.
    transition_dropout : float or None
        Channel dropout of transition blocks (None: ``dropout``).
    subbands : int
        Sub-bands of the sub-spectral norm (fewer when the frequency size is not divisible).
    stem_norm, head_norm : bool
        Batch norm and ReLU after the stem convolution / the head's 1x1 convolution.
    classifier_bias : bool
        Bias in the final 1x1 (linear) classifier.
    frame_lstm : int
        ``"frames"`` head only: units per direction of a BiLSTM over the head's frames
        before the classifier (the study's ASR model: 32; 0: none).

    Examples
    --------
    >>> net = BCResNet((40, 101), num_outputs=12)
    >>> net(torch.randn(2, 40, 101)).shape
    torch.Size([2, 12])
    >>> sum(p.numel() for p in net.parameters())
    9160
    >>> asr = BCResNet((40, 101), 62, head="frames")
    >>> asr(torch.randn(2, 40, 77)).shape, sum(p.numel() for p in asr.parameters())
    (torch.Size([2, 77, 62]), 29640)
    """

    base_channels: Tuple[int, ...] = (16, 8, 12, 16, 20, 32)
    stage_strides: Tuple[int, ...] = (1, 2, 2, 1)
    stage_dilations: Tuple[int, ...] = (1, 2, 4, 8)

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        head: str = "utterance",
        width: PositiveFloat = 1.0,
        blocks: StageBlocks = (2, 2, 4, 4),
        dropout: Probability = 0.1,
        transition_dropout: Optional[Probability] = 0.5,
        subbands: PositiveInt = 5,
        stem_norm: bool = False,
        head_norm: bool = False,
        classifier_bias: bool = False,
        frame_lstm: Annotated[int, Field(ge=0)] = 32,
    ) -> None:
        super().__init__()
        if head not in ("utterance", "frames"):
            raise ValueError(f"head must be 'utterance' or 'frames', got {head!r}")
        if len(blocks) != 4:
            raise ValueError(f"blocks must list 4 stages, got {list(blocks)}")
        self.head_kind = head
        stem_ch, stages, head_ch, freq = self.layout(input_shape, width, blocks)
        stem: List[nn.Module] = [nn.Conv2d(1, stem_ch, 5, stride=(2, 1), padding=2, bias=not stem_norm)]
        if stem_norm:
            stem += [nn.BatchNorm2d(stem_ch), nn.ReLU()]
        self.stem = nn.Sequential(*stem)
        layers = []
        for in_ch, out_ch, block_freq, stride, dilation in stages:
            transition = in_ch != out_ch or stride != 1
            drop = transition_dropout if transition and transition_dropout is not None else dropout
            layers.append(BCResBlock(in_ch, out_ch, block_freq, stride, dilation, drop, subbands))
        in_ch = stages[-1][1]
        self.stages = nn.Sequential(*layers)
        # The paper's 5x5 depthwise conv eats 4 frequency bins unpadded; small n_mels leave fewer.
        freq_kernel = min(5, freq)
        head_layers: List[nn.Module] = [
            nn.Conv2d(in_ch, in_ch, (freq_kernel, 5), padding=(0, 2), groups=in_ch),
            nn.Conv2d(in_ch, head_ch, 1, bias=False),
        ]
        if head_norm:
            head_layers += [nn.BatchNorm2d(head_ch), nn.ReLU()]
        self.head = nn.Sequential(*head_layers)
        self.lstm = None
        features = head_ch
        if head == "frames" and frame_lstm:
            self.lstm = nn.LSTM(head_ch, frame_lstm, batch_first=True, bidirectional=True)
            features = 2 * frame_lstm
        self.classifier = nn.Linear(features, num_outputs, bias=classifier_bias)

    @classmethod
    def layout(cls, input_shape: Sequence[int], width: float, blocks: Sequence[int]
               ) -> Tuple[int, List[Tuple[int, int, int, int, int]], int, int]:
        """``(stem channels, blocks, head channels, output frequency)`` where each block is
        ``(in_channels, out_channels, frequency, stride, dilation)``."""
        stem_ch, *stage_ch, head_ch = [max(1, round(c * width)) for c in cls.base_channels]
        freq = (input_shape[0] - 1) // 2 + 1
        in_ch, stages = stem_ch, []
        for out_ch, n, stride, dilation in zip(stage_ch, blocks, cls.stage_strides, cls.stage_dilations):
            for i in range(n):
                # Frequency can only be halved while it is more than one bin.
                block_stride = stride if (i == 0 and freq > 1) else 1
                stages.append((in_ch, out_ch, freq, block_stride, dilation))
                in_ch, freq = out_ch, (freq - 1) // block_stride + 1
        return stem_ch, stages, head_ch, freq

    @classmethod
    def footprint(cls, input_shape: Sequence[int], num_outputs: int, head: str = "utterance", width: float = 1.0,
                  blocks: Sequence[int] = (2, 2, 4, 4), subbands: int = 5, **options: Any) -> Footprint:
        """Parameter count and per-example activations for ``input_shape = (bins, frames)``,
        without allocating the network: parameters are counted on PyTorch's meta device,
        activations estimated from the layout.

        Examples
        --------
        >>> for head, outputs in (("utterance", 12), ("frames", 62)):
        ...     net = BCResNet((40, 101), outputs, head)
        ...     fp = BCResNet.footprint((40, 101), outputs, head)
        ...     print(fp.trainable["backbone"] == sum(p.numel() for p in net.parameters()))
        True
        True
        """
        stem_ch, *stage_ch, head_ch = [max(1, round(c * width)) for c in cls.base_channels]
        if max(stem_ch, *stage_ch, head_ch) > _MAX_CHANNELS:
            # The head's 1x1 convolution alone: a lower bound that is refused as too large
            # (the meta device cannot size tensors past 64-bit element counts).
            return Footprint({"backbone": stage_ch[-1] * head_ch}, frozen=0, activations=stage_ch[-1] * head_ch)
        if any(n > 2 for n in blocks):
            # Blocks after a stage's first are alike (same channels, frequency, stride 1):
            # sizes grow by the second block's, counted from networks of at most 2 blocks
            # per stage (a million blocks are counted, never built).
            ones = cls.footprint(input_shape, num_outputs, head, width, (1, 1, 1, 1), subbands, **options)
            total = {"params": ones.trainable["backbone"], "activations": ones.activations}
            for stage, n in enumerate(blocks):
                two = cls.footprint(input_shape, num_outputs, head, width,
                                    tuple(2 if s == stage else 1 for s in range(4)), subbands, **options)
                total["params"] += (n - 1) * (two.trainable["backbone"] - ones.trainable["backbone"])
                total["activations"] += (n - 1) * (two.activations - ones.activations)
            return Footprint({"backbone": total["params"]}, frozen=0, activations=total["activations"])
        with torch.device("meta"):
            net = cls(input_shape, num_outputs, head, width, blocks, subbands=subbands, **options)
        params = sum(p.numel() for p in net.parameters())
        stem_ch, stages, head_ch, out_freq = cls.layout(input_shape, width, blocks)
        frames = input_shape[1]
        # Conv, batch norm and ReLU outputs are kept for the backward pass.
        activations = 3 * stem_ch * ((input_shape[0] - 1) // 2 + 1) * frames
        for in_ch, out_ch, freq, stride, _ in stages:
            block_freq = (freq - 1) // stride + 1
            if in_ch != out_ch:
                activations += 3 * out_ch * freq * frames
            activations += 4 * out_ch * block_freq * frames + 6 * out_ch * frames
        activations += (stages[-1][1] + 3 * head_ch) * frames * out_freq
        if net.lstm is not None:
            activations += 10 * net.lstm.hidden_size * frames
        return Footprint({"backbone": params}, frozen=0, activations=activations)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = self.stem(spectrogram.unsqueeze(1))
        frames = self.head(self.stages(x)).mean(dim=2).transpose(1, 2)
        if self.head_kind == "utterance":
            return self.classifier(frames.mean(dim=1))
        if self.lstm is not None:
            frames, _ = self.lstm(frames)
        return self.classifier(frames)
