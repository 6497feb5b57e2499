"""What a valid spec would cost, checked before anything runs: the number of trials
(counted, never expanded), the memory of one trial (computed from the components'
footprints, never by building a model) and the CPUs and GPUs a trial asks for.

Examples
--------
>>> from specsweep.spec import validate_spec
>>> spec = validate_spec({"name": "x", "task": "kws", "data": {"name": "embedded_kws"},
...                       "frontend": {"name": "nnaudio"}, "backbone": {"name": "bcresnet"}, "seeds": [1, 2],
...                       "search": {"space": {"frontend.setting": {"grid": ["A", "B", "C", "D"]}}}})
>>> trial_count(spec)
(8, '4 frontend.setting × 2 seeds × 1 sample')
>>> plan_problems(spec, max_trials=5)  # doctest: +ELLIPSIS
['search: 8 trials (4 frontend.setting × 2 seeds × 1 sample) exceed the limit of 5; ...']
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    from specsweep.spec import SweepSpec

# specsweep.spec is imported where it is used: the command line reads DEFAULT_MAX_TRIALS
# for its help text, which must not wait for torch (the spec imports the components).

DEFAULT_MAX_TRIALS = 10_000
# A limit on a trial's estimated memory in GiB; default: this machine's physical memory.
MEMORY_ENV = "SPECSWEEP_TRIAL_MEMORY_GB"
# Grid combinations of model-sizing values checked one by one; above, each value alone.
_MAX_COMBINATIONS = 4096
_GIB = 2.0**30


def trial_count(spec: SweepSpec) -> Tuple[int, str]:
    """``(number of trials, how it is made up)`` without expanding the grid."""
    grid = {k: len(p.grid) for k, p in spec.search.space.items() if p.form == "grid"}
    count = math.prod(grid.values()) * len(spec.seeds) * spec.search.num_samples
    samples = spec.search.num_samples
    parts = [f"{n} {k}" for k, n in grid.items()] + [
        f"{len(spec.seeds)} seed{'s' if len(spec.seeds) > 1 else ''}", f"{samples} sample{'s' if samples > 1 else ''}"]
    return count, " × ".join(parts)


# Search keys that change a trial's memory.
SIZE_KEYS = ("data.", "frontend.", "backbone.", "train.batch_size")


def sized_values(spec: SweepSpec, keys: Tuple[str, ...] = SIZE_KEYS,
                 sampled_only: bool = False) -> Dict[str, List[Any]]:
    """Search keys starting with one of ``keys`` (grid and sampled ones, or with
    ``sampled_only`` the sampled ones), with the values that bound what they change: a
    grid's or choice's distinct values, a sampled range's two ends (randint's upper end
    is exclusive)."""
    from specsweep.spec import distinct

    values = {}
    for key, p in spec.search.space.items():
        if not key.startswith(keys) or (sampled_only and p.form == "grid"):
            continue
        values[key] = distinct(p.grid) if p.form == "grid" else p.sampled().ends()
    return values


def variant_combinations(values: Dict[str, List[Any]], max_combinations: float = _MAX_COMBINATIONS
                         ) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """``(values named, values set)``: every combination of ``values`` (dotted keys), or,
    when the combinations are more than ``max_combinations``, each value alone (named),
    set with the other keys at their first value."""
    if math.prod(len(v) for v in values.values()) <= max_combinations:
        for combo in itertools.product(*values.values()):
            chosen = dict(zip(values, combo))
            yield chosen, chosen
        return
    others = {key: vs[0] for key, vs in values.items()}
    for key, vs in values.items():
        for v in vs:
            yield {key: v}, {**others, key: v}


def variants(values: Dict[str, List[Any]], base: Dict[str, Any],
             max_combinations: float = _MAX_COMBINATIONS) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """``(values named, config)``: ``base`` with each of :func:`variant_combinations`."""
    from specsweep.spec import _set_dotted

    for chosen, setting in variant_combinations(values, max_combinations):
        config = copy.deepcopy(base)
        for key, value in setting.items():
            _set_dotted(config, key, value)
        yield chosen, config


def trial_memory(config: Dict[str, Any]) -> Tuple[float, str]:
    """``(bytes, breakdown)``: estimated peak memory of one trial of ``config``: float32
    weights with gradients and Adam's two moments, frozen tensors, one batch's
    activations kept for the backward pass (and their gradients), or the transient
    values while the model is built if that is more."""
    from specsweep.assembly import model_footprint_for
    from specsweep.data.datasets import describe_dataset
    from specsweep.spec import ModelConfig

    fp = model_footprint_for(ModelConfig.of(config), describe_dataset(config["data"]))
    params = sum(fp.trainable.values())
    batch = config["train"]["batch_size"]
    weights = 4 * (4 * params + fp.frozen)
    activations = 4 * 2 * batch * fp.activations
    build = 4 * (params + fp.frozen + fp.build)
    total = max(weights + activations, build)
    breakdown = (f"{params:,} parameters with gradients and Adam state {weights / _GIB:.2f} GiB, "
                 f"activations of a batch of {batch} {activations / _GIB:.2f} GiB")
    if build > weights + activations:
        breakdown += f", building the model {build / _GIB:.2f} GiB"
    return total, breakdown


def memory_limit() -> Tuple[float, str]:
    """``(bytes, where the limit comes from)``; ValueError naming :data:`MEMORY_ENV` when
    it is not a finite number of GiB > 0."""
    value = os.environ.get(MEMORY_ENV)
    if value:
        try:
            gib = float(value)
        except ValueError:
            gib = math.nan
        if not math.isfinite(gib) or gib <= 0:
            raise ValueError(f"{MEMORY_ENV}: must be a number of GiB > 0 (a trial's memory limit), got {value!r}")
        return gib * _GIB, f"{MEMORY_ENV}={value}"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return float(total), f"this machine's memory ({total / _GIB:.1f} GiB; set {MEMORY_ENV} to change the limit)"


def memory_problems(spec: SweepSpec) -> List[str]:
    """A line when the largest trial of ``spec`` would need more memory than the limit."""
    try:
        limit, source = memory_limit()
    except ValueError as err:
        return [str(err)]
    worst: Optional[Tuple[float, str, Dict[str, Any]]] = None
    problems = []
    for chosen, config in variants(sized_values(spec), spec.base_config()):
        try:
            need, breakdown = trial_memory(config)
        except ValueError as err:
            # Each value passed alone; together they do not fit.
            problems += [f"search.space: trials with {_at(chosen)} are invalid: frontend.{line}"
                         for line in str(err).splitlines()]
            continue
        if worst is None or need > worst[0]:
            worst = (need, breakdown, chosen)
    if worst is None or worst[0] <= limit:
        return problems
    need, breakdown, chosen = worst
    at = _at(chosen)
    return problems + [f"memory: a trial{f' with {at}' if at else ''} needs about {need / _GIB:.1f} GiB ({breakdown}), "
            f"more than the limit {limit / _GIB:.1f} GiB from {source}; lower train.batch_size, frontend.n_fft, "
            f"frontend.n_mels or the backbone's size"]


def combination_problems(spec: SweepSpec, most: int = 10) -> List[str]:
    """Lines for grid combinations whose values refuse each other (e.g. ``frontend.n_fft``
    256 with ``frontend.n_mels`` 200), at most ``most``. The spec's validation checks each
    value alone; :func:`memory_problems` checks every combination of the values that size
    a model up to its limit. Past it, the values of the data and front-end (the clip
    bounds the STFT) and those of the backbone are combined here, each group on its own:
    no argument constrains one of another group, and each group's combinations are at
    most the trials, which :func:`plan_problems` has bounded."""
    from specsweep.spec import _config_problems

    values = sized_values(spec)
    if math.prod(len(v) for v in values.values()) <= _MAX_COMBINATIONS:
        return []
    groups: Dict[str, Dict[str, List[Any]]] = {}
    for key, vs in values.items():
        section = key.split(".")[0]
        if section in ("data", "frontend", "backbone"):
            groups.setdefault("backbone" if section == "backbone" else "data", {})[key] = vs
    problems: Dict[str, str] = {}
    for group in groups.values():
        for chosen, config in variants(group, spec.base_config(), max_combinations=math.inf):
            for problem in _config_problems(config, spec.task):
                # The first combination named per problem (other keys may vary alongside).
                problems.setdefault(problem, f"search.space: trials with {_at(chosen)} are invalid: {problem}")
            if len(problems) >= most:
                break
    return list(problems.values())[:most]


def _at(chosen: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in chosen.items())


def plan_problems(spec: SweepSpec, max_trials: int = DEFAULT_MAX_TRIALS) -> List[str]:
    """Problems of running ``spec`` at all: too many trials, too much memory per trial."""
    count, makeup = trial_count(spec)
    if count > max_trials:
        return [f"search: {count:,} trials ({makeup}) exceed the limit of {max_trials:,}; "
                f"shrink the grid or raise the limit with --max-trials {count}"]
    return combination_problems(spec) or memory_problems(spec)


def local_resource_problems(spec: SweepSpec, num_cpus: Optional[int] = None) -> List[str]:
    """Lines for a trial that asks for more CPUs or GPUs than a local Ray on this
    machine (with ``--num-cpus``: that many CPUs) would have: it would wait forever."""
    import torch

    problems = []
    cpus = num_cpus if num_cpus is not None else os.cpu_count() or 1
    where = f"--num-cpus {num_cpus}" if num_cpus is not None else "this machine"
    if spec.resources.cpus > cpus:
        problems.append(f"resources.cpus: a trial asks for {spec.resources.cpus:g} CPUs but {where} has {cpus}; "
                        f"allowed: at most {cpus} (or join a larger cluster with --address)")
    # Counts devices without creating a CUDA context.
    gpus = torch.cuda.device_count()
    if spec.resources.fixed_gpus > gpus:
        problems.append(f"resources.gpus: a trial asks for {spec.resources.fixed_gpus:g} GPUs but this machine has {gpus}; "
                        f"allowed: at most {gpus} (or join a cluster with GPUs with --address)")
    return problems


def data_configs(spec: SweepSpec) -> List[Dict[str, Any]]:
    """The distinct data configs of the sweep's trials, from the data keys of the grid alone."""
    from specsweep.spec import _set_dotted

    data_keys = {k: p.values() for k, p in spec.search.space.items() if k.startswith("data.") and p.values()}
    configs = {}
    for combo in itertools.product(*data_keys.values()):
        config = {"data": copy.deepcopy(spec.data)}
        for key, value in zip(data_keys, combo):
            _set_dotted(config, key, value)
        configs[json.dumps(config["data"], sort_keys=True)] = config["data"]
    return list(configs.values())
