"""specsweep: Ray Tune sweeps over trainable spectrogram front-ends for speech models."""

__version__ = "0.1.0"
