"""specsweep.results.effects: paired effects, interval coverage on simulated runs, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from specsweep.results.effects import (BOOTSTRAP, BOOTSTRAP_MIN_PAIRS, PAIRED_T, bootstrap_interval, interval, paired_effects,
                               seeds_to_resolve, t_interval, verdict)

TRUE_EFFECT, NOISE = 0.05, 0.03


def _coverage(low: np.ndarray, high: np.ndarray) -> float:
    return float(((low <= TRUE_EFFECT) & (TRUE_EFFECT <= high)).mean())


@pytest.mark.parametrize("pairs", [2, 3, 5, 10])
def test_t_interval_holds_the_true_effect_in_95_percent_of_2000_simulated_runs(pairs):
    # Each simulated run: per seed, setting A and setting B share a seed effect (initialisation),
    # and B adds the true effect; only the differences enter the interval.
    rng = np.random.default_rng(2022)
    seed_effect = rng.normal(0.0, 0.05, size=(2000, pairs))
    a = 0.8 + seed_effect + rng.normal(0.0, NOISE, size=(2000, pairs))
    b = 0.8 + TRUE_EFFECT + seed_effect + rng.normal(0.0, NOISE, size=(2000, pairs))
    low, high = t_interval(b - a)
    assert 0.93 <= _coverage(low, high) <= 0.97


def test_bootstrap_interval_holds_the_true_effect_in_95_percent_of_2000_simulated_runs():
    # Vectorised over the simulations (in four batches to bound memory), with 999 resamples
    # instead of the report's 9,999 to keep the test short.
    rng = np.random.default_rng(7)
    pairs = BOOTSTRAP_MIN_PAIRS + 10
    covered = []
    for batch in range(4):
        diffs = rng.normal(TRUE_EFFECT, NOISE, size=(500, pairs))
        low, high = bootstrap_interval(diffs, seed=batch, n_resamples=999)
        covered.append((low <= TRUE_EFFECT) & (TRUE_EFFECT <= high))
    assert 0.93 <= float(np.concatenate(covered).mean()) <= 0.97


def test_interval_method_follows_the_number_of_pairs():
    rng = np.random.default_rng(0)
    few = interval(rng.normal(0.1, 0.02, size=3))
    assert few.method == PAIRED_T and few.n == 3
    # The t-interval by hand: mean ± t(0.975, n-1) * s / sqrt(n).
    values = [0.1, 0.12, 0.07]
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert (interval(values).low, interval(values).high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    many = interval(rng.normal(0.1, 0.02, size=BOOTSTRAP_MIN_PAIRS))
    assert many.method == BOOTSTRAP and many.low < 0.1 < many.high
    one = interval([0.3])
    assert one.low is None and one.mean == 0.3 and not one.resolved


def test_effects_pair_by_seed_and_name_unpaired_trials():
    values = {"A": {1: 0.50, 2: 0.60, 3: 0.70}, "B": {1: 0.55, 2: 0.66, 4: 0.9}, "C": {1: 0.40, 2: 0.52, 3: 0.59}}
    b, c = paired_effects(values, mode="max")
    assert b.setting == "B" and b.interval.n == 2
    assert b.interval.mean == pytest.approx(((0.55 - 0.50) + (0.66 - 0.60)) / 2)
    assert b.unpaired == ("B seed 4 (no A)", "A seed 3 (no B)")
    assert c.interval.n == 3 and c.unpaired == ()
    assert c.reading == "worse" and c.interval.high < 0


def test_reading_follows_the_metric_mode():
    # PER: lower is better, so a negative difference is "better".
    values = {"A": {1: 0.40, 2: 0.42, 3: 0.41}, "B": {1: 0.30, 2: 0.33, 3: 0.31}}
    (per,) = paired_effects(values, mode="min", settings=("B",))
    (acc,) = paired_effects(values, mode="max", settings=("B",))
    assert per.interval.mean < 0 and per.reading == "better" and acc.reading == "worse"
    assert verdict(per.interval, "lower") == "supported" and verdict(per.interval, "higher") == "contradicted"
    wide = interval([0.1, -0.05, 0.02])
    assert verdict(wide, "higher") == "not resolved"


def test_seeds_to_resolve_gives_the_first_number_of_pairs_whose_interval_excludes_zero():
    needed = seeds_to_resolve(0.02, 0.03)
    half = lambda n: stats.t.ppf(0.975, n - 1) * 0.03 / np.sqrt(n)  # noqa: E731
    assert half(needed) < 0.02 <= half(needed - 1)
    assert seeds_to_resolve(0.0, 0.03) is None and seeds_to_resolve(0.02, None) is None


def test_identical_differences_and_non_finite_metrics_resolve_nothing():
    """Two seeds that each gained the same one test clip measure no spread: no interval,
    not resolved. A NaN metric is left out of the pairs rather than making the effect NaN."""
    from specsweep.results.effects import paired_effects

    (same,) = paired_effects({"A": {1: 1 / 55, 2: 2 / 55}, "B": {1: 2 / 55, 2: 3 / 55}}, "max")
    assert same.interval.low is None and same.reading == "not resolved"
    (diverged,) = paired_effects({"A": {1: 0.5, 2: 0.6, 3: 0.7}, "B": {1: 0.6, 2: 0.8, 3: float("nan")}}, "max")
    assert math.isnan(diverged.interval.mean)  # paired_effects takes what it is given
    from pathlib import Path

    from specsweep.results.study import Run, group_trials
    from specsweep.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml")
    trials = [{"id": f"{s}{seed}", "status": "TERMINATED", "metrics": {"test_acc": value},
               "config": {"task": "kws", "data": {"name": "embedded_kws"}, "frontend": {"name": "nnaudio", "setting": s},
                          "backbone": {"name": "bcresnet"}, "seed": seed}}
              for s, values in (("A", (0.5, 0.6, 0.7)), ("B", (0.6, 0.8, float("nan")))) for seed, value in zip((1, 2, 3), values)]
    (group,) = group_trials([Run("r", spec, trials)])
    (effect,) = group.effects()
    assert effect.interval.n == 2 and math.isfinite(effect.interval.mean) and effect.unpaired
