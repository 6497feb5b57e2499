"""The simple models of the original experiments: a linear classifier (KWS) and a BiLSTM (ASR)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from specsweep.backbones.base import BACKBONES
from specsweep.contract import Footprint, PositiveInt


@BACKBONES.register("simple")
class SimpleModel(nn.Module):
    """Linear layer on the flattened log-spectrogram, or a BiLSTM + per-frame linear layer.

    Parameters
    ----------
    input_shape : (int, int)
        ``(bins, frames)`` from the front-end.
    num_outputs : int
    head : {"utterance", "frames"}
        ``"utterance"``: one linear layer on ``bins * frames`` features, output
        ``(batch, num_outputs)``. ``"frames"``: a one-layer BiLSTM over frames and a
        linear layer per frame, output ``(batch, frames, num_outputs)``.
    hidden_size : int
        LSTM units per direction (``"frames"`` head only).

    Examples
    --------
    >>> SimpleModel((40, 101), 12)(torch.randn(3, 40, 101)).shape
    torch.Size([3, 12])
    >>> SimpleModel((40, 101), 40, head="frames")(torch.randn(3, 40, 77)).shape
    torch.Size([3, 77, 40])
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int, head: str = "utterance",
                 hidden_size: PositiveInt = 32, num_layers: PositiveInt = 1) -> None:
        super().__init__()
        if head not in ("utterance", "frames"):
            raise ValueError(f"head must be 'utterance' or 'frames', got {head!r}")
        bins, frames = input_shape
        self.head_kind = head
        if head == "utterance":
            self.lstm = None
            self.linear = nn.Linear(bins * frames, num_outputs)
        else:
            self.lstm = nn.LSTM(bins, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True)
            self.linear = nn.Linear(2 * hidden_size, num_outputs)

    @classmethod
    def footprint(cls, input_shape: Sequence[int], num_outputs: int, head: str = "utterance",
                  hidden_size: int = 32, num_layers: int = 1) -> Footprint:
        """Parameter count and per-example activations, without building the model.

        Examples
        --------
        >>> net = SimpleModel((40, 101), 40, head="frames", num_layers=2)
        >>> SimpleModel.footprint((40, 101), 40, "frames", num_layers=2).trainable["backbone"] == sum(
        ...     p.numel() for p in net.parameters())
        True
        """
        bins, frames = input_shape
        if head == "utterance":
            return Footprint({"backbone": (bins * frames + 1) * num_outputs}, activations=num_outputs)
        # Per direction and layer: 4 gates over inputs and hidden state, two biases each;
        # layers after the first read both directions (closed form: num_layers may be huge).
        def layer(inputs: int) -> int:
            return 2 * (4 * hidden_size * (inputs + hidden_size) + 8 * hidden_size)

        params = (2 * hidden_size + 1) * num_outputs + layer(bins) + (num_layers - 1) * layer(2 * hidden_size)
        # Gates, cell and hidden states of both directions per frame and layer.
        return Footprint({"backbone": params}, activations=frames * num_layers * 2 * 6 * hidden_size)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        if self.lstm is None:
            return self.linear(spectrogram.flatten(1))
        hidden, _ = self.lstm(spectrogram.transpose(1, 2))
        return self.linear(hidden)
