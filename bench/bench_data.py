"""Data path: reading the decoded-audio cache versus decoding WAV files, and memory per reader.

(a) Clips/s for one epoch of the embedded keyword set's train split through a
``DataLoader`` (batch 100, ``num_workers=0``, as trials with ``train.data_path: loader``
read it), and through the batches that ``train.data_path: device`` gathers, here on the CPU:

* cache: ``prepare_dataset({"name": "embedded_kws"}).dataset("train")``, the
  memory-mapped int16 array,
* WAV: the same clips (``speech_commands_sources`` on the generated set's root) decoded
  with soundfile each epoch the way the cache builder decodes them (read int16, take the
  first channel, pad or crop to 16000 samples; ``_silence_`` clips are slices of the
  background-noise files).

Both run one untimed epoch first, so the files are in the page cache and the comparison
is decoding versus copying, not disk speed; the median of the timed epochs is reported.

(b) Memory with N concurrent readers of the same cache (spawned processes, as
concurrent trials are): each opens ``CachedAudio`` and reads the whole split twice, then
waits while the parent reads its ``/proc/<pid>/smaps_rollup`` (the whole process) and the
``/proc/<pid>/smaps`` entry of the mapped ``audio.int16``. Pages of the file are shared
through the page cache, so each reader's PSS of the mapping is about size / N, while its
RSS of the mapping is the whole file.

Usage::

    python -m bench.bench_data            # full set, 3 timed epochs, N = 2 and 4
    python -m bench.bench_data --tiny     # clips_per_word 6, 1 timed epoch, N = 2
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import soundfile
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from bench.common import document, fmt, machine_line, median_seconds, out_path, parser, publish, table, versions_line
from specsweep.data.cache import CachedAudio, ClipSource
from specsweep.data.datasets import prepare_dataset
from specsweep.data.embedded import ensure_speech_commands
from specsweep.data.loaders import DeviceBatches
from specsweep.data.speechcommands import speech_commands_sources

NAME = "data"
BATCH = 100
MB = 1024 * 1024


class WavClips(Dataset):
    """The clips of ``sources`` decoded from their WAV files on every access, returning
    what :class:`CachedAudio` returns (float32 waveform, int64 targets)."""

    def __init__(self, sources: Sequence[ClipSource]) -> None:
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        src = self.sources[i]
        with soundfile.SoundFile(src.path) as f:
            f.seek(src.start)
            audio = f.read(frames=-1 if src.frames is None else src.frames, dtype="int16", always_2d=True)[:, 0]
        if src.pad_to is not None:
            audio = np.pad(audio[: src.pad_to], (0, max(0, src.pad_to - len(audio))))
        clip = audio.astype(np.float32) / 32768.0
        return torch.from_numpy(clip), torch.tensor(src.targets, dtype=torch.int64)


def epoch_seconds(dataset: Dataset, epochs: int, batches: Optional[Iterable[Any]] = None) -> float:
    """Median seconds of one pass over ``dataset`` in batches of 100 (or over ``batches``),
    after an untimed pass."""
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=0) if batches is None else batches

    def one_epoch() -> None:
        for _ in loader:
            pass

    return median_seconds(one_epoch, repeats=epochs, warmup=1)


def _reader(folder: str, done: Any, release: Any) -> None:
    """A concurrent trial's data access: read the whole split twice, then stay alive
    until the parent has read this process's memory maps."""
    dataset = CachedAudio(Path(folder))
    for _ in range(2):
        for i in range(len(dataset)):
            dataset[i]
    done.put(os.getpid())
    release.wait()


def _kib_fields(lines: Sequence[str]) -> Dict[str, int]:
    fields: Dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def process_memory(pid: int) -> Dict[str, int]:
    """Rss, Pss, Shared_Clean and Private (clean + dirty) of the whole process, in kB."""
    f = _kib_fields(Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines())
    return {"Rss": f["Rss"], "Pss": f["Pss"], "Shared_Clean": f["Shared_Clean"],
            "Private": f["Private_Clean"] + f["Private_Dirty"]}


def mapping_memory(pid: int, file: Path) -> Dict[str, int]:
    """Rss and Pss of the mappings of ``file`` in the process, in kB (summed if mapped twice)."""
    total = {"Rss": 0, "Pss": 0}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        # A mapping header starts with an address range; its fields follow until the next one.
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = line.rstrip().endswith(str(file))
        elif inside:
            f = _kib_fields([line])
            for key in total:
                total[key] += f.get(key, 0)
    return total


