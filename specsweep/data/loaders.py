"""DataLoaders over the decoded-audio caches, per task."""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, WeightedRandomSampler

from specsweep.data.cache import CachedAudio
from specsweep.data.datasets import DatasetInfo, PreparedData

DATA_PATHS = ("auto", "loader", "device")


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


class DeviceBatches:
    """Batches of a fixed-length split gathered on ``device`` from the split's int16 audio,
    copied there once: no loader process and no per-clip work on the CPU.

    Iterating yields the batches a ``DataLoader(dataset, batch_size, sampler=sampler,
    generator=generator, drop_last=drop_last, num_workers=0)`` yields, in the same order,
    as ``(waveform float32 (batch, samples), targets int64 (batch, targets per clip))`` on
    ``device``: the indices come from the same sampler, and each pass first draws the
    seed that such a loader draws for its workers (from ``generator``, or the global RNG
    when None), so the random streams advance exactly as with the loader.

    On the CPU the audio stays the copy-on-write memory map of the cache, whose pages
    concurrent trials share.

    Examples
    --------
    >>> import tempfile, numpy as np, soundfile
    >>> from pathlib import Path
    >>> from specsweep.data.cache import ClipSource, build_cache
    >>> d = Path(tempfile.mkdtemp())
    >>> for i in range(3): soundfile.write(d / f"{i}.wav", np.full(4, i, "int16"), 16000)
    >>> ds = CachedAudio(build_cache([ClipSource(str(d / f"{i}.wav"), (i,)) for i in range(3)], 16000, d / "c"))
    >>> [t[:, 0].tolist() for _, t in DeviceBatches(ds, 2, SequentialSampler(ds), None, False, torch.device("cpu"))]
    [[0, 1], [2]]
    """

    def __init__(self, dataset: CachedAudio, batch_size: int, sampler: Sampler, generator: Optional[torch.Generator],
                 drop_last: bool, device: torch.device) -> None:
        lengths, target_lengths = np.unique(dataset.lengths), np.unique(dataset.target_lengths)
        if len(lengths) != 1 or len(target_lengths) != 1:
            raise ValueError(f"{dataset.folder}: the device data path needs clips of one length and one target "
                             f"count; this split has {len(lengths)} clip lengths (use train.data_path: loader)")
        audio = np.memmap(dataset.folder / "audio.int16", dtype="<i2", mode="c")
        self.audio = torch.from_numpy(audio).view(len(dataset), int(lengths[0])).to(device)
        self.targets = torch.from_numpy(dataset.targets.astype(np.int64)).view(len(dataset), -1).to(device)
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.generator = generator
        self.device = device

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        # The samplers draw a whole pass at its start, so taking every batch's indices now
        # draws the same numbers; they then reach the device in one copy per pass. A copy
        # per batch from a Python list would wait for the GPU to finish the previous step.
        batches = list(self.batches)
        order = torch.tensor([i for indices in batches for i in indices], dtype=torch.int64)
        if self.device.type == "cuda":
            order = order.pin_memory()
        order = order.to(self.device, non_blocking=True)
        start = 0
        for indices in batches:
            index = order[start:start + len(indices)]
            start += len(indices)
            # int16 / 2**15 in float32 is exact, as the loader's NumPy conversion.
            yield self.audio[index].float() / 32768.0, self.targets[index]


Batches = Union[DataLoader, DeviceBatches]


def resolve_data_path(data_path: str, data: Union[PreparedData, DatasetInfo], device: torch.device) -> str:
    """``loader`` or ``device`` for ``train.data_path`` on ``device``: ``auto`` is ``device``
    for fixed-length clips (keyword spotting) on a GPU, and ``loader`` for variable-length
    utterances, whose padding stays with the loader's collate function, and on the CPU,
    where gathering from the memory-mapped cache saved nothing (the simple model in setting
    D trained 11 % slower that way, bench/recorded/trials_cpu_data_path.md). Both give the
    same batches."""
    if data_path not in DATA_PATHS:
        raise ValueError(f"train.data_path must be one of {', '.join(DATA_PATHS)}, got {data_path!r}")
    if data_path == "auto":
        return "device" if data.clip_samples is not None and device.type == "cuda" else "loader"
    return data_path


def make_loaders(
    data: PreparedData,
    batch_size: int,
    generator: torch.Generator,
    num_workers: int = 0,
    balance_classes: bool = False,
    class_weights: Optional[Mapping[str, float]] = None,
    eval_batch_size: Optional[int] = None,
    device: Optional[torch.device] = None,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Dict[str, Batches]:
    """Train/val/test batches. Training order is drawn from ``generator`` (seeded by the
    trial) rather than the global RNG, so its state can be checkpointed and restored.
    Training draws with replacement by class weights (:func:`class_sampling_weights`)
    when ``balance_classes`` or ``class_weights`` is given, else shuffles (or, without
    ``shuffle``, reads the split in its order); ``drop_last`` drops a last, partial training
    batch when there is more than one batch. Validation and test batches hold
    ``eval_batch_size`` (default ``batch_size``) examples, in order, none dropped.

    With ``device`` the batches are :class:`DeviceBatches` on that device, the same batches
    in the same order as the loaders (``num_workers`` is then unused); otherwise
    ``DataLoader``s."""
    collate = pad_collate if data.clip_samples is None else None
    train = data.dataset("train")
    drop_last = drop_last and len(train) > batch_size
    sampler: Sampler
    # The loader's own generator only seeds its workers; the weighted loader never had one
    # (its workers' seed comes from the global RNG), and keeping that keeps seeded results.
    loader_generator: Optional[torch.Generator] = None
    if balance_classes or class_weights:
        weights = class_sampling_weights(train.first_targets(), data.labels, class_weights, balance_classes)
        sampler = WeightedRandomSampler(weights, num_samples=len(train), replacement=True, generator=generator)
    elif shuffle:
        sampler, loader_generator = RandomSampler(train, generator=generator), generator
    else:
        sampler = SequentialSampler(train)
    eval_batch = eval_batch_size or batch_size
    splits: Iterable[Tuple[str, CachedAudio, int, Sampler, Optional[torch.Generator], bool]] = [
        ("train", train, batch_size, sampler, loader_generator, drop_last),
        *((split, ds, eval_batch, SequentialSampler(ds), None, False)
          for split, ds in ((s, data.dataset(s)) for s in ("val", "test"))),
    ]
    if device is not None:
        return {name: DeviceBatches(ds, size, smp, gen, drop, device) for name, ds, size, smp, gen, drop in splits}
    return {name: DataLoader(ds, size, sampler=smp, generator=gen, num_workers=num_workers, collate_fn=collate,
                             drop_last=drop) for name, ds, size, smp, gen, drop in splits}
