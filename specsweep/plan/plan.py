"""The plan of a sweep: what is decided about it before a trial runs, built once from a
validated spec and read by ``run``, ``resume``, ``inspect`` and the progress view.

A :class:`SweepPlan` holds the planned trials as typed configs
(:class:`~specsweep.spec.PlannedTrial`, sampled values as markers), the datasets to
prepare, the models that ``resources.gpus: auto`` measures, the limits a sweep must keep
(trial count, memory, value combinations, resources) and the cost. Modules outside the
spec and the plan read trial configs through them, never by key.

Examples
--------
The quickstart's plan: settings A-D, two seeds each.

>>> from pathlib import Path
>>> from specsweep.spec import load_spec
>>> plan = plan_sweep(load_spec(Path(__file__).parents[2] / "sweeps" / "quickstart.yaml"))
>>> plan.check("quickstart.yaml")
>>> plan.count, plan.makeup, [t.setting for t in plan.trials][:3]
(8, '4 frontend.setting × 2 seeds × 1 sample', ['A', 'A', 'B'])
>>> plan.describe(plan.trials[2])
{'setting': 'B', 'seed': 1}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from specsweep.contract import StepMeasure
from specsweep.plan import limits
from specsweep.plan.cost import model_key, sweep_cost
from specsweep.plan.limits import DEFAULT_MAX_TRIALS
from specsweep.spec import PlannedTrial, SpecError, SweepSpec, TrialConfig, plan_trials

# Search keys whose sampled values shape a trial's model: a model with one of them has no
# one set of steps to time.
_SHAPING_KEYS = ("task", "data.", "frontend.", "backbone.", "train.batch_size", "train.eval_batch_size",
                 "train.compile")


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's plan; see the module docstring. Build it with :func:`plan_sweep`.

    Parameters
    ----------
    spec : SweepSpec
        The validated spec (with ``--smoke-test``: its smoke version).
    count : int
        The number of trials, counted without expanding the grid.
    makeup : str
        How ``count`` is made up (``4 frontend.setting × 2 seeds × 1 sample``).
    """

    spec: SweepSpec
    count: int
    makeup: str

    @cached_property
    def trials(self) -> List[PlannedTrial]:
        """Every trial, in Tune's order: grid point × seed × sample."""
        return plan_trials(self.spec)

    @property
    def labels(self) -> List[str]:
        """The dotted keys whose values tell trials apart: the swept keys, then the seed."""
        return [*self.spec.search.space, "seed"]

    def describe(self, trial: Union[TrialConfig, Dict[str, Any]]) -> Dict[str, Any]:
        """The setting, swept values and seed of ``trial`` (see :meth:`SweepSpec.describe`)."""
        return self.spec.describe(trial)

    def problems(self, max_trials: int = DEFAULT_MAX_TRIALS) -> List[str]:
        """Problems of running the sweep at all: more trials than ``max_trials``, value
        combinations that refuse each other, a trial needing more memory than the limit."""
        return limits.plan_problems(self.spec, max_trials)

    def resource_problems(self, num_cpus: Optional[int] = None) -> List[str]:
        """Lines for a trial asking more CPUs or GPUs than a local Ray here would have."""
        return limits.local_resource_problems(self.spec, num_cpus)

    def check(self, source: str, max_trials: int = DEFAULT_MAX_TRIALS, local: bool = False,
              num_cpus: Optional[int] = None) -> None:
        """Raise :class:`SpecError` naming ``source`` with every plan problem, and for a
        local Ray every resource problem."""
        problems = self.problems(max_trials) + (self.resource_problems(num_cpus) if local else [])
        if problems:
            raise SpecError(source, problems)

    @cached_property
    def data_configs(self) -> List[Dict[str, Any]]:
        """The distinct data configs the trials use, each prepared once before they start."""
        return limits.data_configs(self.spec)

    @cached_property
    def packing_trials(self) -> List[PlannedTrial]:
        """One trial per distinct model (and data) that ``resources.gpus: auto`` measures."""
        from specsweep.plan.packing import packing_trials

        return packing_trials(self.spec, self.trials)

    def param_counts(self) -> List[Dict[str, Any]]:
        """Trainable parameters by part of each trial's model, counted from the components'
        footprints (no model is built, no data prepared), once per distinct model. Where a
        sampled search value shapes the model (``frontend.setting: {choice: [A, B]}``,
        ``frontend.n_mels: {randint: ...}``), a part whose count depends on it is given as
        ``"LOW..HIGH"`` over the choices or the range's ends."""
        from specsweep.assembly import model_footprint_for
        from specsweep.data.datasets import describe_dataset

        sampled = limits.sized_values(self.spec, keys=("data.", "frontend.", "backbone."), sampled_only=True)
        counts: Dict[str, Dict[str, int]] = {}

        def count(trial: PlannedTrial) -> Dict[str, int]:
            key = json.dumps([trial.task, trial.data, trial.frontend, trial.backbone], sort_keys=True)
            if key not in counts:
                counts[key] = model_footprint_for(trial, describe_dataset(trial.data)).trainable
            return counts[key]

        spans: Dict[str, Dict[str, Any]] = {}
        plan = []
        for trial in self.trials:
            # Trials of one planned model (seeds, learning rates) share its counts: a plan
            # may hold 10,000 trials.
            planned = trial.as_dict(markers=True)
            model = json.dumps([planned[part] for part in ("task", "data", "frontend", "backbone")], sort_keys=True,
                               default=str)
            if model not in spans:
                # Few combinations per model.
                each = [count(trial.with_values(setting))
                        for _, setting in limits.variant_combinations(sampled, max_combinations=64)]
                spans[model] = {part: _span([c[part] for c in each]) for part in each[0]}
            plan.append(spans[model])
        return plan

    def models_to_time(self) -> Optional[Dict[str, PlannedTrial]]:
        """One trial per distinct model (:func:`~specsweep.plan.cost.model_key`) to time
        for ``inspect --calibrate``; None when a sampled value shapes the model."""
        if any(p.form != "grid" and key.startswith(_SHAPING_KEYS) for key, p in self.spec.search.space.items()):
            return None
        models: Dict[str, PlannedTrial] = {}
        for trial in self.trials:
            models.setdefault(model_key(trial), trial)
        return models

    def cost(self, smoke: bool = False, measures: Optional[Dict[str, StepMeasure]] = None) -> Dict[str, Any]:
        """Clip-steps, clips/s, GPU share and hours per trial and in total
        (:func:`~specsweep.plan.cost.sweep_cost`), from ``measures`` of this machine where
        given (by model key; ``gpus: auto`` then packs by them), else the recorded figures."""
        resources = self.spec.resources
        share_of: Optional[Callable[[TrialConfig], float]] = None
        if measures and resources.auto_gpus and all(m.device != "cpu" for m in measures.values()):
            from specsweep.plan.packing import TrialResources, plan_packing

            share_of = TrialResources(resources.cpus, plan_packing(measures, self.trials)).gpus
        limit = self.spec.smoke.limit_train_batches if smoke else None
        return sweep_cost(self.trials, resources.cpus, resources.gpus, limit, measures, share_of)


def _span(counts: Sequence[int]) -> Any:
    low, high = min(counts), max(counts)
    return low if low == high else f"{low}..{high}"


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """The plan of ``spec``: counted at once; trials, data and packing expanded when first
    read (after :meth:`SweepPlan.check` has bounded their number)."""
    count, makeup = limits.trial_count(spec)
    return SweepPlan(spec, count, makeup)
