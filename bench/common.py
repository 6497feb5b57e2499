"""Helpers shared by the benchmarks: the machine header, Markdown tables, timing.

Every benchmark writes one Markdown file to ``bench/results/<name>.md`` (git-ignored)
and prints it, so that a result pasted into an issue says which machine it came from.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence

RESULTS = Path("bench/results")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_line(torch_threads: Optional[int] = None) -> str:
    """``- machine: <CPU>, <n> usable cores, torch threads <t>, kernel path <k>; <UTC date>``.

    ``torch_threads`` is the number the measured code ran with when it is not this
    process's current setting (e.g. trials in other processes). The kernel path is the
    CPU kernels torch picked (``AVX512``, ``AVX2``, ``DEFAULT``; ``ATEN_CPU_CAPABILITY``
    forces one): timings and results depend on it (docs/reproducibility.md).
    """
    import torch

    if torch_threads is None:
        torch_threads = torch.get_num_threads()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"- machine: {cpu_model()}, {usable_cores()} usable cores, torch threads {torch_threads}, "
            f"kernel path {torch.backends.cpu.get_cpu_capability()}; {date}")


def versions_line(*modules: str) -> str:
    """``- python 3.11.x, torch 2.x, ...`` for the named importable modules."""
    import importlib

    parts = [f"python {platform.python_version()}"]
    for name in modules:
        parts.append(f"{name} {getattr(importlib.import_module(name), '__version__', '?')}")
    return "- " + ", ".join(parts)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Optional[Sequence[bool]] = None) -> str:
    """A Markdown table; columns flagged in ``numeric`` (default: all but the first) are right-aligned."""
    if numeric is None:
        numeric = [i > 0 for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} cells, expected {len(headers)}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def fmt(value: Optional[float], digits: int = 2) -> str:
    """A number for a table cell: ``n/a`` for None, thousands separators for large ones."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def document(title: str, header: Sequence[str], sections: Sequence[str]) -> str:
    """``# title``, the bullet lines of ``header``, then the sections, blank-line separated."""
    return "\n\n".join([f"# {title}", "\n".join(header), *sections]) + "\n"


def publish(text: str, out: Path) -> None:
    """Print a result and write it to ``out``."""
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def exit_on_sigterm() -> None:
    """End with status 143 on SIGTERM. Lightning's trainer catches SIGTERM and leaves
    through ``SystemExit`` with no code, which exits 0: a killed benchmark would pass."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def parser(description: str, name: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--tiny`` and ``--out``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tests, CI); numbers mean nothing")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output file, or a folder to write {name}.md into (default: {RESULTS / (name + '.md')})")
    return p


def out_path(out: Optional[Path], name: str) -> Path:
    """``--out`` as a file path: a folder (existing, or given without a suffix) gets ``<name>.md``."""
    if out is None:
        return RESULTS / f"{name}.md"
    if out.is_dir() or not out.suffix:
        return out / f"{name}.md"
    return out
