"""DataLoaders over the decoded-audio caches, per task."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, WeightedRandomSampler

from specsweep.data.datasets import PreparedData


def class_sampling_weights(
    labels: Sequence[int],
    class_names: Sequence[str],
    class_weights: Optional[Mapping[str, float]] = None,
    balance: bool = True,
) -> torch.Tensor:
    """Per-example sampling weights, normalised to sum 1.

    With ``balance`` each class is drawn equally often (inverse frequency up-weights the
    small ``_silence_`` class and down-weights ``_unknown_``, 25 words pooled), times its
    factor in ``class_weights``. Without it the factors are the weights themselves, as in
    the original experiments (keyword 1, ``_silence_`` 4.6, ``_unknown_`` 1/17).

    Examples
    --------
    >>> [round(w, 3) for w in class_sampling_weights([0, 0, 0, 1], ["a", "b"]).tolist()]
    [0.167, 0.167, 0.167, 0.5]
    >>> [round(w, 3) for w in class_sampling_weights([0, 0, 0, 1], ["a", "b"], {"b": 3.0}, balance=False).tolist()]
    [0.167, 0.167, 0.167, 0.5]
    """
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    factors = torch.tensor([float((class_weights or {}).get(name, 1.0)) for name in class_names], dtype=torch.double)
    unknown = set(class_weights or {}) - set(class_names)
    if unknown:
        raise ValueError(f"train.class_weights names unknown classes {sorted(unknown)}; classes: {list(class_names)}")
    per_class = factors
    if balance:
        per_class = factors / torch.bincount(labels_t, minlength=len(class_names)).clamp(min=1).double()
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
    eval_batch_size: Optional[int] = None,
) -> Dict[str, DataLoader]:
    """Train/val/test loaders. Training order is drawn from ``generator`` (seeded by the
    trial) rather than the global RNG, so its state can be checkpointed and restored.
    Training draws with replacement by class weights (:func:`class_sampling_weights`)
    when ``balance_classes`` or ``class_weights`` is given, else shuffles."""
    collate = pad_collate if data.clip_samples is None else None
    train = data.dataset("train")
    if balance_classes or class_weights:
        weights = class_sampling_weights(train.first_targets(), data.labels, class_weights, balance_classes)
        sampler = WeightedRandomSampler(weights, num_samples=len(train), replacement=True, generator=generator)
        train_loader = DataLoader(train, batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
                                  drop_last=len(train) > batch_size)
    else:
        train_loader = DataLoader(train, batch_size, shuffle=True, generator=generator, num_workers=num_workers,
                                  collate_fn=collate, drop_last=len(train) > batch_size)
    loaders = {"train": train_loader}
    for split in ("val", "test"):
        loaders[split] = DataLoader(data.dataset(split), eval_batch_size or batch_size, num_workers=num_workers,
                                    collate_fn=collate)
    return loaders
