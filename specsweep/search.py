"""Search algorithms and trial schedulers, chosen by name in a spec's ``search.algorithm``
and ``scheduler.name``.

A searcher's builder takes the spec's ``search`` section, the sweep's metric and mode and
the first seed, and returns a Ray Tune searcher, or None for Tune's own variant generator
(which expands ``param_space``: grid points and ``num_samples`` draws of the sampled
dimensions). A scheduler's builder takes the spec's ``scheduler`` section and the most
reports a trial makes, and returns a Ray Tune trial scheduler; Tune gives it the sweep's
metric and mode. The spec validation allows exactly the registered names, so a new
searcher or scheduler is one more registered builder here.

Ray Tune is imported by the builders, not here: the spec validation reads the registered
names without loading Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from specsweep.registry import Registry

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

SEARCHERS = Registry("searcher")
SCHEDULERS = Registry("scheduler")


@SEARCHERS.register("grid")
@SEARCHERS.register("random")
def variant_generator(config: Any, metric: str, mode: str, seed: int) -> Optional["Searcher"]:
    """Tune's variant generator (None): every grid point of the space, each with
    ``num_samples`` independent draws of the sampled dimensions. ``grid`` and ``random``
    differ only in the dimensions the spec validation lets them have."""
    return None


@SEARCHERS.register("optuna")
def optuna_searcher(config: Any, metric: str, mode: str, seed: int) -> "Searcher":
    """Optuna's TPE sampler, seeded by ``seed``, proposing each trial from the results so far."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode=mode, seed=seed)


@SCHEDULERS.register("fifo")
def fifo_scheduler(config: Any, max_t: int) -> "TrialScheduler":
    """Every trial runs all its epochs, in the order Tune starts them."""
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


@SCHEDULERS.register("asha")
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
