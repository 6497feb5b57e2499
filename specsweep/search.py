"""Search algorithms and trial schedulers, chosen by name in a spec's ``search.algorithm``
and ``scheduler.name``.

A searcher's builder takes the spec's ``search`` section, the sweep's metric and mode and
the first seed, and returns a Ray Tune searcher, or None for Tune's own variant generator
(which expands ``param_space``: grid points and ``num_samples`` draws of the sampled
dimensions). A scheduler's builder takes the spec's ``scheduler`` section and the most
reports a trial makes, and returns a Ray Tune trial scheduler; Tune gives it the sweep's
metric and mode. The spec validation allows exactly the registered names, so a new
searcher or scheduler is one more registered builder here, with what the validation checks
beside it: a searcher's :class:`SearchRules`, a scheduler's :class:`SchedulerChecks`.

Ray Tune is imported by the builders, not here: the spec validation reads the registered
names without loading Ray.

Examples
--------
>>> search_rules("optuna")
SearchRules(grid=False, sampled=True, several_seeds=False)
>>> scheduler_problems("fifo", None, 10)
[]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from specsweep.registry import Registry

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher


@dataclass(frozen=True)
class SearchRules:
    """What a searcher can do with a spec's search space, checked before any trial starts:
    ``grid`` values (tried each in turn), ``sampled`` dimensions (choice and ranges), and
    ``several_seeds`` (each configuration run once per seed). The description of a
    registered searcher; by default it can do everything."""

    grid: bool = True
    sampled: bool = True
    several_seeds: bool = True


@dataclass(frozen=True)
class SchedulerChecks:
    """The description of a registered scheduler: ``problems(config, max_t)``, a check of
    its spec section against the reports a trial makes (one line per problem), run before
    Ray starts; None when any section its schema allows will do."""

    problems: Optional[Callable[[Any, int], List[str]]] = None


SEARCHERS = Registry("searcher", about=SearchRules)
SCHEDULERS = Registry("scheduler", about=SchedulerChecks)


def search_rules(name: str) -> SearchRules:
    """The rules of the searcher registered as ``name``."""
    return SEARCHERS.about(name)


@SEARCHERS.register("grid", sampled=False)
def grid_search(config: Any, metric: str, mode: str, seed: int) -> Optional["Searcher"]:
    """Every point of the grid, a trial each: Tune's variant generator (None)."""
    return None


@SEARCHERS.register("random")
def random_search(config: Any, metric: str, mode: str, seed: int) -> Optional["Searcher"]:
    """Tune's variant generator (None): every grid point of the space, each with
    ``num_samples`` independent draws of the sampled dimensions."""
    return None


@SEARCHERS.register("optuna", grid=False, several_seeds=False)
def optuna_searcher(config: Any, metric: str, mode: str, seed: int) -> "Searcher":
    """Optuna's TPE sampler, seeded by ``seed``, proposing each trial from the results so far."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode=mode, seed=seed)


@SCHEDULERS.register("fifo")
def fifo_scheduler(config: Any, max_t: int) -> "TrialScheduler":
    """Every trial runs all its epochs, in the order Tune starts them."""
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def scheduler_problems(name: str, config: Any, max_t: int) -> List[str]:
    """Problems of the ``scheduler`` section ``config`` of the scheduler registered as
    ``name``, for trials that report ``max_t`` times."""
    check = SCHEDULERS.about(name).problems
    return check(config, max_t) if check is not None else []


def _asha_problems(config: Any, max_t: int) -> List[str]:
    epochs = max_t - 1
    if config.grace_period > epochs:
        # Ray asserts grace_period <= max_t; the last report is the test, after every epoch.
        return [f"scheduler.grace_period: must be at most train.epochs ({epochs}): ASHA compares trials after "
                f"grace_period epochs, got {config.grace_period}"]
    # Ray's ASHA keeps one rung per power of reduction_factor up to max_t: a factor near 1
    # makes millions of rungs (gigabytes in the driver), more than there are reports.
    rungs = int(math.log(max_t / config.grace_period) / math.log(config.reduction_factor) + 1)
    if rungs > max_t:
        lowest = (max_t / config.grace_period) ** (1 / (max_t - 1)) if max_t > 1 else 2.0
        return [f"scheduler.reduction_factor: {config.reduction_factor!r} makes {rungs:,} ASHA rungs between "
                f"grace_period {config.grace_period} and {max_t} reports (train.epochs + 1), more rungs than reports; "
                f"allowed: at least {math.ceil(lowest * 100) / 100:g}"]
    return []


@SCHEDULERS.register("asha", problems=_asha_problems)
def asha_scheduler(config: Any, max_t: int) -> "TrialScheduler":
    """Asynchronous successive halving: at each rung (``grace_period`` reports, then
    ``reduction_factor`` times as many) a trial outside the best ``1/reduction_factor``
    of those that reached the rung stops."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=config.grace_period,
                         reduction_factor=config.reduction_factor)


def build_searcher(spec: Any) -> Optional["Searcher"]:
    """The searcher that ``spec.search.algorithm`` names, for the validated spec ``spec``."""
    return SEARCHERS.build(spec.search.algorithm, config=spec.search, metric=spec.metric, mode=spec.mode,
                           seed=spec.seeds[0])


def build_scheduler(spec: Any) -> "TrialScheduler":
    """The scheduler that ``spec.scheduler.name`` names, for the validated spec ``spec``."""
    # A trial reports once per epoch and once more after testing.
    return SCHEDULERS.build(spec.scheduler.name, config=spec.scheduler, max_t=spec.train.epochs + 1)


def stops_early(scheduler: "TrialScheduler") -> bool:
    """Whether ``scheduler`` may stop trials before their last epoch (then its state is
    saved with the experiment, and time estimates are upper bounds)."""
    from ray.tune.schedulers import FIFOScheduler

    return type(scheduler) is not FIFOScheduler
