"""specsweep: Ray Tune sweeps over trainable spectrogram front-ends for speech models."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_trial"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: `import specsweep` (and the command's --help) stays free of torch.
    if name == "load_trial":
        from specsweep.results.export import load_trial

        return load_trial
    raise AttributeError(f"module 'specsweep' has no attribute {name!r}")
