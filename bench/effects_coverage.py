"""How often the report's intervals hold the true effect, by number of pairs: the paired
t-interval and the BCa bootstrap on simulated runs of normal paired differences. This is
what sets ``specsweep.results.effects.BOOTSTRAP_MIN_PAIRS``; docs/report.md quotes its output.

Usage::

    python -m bench.effects_coverage                  # 2,000 runs per count, 999 resamples
"""

from __future__ import annotations

import argparse

import numpy as np

from specsweep.results.effects import bootstrap_interval, t_interval

TRUE_EFFECT, NOISE = 0.02, 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=999)
    parser.add_argument("--pairs", type=int, nargs="+", default=[5, 10, 20, 30, 40, 50])
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print("| pairs | paired t | BCa bootstrap |\n|---|---|---|")
    for pairs in args.pairs:
        diffs = rng.normal(TRUE_EFFECT, NOISE, size=(args.runs, pairs))
        intervals = {"t": t_interval(diffs), "bca": bootstrap_interval(diffs, seed=pairs, n_resamples=args.resamples)}
        covered = {name: float(np.mean((low <= TRUE_EFFECT) & (TRUE_EFFECT <= high)))
                   for name, (low, high) in intervals.items()}
        print(f"| {pairs} | {covered['t']:.1%} | {covered['bca']:.1%} |")


if __name__ == "__main__":
    main()
