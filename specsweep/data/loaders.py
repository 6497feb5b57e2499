"""DataLoaders over the decoded-audio caches, per task."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, WeightedRandomSampler

from specsweep.data.datasets import PreparedData


def class_balanced_weights(
    labels: Sequence[int], class_names: Sequence[str], class_weights: Optional[Mapping[str, float]] = None
) -> torch.Tensor:
    """Per-example sampling weights: each class drawn equally often, times its factor in
    ``class_weights``. Inverse frequency up-weights the small ``_silence_`` class and
    down-weights ``_unknown_`` (25 words pooled), as in the original experiments.

    Examples
    --------
    >>> [round(w, 3) for w in class_balanced_weights([0, 0, 0, 1], ["a", "b"]).tolist()]
    [0.167, 0.167, 0.167, 0.5]
    """
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.bincount(labels_t, minlength=len(class_names)).clamp(min=1).double()
    factors = torch.tensor([float((class_weights or {}).get(name, 1.0)) for name in class_names], dtype=torch.double)
    unknown = set(class_weights or {}) - set(class_names)
    if unknown:
        raise ValueError(f"train.class_weights names unknown classes {sorted(unknown)}; classes: {list(class_names)}")
    per_class = factors / counts
    weights = per_class[labels_t]
    return weights / weights.sum()


def pad_collate(batch: List[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, ...]:
    """Variable-length utterances to ``(waves (B, T), wave_lengths (B,), targets (B, L), target_lengths (B,))``."""
    waves, targets = zip(*batch)
    return (
        pad_sequence(list(waves), batch_first=True),
        torch.tensor([len(w) for w in waves]),
        pad_sequence(list(targets), batch_first=True),
        torch.tensor([len(t) for t in targets]),
    )


def make_loaders(
    data: PreparedData,
    batch_size: int,
    generator: torch.Generator,
    num_workers: int = 0,
    balance_classes: bool = False,
    class_weights: Optional[Mapping[str, float]] = None,
) -> Dict[str, DataLoader]:
    """Train/val/test loaders. Training order is drawn from ``generator`` (seeded by the
    trial) rather than the global RNG, so its state can be checkpointed and restored."""
    collate = pad_collate if data.clip_samples is None else None
    train = data.dataset("train")
    if balance_classes:
        weights = class_balanced_weights(train.first_targets(), data.labels, class_weights)
        sampler = WeightedRandomSampler(weights, num_samples=len(train), replacement=True, generator=generator)
        train_loader = DataLoader(train, batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
                                  drop_last=len(train) > batch_size)
    else:
        train_loader = DataLoader(train, batch_size, shuffle=True, generator=generator, num_workers=num_workers,
                                  collate_fn=collate, drop_last=len(train) > batch_size)
    loaders = {"train": train_loader}
    for split in ("val", "test"):
        loaders[split] = DataLoader(data.dataset(split), batch_size, num_workers=num_workers, collate_fn=collate)
    return loaders
