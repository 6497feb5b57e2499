"""Backbones that size themselves from a front-end's output shape.

Every builder takes ``input_shape=(bins, frames)``, ``num_outputs`` and
``head`` (``"utterance"`` for keyword spotting, ``"frames"`` for CTC) plus its own
keyword arguments from the sweep config.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Sequence

from torch import nn

from specsweep.backbones.base import BACKBONES
from specsweep.backbones.bcresnet import BCResNet
from specsweep.backbones.simple import SimpleModel
from specsweep.contract import Footprint

_BUILT_BY_TASK = {"input_shape", "num_outputs", "head"}


def backbone_param_names(name: str) -> set[str]:
    """Constructor arguments a sweep config may set for backbone ``name``."""
    params = inspect.signature(BACKBONES.get(name)).parameters
    return set(params) - _BUILT_BY_TASK - {"self"}


def backbone_footprint(config: Dict[str, Any], input_shape: Sequence[int], num_outputs: int, head: str) -> Footprint:
    """Sizes of the backbone of a valid ``config`` on ``input_shape = (bins, frames)``,
    computed without building it."""
    kwargs = {k: v for k, v in config.items() if k != "name"}
    return BACKBONES.get(config["name"]).footprint(tuple(input_shape), num_outputs, head, **kwargs)


def build_backbone(
    config: Dict[str, Any], input_shape: Sequence[int], num_outputs: int, head: str
) -> nn.Module:
    """Build the backbone named by ``config["name"]`` with the rest of ``config`` as arguments."""
    kwargs = {k: v for k, v in config.items() if k != "name"}
    unknown = set(kwargs) - backbone_param_names(config["name"])
    if unknown:
        raise ValueError(
            f"backbone {config['name']!r} has no option(s) {sorted(unknown)}; "
            f"allowed: {sorted(backbone_param_names(config['name']))}"
        )
    return BACKBONES.build(config["name"], input_shape=tuple(input_shape), num_outputs=num_outputs, head=head, **kwargs)


__all__ = ["BACKBONES", "BCResNet", "SimpleModel", "backbone_footprint", "build_backbone", "backbone_param_names"]
