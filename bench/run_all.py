"""Run every CPU benchmark in sequence: front-ends, data, trials, sweep, command line.

Each runs in its own process (``python -m bench.<name>``), one after another, so that
none measures while another loads the cores, and torch thread settings or a running Ray
do not carry over from one to the next. Each writes ``bench/results/<name>.md`` (or
``<out>/<name>.md``) and prints it. The GPU benchmark (``bench.gpu_trials``) is not
included: run it on a machine with a GPU.

Usage::

    python -m bench.run_all                 # everything, about 15 minutes on 2 cores
    python -m bench.run_all --tiny          # smoke run of each, about 2 minutes
    python -m bench.run_all --only data,trials
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

# Output names, as each benchmark names its result file.
BENCHMARKS = {"frontends": "bench.bench_frontends", "data": "bench.bench_data",
              "trials": "bench.bench_trials", "sweep": "bench.bench_sweep", "cli": "bench.bench_cli"}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="pass --tiny to every benchmark")
    p.add_argument("--out", type=Path, default=None, help="folder for the result files (default bench/results)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ", ".join(BENCHMARKS))
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for name in names:
        command = [sys.executable, "-m", BENCHMARKS[name]]
        if args.tiny:
            command.append("--tiny")
        if args.out is not None:
            command += ["--out", str(args.out / f"{name}.md")]
        print(f"[bench] {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command)
        print(f"[bench] {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
