"""A speech model is a front-end followed by a backbone; both are built from the trial config."""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

from specsweep.backbones import backbone_footprint, build_backbone
from specsweep.contract import Footprint
from specsweep.frontends import build_frontend, frontend_footprint
from specsweep.frontends.base import FrontEnd


class SpectrogramModel(nn.Module):
    """``frontend`` (waveform to log-spectrogram) followed by ``backbone``.

    Examples
    --------
    >>> model = build_model({"name": "nnaudio", "setting": "A"}, {"name": "simple"},
    ...                     clip_samples=16000, num_outputs=12, head="utterance")
    >>> model(torch.randn(2, 16000)).shape
    torch.Size([2, 12])
    """

    def __init__(self, frontend: FrontEnd, backbone: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frontend(waveform))

    def trainable_parameter_counts(self) -> Dict[str, int]:
        counts = self.frontend.trainable_parameter_counts()
        counts["backbone"] = sum(p.numel() for p in self.backbone.parameters() if p.requires_grad)
        return counts


def build_model(
    frontend: Dict[str, Any], backbone: Dict[str, Any], clip_samples: int, num_outputs: int, head: str
) -> SpectrogramModel:
    """Build the front-end, ask it for its output shape, and size the backbone from it.

    ``clip_samples`` is the fixed clip length (KWS) or a nominal one for variable-length
    utterances, where backbones depend on the number of bins only.
    """
    fe = build_frontend(frontend)
    bb = build_backbone(backbone, fe.output_shape(clip_samples), num_outputs, head)
    return SpectrogramModel(fe, bb)


def model_footprint(
    frontend: Dict[str, Any], backbone: Dict[str, Any], clip_samples: int, num_outputs: int, head: str
) -> Footprint:
    """Sizes of the model :func:`build_model` would build, computed from valid configs
    without building it: trainable parameters by part (as ``trainable_parameter_counts``),
    frozen values, per-example activations and the transient values of building.

    Examples
    --------
    >>> fe, bb = {"name": "nnaudio", "setting": "D"}, {"name": "bcresnet"}
    >>> fp = model_footprint(fe, bb, 16000, 12, "utterance")
    >>> fp.trainable == build_model(fe, bb, 16000, 12, "utterance").trainable_parameter_counts()
    True
    """
    fe = frontend_footprint(frontend, clip_samples)
    bb = backbone_footprint(backbone, fe.shape, num_outputs, head)
    return Footprint({**fe.trainable, **bb.trainable}, frozen=fe.frozen + bb.frozen,
                     activations=fe.activations + bb.activations, build=fe.build + bb.build, shape=bb.shape)
