"""Shared fixtures: small real WAV trees written to temp folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from specsweep.data.speechcommands import KEYWORDS

torch.set_num_threads(1)


def write_tone(path: Path, freq: float, seconds: float = 1.0, sr: int = 16000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    audio = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, (audio * 32767).astype(np.int16), sr, subtype="PCM_16")


@pytest.fixture
def speech_commands_tree(tmp_path: Path) -> Path:
    """A Speech Commands v2 layout: 10 keywords + 2 unknown words, 3 speakers each,
    one speaker in validation and one in testing, and two background noise files."""
    root = tmp_path / "sc"
    words = list(KEYWORDS) + ["bed", "cat"]
    val, test = [], []
    for w, word in enumerate(words):
        for s, speaker in enumerate(["aa11", "bb22", "cc33"]):
            rel = f"{word}/{speaker}_nohash_0.wav"
            # Shorter clips exercise padding to one second.
            write_tone(root / rel, 200 + 50 * w, seconds=0.7 if s == 0 else 1.0, seed=w * 3 + s)
            (val if speaker == "bb22" else test if speaker == "cc33" else []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    for i, name in enumerate(["white_noise.wav", "pink_noise.wav"]):
        write_tone(root / "_background_noise_" / name, 60 + i, seconds=30, seed=100 + i)
    return root


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SPECSWEEP_CACHE", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray for the sweeps of a test session. The dataset cache is fixed before
    Ray starts because trial workers inherit the environment of the driver."""
    import ray

    from specsweep.sweep.cluster import start_ray

    os.environ.setdefault("SPECSWEEP_CACHE", str(tmp_path_factory.mktemp("cache")))
    os.environ["WANDB_MODE"] = "offline"
    os.environ.pop("WANDB_API_KEY", None)
    start_ray(num_cpus=2)
    yield
    ray.shutdown()