def concurrent_readers(folder: Path, n: int) -> List[Dict[str, Any]]:
    """Start ``n`` spawned readers of the cache entry, sample each at the end of its reads."""
    # spawn, as Ray starts trial workers: nothing is inherited from the parent's memory.
    ctx = multiprocessing.get_context("spawn")
    done, release = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_reader, args=(str(folder), done, release)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        finished = [done.get(timeout=600) for _ in procs]
        audio = folder / "audio.int16"
        # Every reader is alive and holds its map when the samples are taken.
        samples = [{"pid": pid, **process_memory(pid), "map": mapping_memory(pid, audio)} for pid in finished]
    finally:
        release.set()
        for p in procs:
            p.join(timeout=60)
    return samples


def read_speed_section(config: Dict[str, Any], epochs: int) -> Tuple[str, Path]:
    data = prepare_dataset(config)
    cached = data.dataset("train")
    root_params = {k: v for k, v in config.items() if k not in ("name", "cache_dir")}
    root = ensure_speech_commands(config.get("cache_dir"), **root_params)
    wav = WavClips(speech_commands_sources(root)["train"])
    if len(wav) != len(cached):
        raise RuntimeError(f"the WAV sources have {len(wav)} train clips but the cache has {len(cached)}")
    cache_s = epoch_seconds(cached, epochs)
    wav_s = epoch_seconds(wav, epochs)
    on_cpu = DeviceBatches(cached, BATCH, SequentialSampler(cached), None, False, torch.device("cpu"))
    device_s = epoch_seconds(cached, epochs, on_cpu)
    rows = [
        ["cache (memory-mapped int16)", f"{len(cached):,}", fmt(cache_s, 3), fmt(len(cached) / cache_s, 0), "1.0"],
        ["cache, batches gathered by `train.data_path: device` on the CPU", f"{len(cached):,}", fmt(device_s, 3),
         fmt(len(cached) / device_s, 0), fmt(device_s / cache_s, 2)],
        ["WAV decode (soundfile)", f"{len(wav):,}", fmt(wav_s, 3), fmt(len(wav) / wav_s, 0), fmt(wav_s / cache_s, 1)],
    ]
    text = "\n\n".join([
        "## Reading one epoch of the train split",
        f"Batch {BATCH}, `num_workers=0`, page cache warm (one untimed epoch first); median of {epochs} epoch(s).",
        table(["source", "clips", "s / epoch", "clips/s", "time vs cache"], rows),
    ])
    return text, Path(cached.folder)


def memory_section(folder: Path, readers: Sequence[int]) -> str:
    size = (folder / "audio.int16").stat().st_size
    rows = []
    for n in readers:
        for i, s in enumerate(concurrent_readers(folder, n)):
            rows.append([
                str(n), str(i + 1), fmt(s["Rss"] / 1024, 1), fmt(s["Pss"] / 1024, 1),
                fmt(s["Shared_Clean"] / 1024, 1), fmt(s["Private"] / 1024, 1),
                fmt(s["map"]["Rss"] / 1024, 1), fmt(s["map"]["Pss"] / 1024, 1), fmt(size / MB / n, 1),
            ])
    return "\n\n".join([
        "## Memory per reader, N concurrent readers of the same cache",
        f"Cache file `audio.int16`: {size / MB:.1f} MiB. Each reader is a spawned process that opens "
        "`CachedAudio` and reads the split twice; sampled at the end while all N hold their maps. "
        "Process columns from `smaps_rollup`; mapping columns from the `smaps` entry of `audio.int16`. "
        "Shared pages show as mapping RSS = file size with mapping PSS = size / N.",
        table(["N", "reader", "process RSS MiB", "process PSS MiB", "Shared_Clean MiB", "Private MiB",
               "audio map RSS MiB", "audio map PSS MiB", "file size / N MiB"], rows),
    ])


def main(argv: Optional[List[str]] = None) -> None:
    p = parser(__doc__.split("\n\n")[0], NAME)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per source")
    p.add_argument("--readers", default="2,4", help="comma-separated numbers of concurrent readers")
    args = p.parse_args(argv)
    config: Dict[str, Any] = {"name": "embedded_kws"}
    if args.tiny:
        config["clips_per_word"] = 6
        args.epochs, args.readers = 1, "2"
    torch.set_num_threads(1)
    start = time.perf_counter()
    speed, folder = read_speed_section(config, args.epochs)
    memory = memory_section(folder, [int(n) for n in args.readers.split(",")])
    header = [
        machine_line(),
        versions_line("torch", "numpy", "soundfile"),
        f"- data: `{config}`" + ("; --tiny: numbers mean nothing" if args.tiny else ""),
        f"- benchmark wall time {time.perf_counter() - start:.0f} s",
    ]
    publish(document("Data path: cache vs WAV decoding, memory per reader", header, [speed, memory]),
            out_path(args.out, NAME))


if __name__ == "__main__":
    main()
