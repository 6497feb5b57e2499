"""``specsweep inspect``: a spec's plan as a table (or JSON) with its parameter counts and cost."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from specsweep.contract import StepMeasure
from specsweep.plan.plan import SweepPlan, plan_sweep
from specsweep.spec import PlannedTrial, SpecError, load_spec

#: Times a planned trial's training steps with a trial's CPUs (``inspect --calibrate``).
Measure = Callable[[PlannedTrial, float], StepMeasure]


def inspect_specs(paths: Sequence[str], as_json: bool, smoke: bool = False, overrides: Sequence[str] = (),
                  max_trials: Optional[int] = None, measure: Optional[Measure] = None) -> None:
    """Print the plan (and cost) of each spec in ``paths``; with ``as_json`` one JSON
    document (a list for several specs)."""
    plans = []
    for i, path in enumerate(paths):
        if i and not as_json:
            print()
        plans.append(inspect_spec(Path(path), as_json, smoke, overrides, max_trials, measure))
    if as_json:
        print(json.dumps(plans[0] if len(plans) == 1 else plans, indent=1))


def inspect_spec(path: Path, as_json: bool, smoke: bool = False, overrides: Sequence[str] = (),
                 max_trials: Optional[int] = None, measure: Optional[Measure] = None) -> Dict[str, Any]:
    """The plan of one spec file as ``inspect --json`` shows it; without ``as_json`` also
    printed as a table. Plan problems raise :class:`SpecError`; a trial that a local Ray
    here could not hold is a note on stderr."""
    spec = load_spec(path, smoke=smoke, overrides=overrides)
    plan = plan_sweep(spec)
    if not as_json:
        print(f"{spec.name}: {plan.count} trials ({plan.makeup})", flush=True)
    problems = plan.problems() if max_trials is None else plan.problems(max_trials)
    if problems:
        raise SpecError(str(path), problems)
    for note in plan.resource_problems():
        print(f"note (for a local Ray on this machine): {note}", file=sys.stderr)
    trials = [{"config": trial.as_dict(), "trainable_params": params}
              for trial, params in zip(plan.trials, plan.param_counts())]
    cost = plan.cost(smoke, _measures(plan, measure) if measure else None)
    result = {"spec": str(path), "name": spec.name, "metric": spec.metric, "mode": spec.mode, "recipe": spec.recipe,
              "trials": trials, "cost": cost}
    if not as_json:
        print(format_plan(plan, trials, cost))
    return result


def _measures(plan: SweepPlan, measure: Measure) -> Optional[Dict[str, StepMeasure]]:
    models = plan.models_to_time()
    if models is None:
        print("note: a sampled search value shapes the model: --calibrate times nothing, the recorded "
              "figures are used", file=sys.stderr)
        return None
    return {key: measure(trial, plan.spec.resources.cpus) for key, trial in models.items()}


def format_plan(plan: SweepPlan, trials: Sequence[Dict[str, Any]], cost: Dict[str, Any]) -> str:
    """The search, the cost in total and a row per trial (its setting, swept values,
    seed, parameters, GPU share, clip-steps and hours)."""
    spec = plan.spec
    rows = [{"#": i, **plan.describe(trial), **{f"{k} params": v for k, v in p["trainable_params"].items()},
             **({"gpus": f"{c['gpus']:g}"} if spec.resources.auto_gpus else {}),
             "clip_steps": _count(c["clip_steps"]), "hours": _hours(c["hours"])}
            for i, (trial, p, c) in enumerate(zip(plan.trials, trials, cost["per_trial"]))]
    recipe = f"recipe {spec.recipe}, " if spec.recipe else ""
    total = cost["total"]
    sources = sorted({c["rate_source"] for c in cost["per_trial"]})
    lines = [f"{recipe}{spec.search.algorithm} search, {spec.scheduler.name} scheduler, "
             f"metric {spec.metric} ({spec.mode}), {spec.resources.cpus:g} CPU / {_gpus_text(spec.resources.gpus)} "
             f"per trial",
             f"cost: {_count(total['clip_steps'])} training clip-steps (epochs x training clips), about "
             f"{_hours(total['trial_hours'])} trial-hours = {_hours(total['cpu_hours'])} CPU-hours, "
             f"{_hours(total['gpu_hours'])} GPU-hours; clips/s {'; '.join(sources)}"]
    columns = list(rows[0]) if rows else []
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in columns]
    lines.append("  ".join(str(c).rjust(w) for c, w in zip(columns, widths)))
    lines += ["  ".join(str(r[c]).rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def _gpus_text(gpus: Any) -> str:
    if gpus == "auto":
        return "GPUs auto (each model measured on a GPU at launch; CPUs where Ray has none)"
    return f"{gpus:g} GPU"


def _count(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def _hours(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:,.2f}" if value < 10 else f"{value:,.0f}"
