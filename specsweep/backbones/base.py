"""The backbones a spec's ``backbone.name`` selects; each registers where its class is defined."""

from __future__ import annotations

from specsweep.registry import Registry

BACKBONES = Registry("backbone")
