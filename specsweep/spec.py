"""Sweep specs: the YAML schema, its validation, and expansion into Tune's search space.

A spec is validated as a whole before Ray starts. Every problem is reported at once,
one line each, naming the key path and what is allowed.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from specsweep.backbones import BACKBONES, backbone_param_names
from specsweep.contract import (MAX_INT_DIGITS, MAX_SPEC_VALUES, STORED_RUN, Seed, WholeNumber, argument_problems, expanded_size, numbers_checked, parse_int,
                                pydantic_problems)
from specsweep.data.datasets import DATASETS, dataset_param_names, dataset_task, describe_dataset
from specsweep.frontends import FRONTENDS, frontend_setting, validate_frontend_config
from specsweep.overrides import OverrideError, describe_settings, parse_setting, with_overrides
from specsweep.recipes import RECIPES, apply_recipe
from specsweep.search import SCHEDULERS, SEARCHERS, scheduler_problems, search_rules
from specsweep.tasks import TASKS, Task, get_task

SECTIONS = ("data", "frontend", "backbone", "train")


class SpecError(ValueError):
    """A sweep spec is invalid; ``problems`` lists one message per problem."""

    def __init__(self, source: str, problems: List[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid sweep spec {source}:\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    # Infinite or NaN learning rates, factors and sizes are never meant.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SearchParam(_Strict):
    """One search dimension: exactly one of the forms.

    Parameters
    ----------
    grid : list
        Every value, each in its own trials.
    choice : list
        One value drawn per trial.
    uniform, loguniform : [float, float]
        A float drawn per trial from ``[low, high]``, evenly or evenly in its logarithm.
    randint : [int, int]
        A whole number drawn per trial from ``[low, high)``.
    """

    grid: Optional[List[Any]] = None
    choice: Optional[List[Any]] = None
    uniform: Optional[Tuple[float, float]] = None
    loguniform: Optional[Tuple[float, float]] = None
    randint: Optional[Tuple[int, int]] = None

    @model_validator(mode="after")
    def _one_form(self) -> "SearchParam":
        given = [k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, choice, uniform, loguniform, randint (got {given or 'none'})")
        values = self.grid if self.grid is not None else self.choice
        if values is not None and not values:
            raise ValueError(f"{given[0]} needs at least one value")
        for form in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, form)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{form} needs [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.loguniform[0]}")
        return self

    @property
    def form(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None)

    def values(self) -> Optional[List[Any]]:
        """The listed values (grid or choice), for checking each one."""
        return self.grid if self.grid is not None else self.choice

    def sampled(self) -> "Sampled":
        """The marker a planned trial holds for this dimension, when it is drawn per trial."""
        return Sampled(self.form, tuple(getattr(self, self.form)))


def distinct(values: Sequence[Any]) -> List[Any]:
    """``values`` without repeats, in order (values may be lists or mappings).

    Examples
    --------
    >>> distinct([20, {"a": 1}, 20, {"a": 1}, 40])
    [20, {'a': 1}, 40]
    """
    return list({json.dumps(v, sort_keys=True, default=str): v for v in values}.values())


@dataclass(frozen=True)
class Sampled:
    """A value a trial draws from a search dimension when it starts (``choice``,
    ``uniform``, ``loguniform``, ``randint``): what a planned trial holds at that key.

    Examples
    --------
    >>> lr = Sampled("loguniform", (0.0001, 0.1))
    >>> str(lr), lr.ends()
    ('loguniform(0.0001, 0.1)', [0.0001, 0.1])
    >>> Sampled("randint", (10, 41)).ends(), Sampled("choice", ("A", "B", "A")).ends()
    ([10, 40], ['A', 'B'])
    """

    form: str
    args: Tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.form}({', '.join(map(str, self.args))})"

    def ends(self) -> List[Any]:
        """The values that bound what the draw may be: a choice's distinct values, a
        range's two ends (``randint`` excludes its high end)."""
        if self.form == "choice":
            return distinct(self.args)
        if self.form == "randint":
            return [self.args[0], self.args[1] - 1]
        return list(self.args)


class SearchConfig(_Strict):
    """How trials are chosen (Ray Tune's searcher) and judged.

    Parameters
    ----------
    algorithm : str
        A registered searcher; see the searchers of ``specsweep.search``.
    num_samples : int
        Trials per grid point and seed, each with its own draw of the sampled dimensions
        (``optuna``: the trials in all).
    metric : str, optional
        The metric trials are compared by (None: the task's default, ``val_acc`` or ``val_per``).
    mode : {"max", "min"}, optional
        Whether ``metric`` is better high or low (None: the metric's own direction).
    space : dict
        Dotted keys into ``data``, ``frontend``, ``backbone`` or ``train`` (``frontend.n_mels``),
        each one search dimension.
    """

    algorithm: Annotated[str, AfterValidator(SEARCHERS.check)] = "grid"
    num_samples: WholeNumber = Field(1, ge=1)
    metric: Optional[str] = None
    mode: Optional[Literal["max", "min"]] = None
    space: Dict[str, SearchParam] = Field(default_factory=dict)


class SchedulerConfig(_Strict):
    """When trials stop early (Ray Tune's trial scheduler).

    Parameters
    ----------
    name : str
        A registered scheduler: ``fifo`` runs every trial to its last epoch, ``asha`` stops the
        weaker ones at rungs.
    grace_period : int
        Epoch reports before ASHA may stop a trial.
    reduction_factor : float
        ASHA keeps the best ``1 / reduction_factor`` of the trials at each rung.
    """

    name: Annotated[str, AfterValidator(SCHEDULERS.check)] = "fifo"
    grace_period: WholeNumber = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


# ray._private.ray_constants.MIN_RESOURCE_GRANULARITY (Ray 2.60), restated: validating a
# spec does not load Ray.
RAY_RESOURCE_STEP = 1e-4


class ResourcesConfig(_Strict):
    """What each trial holds.

    Parameters
    ----------
    cpus : float
        CPUs per trial (its torch threads).
    gpus : float or "auto"
        GPUs per trial (a fraction below 1 shares one), or ``auto``: each model measured on a
        GPU at launch decides how many of its trials share one (:mod:`specsweep.plan.packing`), and
        trials run on CPUs where Ray has no GPU.
    max_concurrent : int, optional
        Trials running at once at most (None: as many as the resources hold).
    """

    cpus: float = Field(1.0, gt=0)
    gpus: Union[Literal["auto"], Annotated[float, Field(ge=0)]] = 0.0
    max_concurrent: Optional[WholeNumber] = Field(None, ge=1)

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, v: Union[str, float]) -> Union[str, float]:
        if not isinstance(v, str) and v > 1 and v != int(v):
            raise ValueError(f"fractional GPUs must be at most 1 (e.g. 0.25 for four trials per GPU) or auto; got {v}")
        return v

    @field_validator("cpus", "gpus")
    @classmethod
    def _ray_granularity(cls, v: Union[str, float]) -> Union[str, float]:
        # Ray counts resources in steps of its MIN_RESOURCE_GRANULARITY and refuses finer
        # amounts with an internal error once the trials are requested.
        steps = v / RAY_RESOURCE_STEP if not isinstance(v, str) else 0
        if abs(steps - round(steps)) > 1e-6 and not STORED_RUN.get():
            raise ValueError(f"Ray counts resources in steps of {RAY_RESOURCE_STEP:g}: must be a multiple of it, got {v!r}")
        return v

    @property
    def auto_gpus(self) -> bool:
        return self.gpus == "auto"

    @property
    def fixed_gpus(self) -> float:
        """GPUs per trial as a number: ``auto`` counts 0 until measured."""
        return 0.0 if isinstance(self.gpus, str) else self.gpus


class FailureConfig(_Strict):
    """Retries of a failed trial.

    Parameters
    ----------
    max_failures : int
        Retries from the trial's latest checkpoint before it is marked ERROR (-1: without end).
    """

    max_failures: WholeNumber = Field(2, ge=-1)


class CheckpointConfig(_Strict):
    """Checkpoints kept per trial (one is written every epoch).

    Parameters
    ----------
    num_to_keep : int
        The best checkpoints by the sweep's metric kept; the latest is always kept as well.
    """

    num_to_keep: WholeNumber = Field(2, ge=1)


class WandbConfig(_Strict):
    """Weights & Biases: one run per trial, grouped by run directory.

    Parameters
    ----------
    project, entity : str
        Where the runs go (``entity`` None: the default of the credentials).
    group : str, optional
        The runs' group (None: the run directory's name).
    mode : {"auto", "online", "offline", "disabled"}
        ``auto``: ``WANDB_MODE`` when set, else online with credentials and offline without.
    tags : list of str
        Added to every trial's run (each run is also tagged with its setting).
    log_checkpoints : bool
        Upload each trial's best weights as a W&B model artifact.
    """

    project: str = "specsweep"
    entity: Optional[str] = None
    group: Optional[str] = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    tags: List[str] = Field(default_factory=list)
    log_checkpoints: bool = False


MAX_EPOCHS = 100_000


class TrainConfig(_Strict):
    """Training values of a trial.

    Parameters
    ----------
    epochs : int
        Training epochs; a trial reports once per epoch and once more after testing.
    batch_size : int
        Training clips per batch.
    eval_batch_size : int, optional
        Clips per batch in validation and test (None: ``batch_size``).
    test_weights : {"best", "last"}
        Test with the weights of the best validation epoch by ``best_by``, or of the last epoch.
    best_by : str, optional
        The validation metric that picks the best epoch (None: the sweep's metric).
    optimizer : {"adam", "adamw", "sgd"}
        The optimizer of backbone and front-end.
    lr : float
        Learning rate of the backbone, and of the front-end unless ``frontend_lr`` is given.
    frontend_lr : float, optional
        Learning rate of the front-end's trainable bases (None: ``lr``).
    weight_decay : float
        The optimizer's weight decay.
    momentum : float
        SGD's momentum (the other optimizers ignore it).
    schedule : {"constant", "cosine"}
        The learning rate per step: constant, or a cosine decay to 0 at the last step.
    warmup_epochs : float
        Epochs of linear warm-up from 0 before the schedule.
    num_workers : int
        ``DataLoader`` worker processes (with the ``loader`` data path).
    balance_classes : bool
        Draw training clips with weights inverse to their class's frequency (classification).
    class_weights : dict
        Per-class sampling weights by label: with ``balance_classes`` they multiply inverse
        class frequencies, without it they are the weights themselves (a class left out weighs 1).
    shuffle : bool
        ``false`` reads the training split in its stored order every epoch (no class weights then).
    drop_last : bool
        Drop a last, partial training batch (when the split holds more than one batch).
    ctc_drop_frames : int
        Frames at each utterance's end left out of a CTC loss (decoding keeps them).
    data_path : {"auto", "loader", "device"}
        ``device`` gathers batches from a copy of the split on the trial's device, ``loader``
        uses the ``DataLoader``; ``auto`` is ``device`` for fixed-length clips on a GPU and
        ``loader`` otherwise.
    compile : bool
        ``torch.compile`` the model (CUDA graphs on a GPU) to cut the per-step launch overhead.
    """

    # Far above the study's 400; a count past it is a typo that inspect would price in
    # trillions of trial-hours and a trial would never finish.
    epochs: WholeNumber = Field(10, ge=1, le=MAX_EPOCHS)
    batch_size: WholeNumber = Field(100, ge=1)
    eval_batch_size: Optional[WholeNumber] = Field(None, ge=1)
    test_weights: Literal["best", "last"] = "best"
    best_by: Optional[str] = None
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    frontend_lr: Optional[float] = Field(None, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0)
    num_workers: WholeNumber = Field(0, ge=0)
    balance_classes: bool = True
    class_weights: Dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)
    shuffle: bool = True
    drop_last: bool = True
    ctc_drop_frames: WholeNumber = Field(0, ge=0)
    data_path: Literal["auto", "loader", "device"] = "auto"
    compile: bool = False


class SmokeConfig(_Strict):
    """What ``--smoke-test`` changes: besides these, one epoch, the first seed and at most two
    samples.

    Parameters
    ----------
    overrides : dict
        Values set in the smoke version, by section (``data``) or dotted key (``train.lr``).
    max_grid_values : int
        Values kept (the first and the last) of each grid or choice other than the setting's.
    limit_train_batches, limit_eval_batches : int
        Batches per training epoch, and per validation or test pass.
    """

    overrides: Dict[str, Any] = Field(default_factory=dict)
    max_grid_values: WholeNumber = Field(2, ge=1)
    limit_train_batches: WholeNumber = Field(3, ge=1)
    limit_eval_batches: WholeNumber = Field(2, ge=1)


class SweepSpec(_Strict):
    """A sweep spec: what every trial trains and how the sweep runs.

    Parameters
    ----------
    name : str
        Names the run directory (``NAME-YYYYmmdd-HHMMSS``) and the W&B group.
    description : str
        Free text, kept with the run.
    task : str
        A registered task: ``kws`` (keyword spotting) or ``asr`` (phoneme recognition, CTC).
    recipe : str, optional
        Presets for ``train`` and ``data``; every value the spec gives wins.
    data, frontend, backbone : dict
        The component's ``name`` and its arguments.
    train : TrainConfig
        Training values of every trial.
    seeds : list of int
        Every configuration runs once per seed.
    """

    # Run directories are named NAME-YYYYmmdd-HHMMSS, at most 255 bytes.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)
    description: str = ""
    task: str
    recipe: Optional[str] = None
    data: Dict[str, Any]
    frontend: Dict[str, Any]
    backbone: Dict[str, Any]
    train: TrainConfig = Field(default_factory=TrainConfig)
    seeds: List[Seed] = Field(default_factory=lambda: [0], min_length=1)
    search: SearchConfig = Field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    failure: FailureConfig = Field(default_factory=FailureConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_recipe(cls, raw: Any) -> Any:
        return apply_recipe(raw) if isinstance(raw, dict) else raw

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: List[int]) -> List[int]:
        repeated = sorted({seed for seed in v if v.count(seed) > 1})
        if repeated and not STORED_RUN.get():
            raise ValueError(f"{repeated} given more than once; each seed is one more run of every "
                             f"configuration, the same seed the same run")
        return v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"must be one of {', '.join(TASKS.names())}")
        return v

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in RECIPES:
            raise ValueError(f"must be one of {', '.join(RECIPES.names())} or left out")
        return v

    @model_validator(mode="after")
    def _train_fits_task(self) -> "SweepSpec":
        problems = train_task_problems(self.train.model_dump(), self.task)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def metric(self) -> str:
        return self.search.metric or get_task(self.task).metric

    @property
    def mode(self) -> str:
        return self.search.mode or get_task(self.task).mode(self.metric)

    @property
    def test_metric(self) -> str:
        """What a trial reports after testing for the sweep's metric (``val_acc``: ``test_acc``)."""
        return self.metric.replace("val_", "test_")

    def describe(self, config: Union["TrialConfig", Dict[str, Any]]) -> Dict[str, Any]:
        """The few values that tell ``config`` (a planned trial, or a trial's config as Tune
        or a run directory gives it) apart from the sweep's other trials: the setting, the
        swept keys' values (by short name, see :func:`swept_values`) and the seed."""
        if isinstance(config, PlannedTrial):
            values = config.as_dict(markers=True)
        else:
            values = config.as_dict() if isinstance(config, TrialConfig) else config
        frontend = trial_value(values, "frontend") or {}
        try:
            setting: Any = frontend_setting(frontend)
        except (ValueError, TypeError):
            # A planned trial's sampled setting is shown as its draw; a run written by
            # another version may name a front-end this one does not know.
            sampled = trial_value(values, "frontend.setting")
            setting = sampled if isinstance(sampled, Sampled) else "?"
        swept = [key for key in self.search.space if key != "frontend.setting"]
        return {"setting": setting, **swept_values(values, swept), "seed": trial_value(values, "seed")}

    def base_config(self) -> Dict[str, Any]:
        """The trial config before search values are filled in."""
        return {
            "task": self.task,
            "data": copy.deepcopy(self.data),
            "frontend": copy.deepcopy(self.frontend),
            "backbone": copy.deepcopy(self.backbone),
            "train": self.train.model_dump(),
            "seed": self.seeds[0],
        }


class ModelConfig(_Strict):
    """What a trial's model is made of: the task (its head and outputs) and the front-end
    and backbone configs. A :class:`TrialConfig` is one; ``inspect`` builds one from a
    planned trial whose training values may still be search distributions."""

    task: str
    frontend: Dict[str, Any]
    backbone: Dict[str, Any]

    @classmethod
    def of(cls, config: Dict[str, Any]) -> "ModelConfig":
        """The model part of a trial config dict."""
        return cls(task=config["task"], frontend=config["frontend"], backbone=config["backbone"])

    @property
    def setting(self) -> str:
        """The setting A-D of the front-end (given, or spelled by its flags)."""
        return frontend_setting(self.frontend)

    @property
    def task_info(self) -> Task:
        return get_task(self.task)


class TrialConfig(ModelConfig):
    """One trial's config, typed: the spec's sections with a search's values filled in, as
    Tune hands it to the trial (a plain dict there) and as status and report read it back.

    ``data``, ``frontend`` and ``backbone`` are the arguments of the registered components
    they name (their constructors' signatures hold the defaults); ``train`` is the schema's.

    Examples
    --------
    >>> trial = TrialConfig.model_validate({"task": "kws", "data": {"name": "embedded_kws"},
    ...     "frontend": {"name": "fastaudio", "trainable_filterbank": True}, "backbone": {"name": "simple"},
    ...     "seed": 3})
    >>> trial.setting, trial.train.balance_classes
    ('B', True)
    """

    data: Dict[str, Any]
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: Seed = 0

    def as_dict(self) -> Dict[str, Any]:
        """The config as Tune hands it to the trial: a plain dict, sections in spec order."""
        return {"task": self.task, "data": copy.deepcopy(self.data), "frontend": copy.deepcopy(self.frontend),
                "backbone": copy.deepcopy(self.backbone), "train": self.train.model_dump(), "seed": self.seed}

    def value(self, key: str) -> Any:
        """The value at a dotted ``key`` (``train.lr``, ``frontend.n_mels``), None where
        absent; a section (``frontend``, ``train``) as a plain dict. Read in place, not
        copied: the caller must not change it."""
        node: Any = self
        for part in key.split("."):
            node = getattr(node, part, None) if isinstance(node, BaseModel) else trial_value(node, part)
        return node.model_dump() if isinstance(node, BaseModel) else node


class PlannedTrial(TrialConfig):
    """A trial of a sweep's plan before it runs: a :class:`TrialConfig` whose values drawn
    per trial are not known yet. ``sampled`` holds their :class:`Sampled` markers by dotted
    key; the typed config holds the first value each may take there (a valid one), so that
    every part of the plan reads a typed config.

    Examples
    --------
    >>> spec = validate_spec({"name": "x", "task": "kws", "data": {"name": "embedded_kws"},
    ...     "frontend": {"name": "nnaudio"}, "backbone": {"name": "simple"},
    ...     "search": {"algorithm": "random", "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}}}})
    >>> trial = plan_trials(spec)[0]
    >>> trial.value("train.lr"), trial.train.lr, trial.as_dict()["train"]["lr"]
    (Sampled(form='loguniform', args=(0.0001, 0.01)), 0.0001, 'loguniform(0.0001, 0.01)')
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    sampled: Dict[str, Sampled] = Field(default_factory=dict)

    def as_dict(self, markers: bool = False) -> Dict[str, Any]:
        """The trial config with each sampled value shown as its draw (``"choice(A, B)"``),
        or with ``markers`` as its :class:`Sampled` marker."""
        config = super().as_dict()
        for key, marker in self.sampled.items():
            _set_dotted(config, key, marker if markers else str(marker))
        return config

    def value(self, key: str) -> Any:
        """The value at a dotted ``key``: its :class:`Sampled` marker where it is drawn (a
        section holding a drawn value comes with its marker in place)."""
        if key in self.sampled:
            return self.sampled[key]
        if any(drawn.startswith(f"{key}.") for drawn in self.sampled):
            return trial_value(self.as_dict(markers=True), key)
        return super().value(key)

    def with_values(self, chosen: Dict[str, Any]) -> "PlannedTrial":
        """This trial with the values ``chosen`` (by dotted key) in place of its draws or
        its values there (the plan's variants that bound a sampled size)."""
        config = TrialConfig.as_dict(self)
        for key, value in chosen.items():
            _set_dotted(config, key, value)
        return PlannedTrial.model_validate({**config, "sampled": {k: m for k, m in self.sampled.items() if k not in chosen}})

    def is_sampled(self, *prefixes: str) -> bool:
        """Whether a value at a key starting with one of ``prefixes`` is drawn per trial."""
        return any(key.startswith(prefixes) for key in self.sampled)


def plan_trials(spec: "SweepSpec") -> List[PlannedTrial]:
    """Every trial of ``spec``: each grid point × seed × sample, typed; the sampled
    dimensions as :class:`Sampled` markers."""
    grid_keys = [k for k, p in spec.search.space.items() if p.form == "grid"]
    sampled = {k: p.sampled() for k, p in spec.search.space.items() if p.form != "grid"}
    trials = []
    for combo in itertools.product(*(spec.search.space[k].grid for k in grid_keys)):
        config = spec.base_config()
        for key, value in zip(grid_keys, combo):
            _set_dotted(config, key, value)
        for key, marker in sampled.items():
            _set_dotted(config, key, marker.ends()[0])
        for seed in spec.seeds:
            trial = PlannedTrial.model_validate({**config, "seed": seed, "sampled": sampled})
            trials.extend(trial.model_copy(deep=True) for _ in range(spec.search.num_samples))
    return trials


_pydantic_problems = pydantic_problems


def _section_problems(section: str, config: Dict[str, Any], task: Optional[str],
                      num_samples: Optional[int] = None, data_rate: Optional[int] = None) -> List[str]:
    """Problems of one data/frontend/backbone config, each prefixed by its section; every
    value is checked against the contract of the component the config names."""
    name = config.get("name")
    registry = {"data": DATASETS, "frontend": FRONTENDS, "backbone": BACKBONES}[section]
    if name is None:
        return [f"{section}.name: missing; allowed: {', '.join(registry.names())}"]
    if not isinstance(name, str) or name not in registry:
        return [f"{section}.name: unknown {registry.kind} {name!r}; allowed: {', '.join(registry.names())}"]
    if section == "frontend":
        try:
            validate_frontend_config(config, num_samples, data_rate)
        except ValueError as err:
            return [f"frontend.{line}" if not line.startswith("frontend") else line for line in str(err).splitlines()]
        return []
    allowed = dataset_param_names(name) if section == "data" else backbone_param_names(name)
    unknown = sorted(set(config) - allowed - {"name"})
    problems = [f"{section}.{key}: unknown key for {section} {name!r}; allowed: {', '.join(sorted(allowed))}"
                for key in unknown]
    known = {k: v for k, v in config.items() if k in allowed}
    skip = () if section == "data" else ("input_shape", "num_outputs", "head")
    problems += [f"{section}.{p}" for p in argument_problems(registry.get(name), known, skip)]
    if section == "data":
        kind = dataset_task(name)
        if task and kind != get_task(task).datasets_of:
            problems.append(f"data.name: dataset {name!r} is for task {kind!r}, but task is {task!r}")
    return problems


def data_prepare_command(args: Any) -> int:
    """``specsweep data prepare DATASET``: prepare it (download when asked, decode into
    the cache) and print each split's folder."""
    from specsweep.data.datasets import prepare_dataset

    prepared = prepare_dataset(data_config_from_flags(args.dataset, args.set, args.root, args.download))
    for split, folder in prepared.splits.items():
        print(f"{split}: {folder}")
    return 0


def data_config_from_flags(name: str, settings: Sequence[str], root: Optional[str] = None,
                           download: bool = False) -> Dict[str, Any]:
    """The data config of ``specsweep data prepare``: the dataset ``name``, its ``--set
    KEY=VALUE`` arguments (values read as YAML), ``--root`` and ``--download``, checked
    like a spec's data section; :class:`~specsweep.data.datasets.DatasetConfigError` or
    :class:`~specsweep.contract.UsageError` naming the flag otherwise."""
    from specsweep.contract import UsageError, number_problems
    from specsweep.data.datasets import DatasetConfigError

    if name not in DATASETS:
        raise DatasetConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS.names())}")
    allowed = dataset_param_names(name)
    config: Dict[str, Any] = {"name": name}
    for setting in settings:
        key = setting.partition("=")[0]
        if "=" not in setting or key not in allowed:
            raise DatasetConfigError(f"--set {setting}: expected KEY=VALUE with KEY one of {', '.join(sorted(allowed))}")
        try:
            config[key] = parse_setting(setting, UniqueKeyLoader)[1]
        except OverrideError as err:
            raise DatasetConfigError(str(err)) from None
    problems = number_problems(config)
    if problems:
        raise DatasetConfigError("; ".join(f"--set {p.removeprefix('name').lstrip('.')}" for p in problems))
    if root:
        config["root"] = root
    if download:
        config["download"] = True
    problems = _section_problems("data", config, None)
    if problems:
        # Named as the user gave them: the dataset, its flags, and the rest as --set KEY.
        flags = {"data.name": "dataset", "data.root": "--root", "data.download": "--download", "data.": "--set "}
        raise UsageError("data prepare: " + "; ".join(
            next((p.replace(k, v, 1) for k, v in flags.items() if p.startswith(k)), p) for p in problems))
    return config


def train_task_problems(train: Dict[str, Any], task: Optional[str]) -> List[str]:
    """Training values that do not fit the task: a ``best_by`` the task does not report, the
    device data path for variable-length utterances."""
    if task not in TASKS:
        return []
    info = get_task(task)
    problems = []
    best_by = train.get("best_by")
    if best_by is not None and best_by not in info.val_metrics:
        problems.append(f"train.best_by: {best_by!r} is not a validation metric of task {task}; allowed: "
                        f"{', '.join(sorted(info.val_metrics))} (or null: the sweep's metric)")
    if not info.fixed_length and train.get("data_path") == "device":
        problems.append(f"train.data_path: device needs clips of one length; task {task}'s utterances are "
                        "padded per batch by the loader: use auto or loader")
    # A raw spec's train section, before the schema fills its defaults in.
    balance = train.get("balance_classes", TrainConfig.model_fields["balance_classes"].default)
    weighted = info.class_sampling and (balance or train.get("class_weights"))
    if train.get("shuffle") is False and weighted:
        problems.append("train.shuffle: false reads the training split in order, but train.balance_classes / "
                        "train.class_weights draw clips by class weights; set balance_classes: false and no "
                        "class_weights, or leave shuffle true")
    if train.get("ctc_drop_frames") and info.head != "frames":
        problems.append(f"train.ctc_drop_frames: only tasks trained with a CTC loss (per-frame heads) use it; "
                        f"task {task} has none: leave it 0")
    return problems


def _config_problems(raw: Dict[str, Any], task: Optional[str]) -> List[str]:
    """Problems of the data, frontend, backbone and train sections of a raw spec."""
    problems = []
    data = raw.get("data")
    described = None
    if isinstance(data, dict):
        data_problems = _section_problems("data", data, task)
        problems += data_problems
        if not data_problems:
            try:
                described = describe_dataset(data)
            except ValueError as err:
                problems.append(f"data: {err}")
    num_samples = described.nominal_samples if described else None
    data_rate = described.sample_rate if described else None
    for section in ("frontend", "backbone"):
        if isinstance(raw.get(section), dict):
            problems += _section_problems(section, raw[section], task, num_samples, data_rate)
    train = raw.get("train", {})
    if isinstance(train, dict):
        try:
            TrainConfig.model_validate(train)
        except ValidationError as err:
            problems += _pydantic_problems(err, prefix="train.")
        weighted = train.get("class_weights") or {}
        if described is not None and isinstance(weighted, dict) and task in TASKS:
            if weighted and not get_task(task).class_sampling:
                problems.append(f"train.class_weights: task {task} does not draw training clips by class")
            elif set(weighted) - set(described.labels):
                problems.append(f"train.class_weights: unknown classes {sorted(set(weighted) - set(described.labels))}; "
                                f"the dataset's classes: {', '.join(described.labels)}")
            elif all(weighted.get(label, 1.0) == 0 for label in described.labels):
                problems.append("train.class_weights: every class has weight 0, so no clip could be drawn; "
                                "give at least one class a weight > 0 (a class left out weighs 1)")
        problems += train_task_problems(train, task)
    return problems


def _set_dotted(config: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``config["a"]["b"] = value`` for ``key = "a.b"``; ValueError when a part of
    the path holds a value rather than a section."""
    *parents, leaf = key.split(".")
    node = config
    for depth, p in enumerate(parents):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"{'.'.join(parents[: depth + 1])} is a value ({node!r}), not a section with keys")
    node[leaf] = value


def swept_values(config: Dict[str, Any], keys: List[str]) -> Dict[str, Any]:
    """The values at dotted ``keys`` of a trial config (None where absent), each under a
    short name: the key's last part, or its section for ``frontend.name`` and
    ``backbone.name``, which would both be "name".

    Examples
    --------
    >>> swept_values({"frontend": {"name": "nnaudio", "n_mels": 20}, "seed": 1},
    ...              ["frontend.name", "frontend.n_mels", "seed", "train.lr"])
    {'frontend': 'nnaudio', 'n_mels': 20, 'seed': 1, 'lr': None}
    """
    return {key.split(".")[0] if key.endswith(".name") else key.rsplit(".", 1)[-1]: trial_value(config, key)
            for key in keys}


def trial_config_problem(config: Any) -> Optional[str]:
    """What makes ``config`` (a trial's config read back) unlike any a sweep writes, or
    None: a mapping whose ``data``, ``frontend``, ``backbone`` and ``train`` are mappings
    and whose ``seed`` is a whole number, when present."""
    if not isinstance(config, dict):
        return f"the trial config is a {type(config).__name__}, not a mapping"
    for section in ("data", "frontend", "backbone", "train"):
        value = trial_value(config, section)
        if value is not None and not isinstance(value, dict):
            return f"the trial config's {section} is a {type(value).__name__}, not a mapping"
    seed = trial_value(config, "seed")
    seed = 0 if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"the trial config's seed is {seed!r}, not a whole number"
    return None


def trial_value(config: Any, key: str) -> Any:
    """The value at a dotted ``key`` of a trial config given as a dict (as Tune or a run
    directory gives it), None where absent: the one place such a dict is read by key.

    Examples
    --------
    >>> trial_value({"train": {"lr": 0.1}, "seed": 2}, "train.lr"), trial_value({"seed": 2}, "train.lr")
    (0.1, None)
    """
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _sections(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of the sections a search or smoke override may change."""
    return {"task": raw.get("task"), **{k: copy.deepcopy(raw.get(k, {})) for k in SECTIONS}}


def _range_values(param: SearchParam) -> List[Any]:
    """Values a sampled range gives trials that bound what it may be: both ends (randint
    excludes its high), and for uniform and loguniform a fractional value inside, which a
    field of whole numbers refuses.

    Examples
    --------
    >>> _range_values(SearchParam(uniform=(1, 10))), _range_values(SearchParam(randint=(1, 10)))
    ([1.0, 10.0, 5.5], [1, 9])
    """
    ends = param.sampled().ends()
    if param.form == "randint":
        return ends
    low, high = ends
    inside = math.sqrt(low * high) if param.form == "loguniform" else low + (high - low) / 2
    if inside.is_integer():
        inside = math.nextafter(inside, high)
    return [low, high, inside]


def _check_space(raw: Dict[str, Any], task: Optional[str], base_problems: List[str]) -> List[str]:
    """Problems of ``search``: its keys, and each grid or choice value checked in the
    base config by the same contracts (a problem the base config has is not repeated)."""
    try:
        search = SearchConfig.model_validate(raw.get("search") or {})
    except ValidationError:
        return []  # reported by the spec's own validation
    problems = []
    known = set(base_problems)
    can = search_rules(search.algorithm)
    for key, param in search.space.items():
        where = f"search.space.{key}"
        section, _, leaf = key.partition(".")
        if key == "seed":
            problems.append(f"{where}: set seeds with the top-level 'seeds' list")
            continue
        if section not in SECTIONS or not leaf:
            problems.append(f"{where}: keys must start with one of {', '.join(SECTIONS)} (e.g. frontend.n_mels)")
            continue
        if param.form == "grid" and not can.grid:
            problems.append(f"{where}: grid values cannot be used with search.algorithm {search.algorithm}; use choice")
            continue
        values = param.values()
        if values is None:
            values = _range_values(param)
        checked = set()
        for value in values:
            if repr(value) in checked:
                continue
            checked.add(repr(value))
            trial = _sections(raw)
            try:
                _set_dotted(trial, key, value)
            except ValueError as err:
                problems.append(f"{where}: {err}")
                break
            drawn = f" (a value {param.form} draws)" if param.form in ("uniform", "loguniform") and value == values[-1] else ""
            problems += [f"{where}: value {value!r}{drawn}: {p}" for p in _config_problems(trial, task) if p not in known]
    seeds = raw.get("seeds")
    if not can.several_seeds and isinstance(seeds, list) and len(seeds) > 1:
        problems.append(f"seeds: {search.algorithm} samples one configuration per trial; give one seed (or run one "
                        f"sweep per seed)")
    sampled = [k for k, p in search.space.items() if p.form != "grid"]
    if sampled and not can.sampled:
        samplers = [name for name in SEARCHERS.names() if search_rules(name).sampled]
        problems.append(f"search.algorithm: {search.algorithm} cannot sample {', '.join(sampled)}; use algorithm "
                        f"{' or '.join(samplers)}")
    if task is not None:
        metric = search.metric or get_task(task).metric
        allowed = get_task(task).metrics
        if metric not in allowed:
            problems.append(f"search.metric: {metric!r} is not reported by task {task}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    return problems


def _across_sections_problems(raw: Dict[str, Any]) -> List[str]:
    """The scheduler's arguments against the reports of a trial (each epoch and the
    test), and the W&B names against wandb's own rules (not for a stored run: checks
    added since it started must not lock its results)."""
    if STORED_RUN.get():
        return []
    try:
        scheduler = SchedulerConfig.model_validate(raw.get("scheduler") or {})
        train = TrainConfig.model_validate(raw.get("train") or {})
        wandb = WandbConfig.model_validate(raw.get("wandb") or {})
    except ValidationError:
        return []  # reported by the spec's own validation
    return scheduler_problems(scheduler.name, scheduler, train.epochs + 1) + name_problems(wandb.project, wandb.tags)


def name_problems(project: str, tags: List[str]) -> List[str]:
    """Lines for a W&B project name or tags that wandb's own settings refuse (``/`` or
    ``#`` in a project, more than 128 characters; an empty tag, or one over 64
    characters), each naming its spec key, so that the sweep is refused before Ray starts
    rather than every trial failing in ``wandb.init``."""
    import wandb
    from pydantic import ValidationError
    from wandb.errors import UsageError

    problems = []
    for key, field_name, value in [("wandb.project", "project", project),
                                   *((f"wandb.tags.{i}", "run_tags", [tag]) for i, tag in enumerate(tags))]:
        try:
            wandb.Settings(**{field_name: value})
        except ValidationError as err:
            problems.append(f"{key}: wandb refuses {value[0]!r}: {err.errors()[0]['msg'].removeprefix('Value error, ')}")
        except UsageError as err:
            problems.append(f"{key}: wandb refuses it: {err}")
    return problems


def _smoke_problems(raw: Dict[str, Any], base_problems: List[str]) -> List[str]:
    """Problems that ``smoke.overrides`` bring in, each named by its override key."""
    smoke = raw.get("smoke")
    overrides = smoke.get("overrides") if isinstance(smoke, dict) else None
    if not isinstance(overrides, dict) or not overrides:
        return []
    changed = copy.deepcopy(raw)
    problems = []
    for key, value in overrides.items():
        where = f"smoke.overrides.{key}"
        if not isinstance(key, str) or key.partition(".")[0] not in SweepSpec.model_fields:
            problems.append(f"{where}: keys are dotted paths into the spec (e.g. data.clips_per_word)")
            continue
        try:
            _set_dotted(changed, key, value)
        except ValueError as err:
            problems.append(f"{where}: {err}")
    if problems:
        return problems
    known = set(base_problems)
    for problem in spec_problems(changed, check_smoke=False):
        if problem in known:
            continue
        key = next((k for k in overrides if problem.startswith(f"{k}:") or problem.startswith(f"{k}.")), None)
        problems.append(f"smoke.overrides.{key}: value {overrides[key]!r}: {problem}" if key
                        else f"smoke.overrides: with the overrides applied, {problem}")
    return problems


def spec_problems(raw: Any, check_smoke: bool = True) -> List[str]:
    """Every problem of a parsed spec, one line each naming its key path and what is allowed.

    The schema, each component's arguments (by its contract), every search value and
    (with ``check_smoke``) the smoke overrides are all checked, whatever fails first.
    """
    if not isinstance(raw, dict):
        return ["(top level): a spec must be a YAML mapping"]
    # Keys and numbers first: every later check (and its message) may compare, convert or
    # print a value, which a non-string key or a 5,000-digit integer breaks. The others
    # check what is left; their lines about a value taken out would repeat these.
    problems, raw, taken = numbers_checked(raw)
    if problems:
        # A key whose value held a refused number (a search dimension's choice) is named
        # by that line already; checked again, it would be judged by the None left in its place.
        return problems + [p for p in spec_problems(raw, check_smoke)
                           if not any(p.startswith((f"{path}:", f"{path}.")) or f" {path}:" in p
                                      or path.startswith(f"{p.partition(':')[0]}.") for path in taken)]
    try:
        SweepSpec.model_validate(raw)
    except ValidationError as err:
        # Sections checked by their components below are reported there.
        problems += [p for p in _pydantic_problems(err) if not p.startswith("train.")]
    task = raw.get("task") if isinstance(raw.get("task"), str) and raw.get("task") in TASKS else None
    # The sections as the recipe fills them are what the trials get.
    filled = apply_recipe(raw)
    problems += _config_problems(filled, task)
    problems += _check_space(filled, task, problems)
    problems += _across_sections_problems(filled)
    if check_smoke:
        problems += _smoke_problems(raw, problems)
    return list(dict.fromkeys(problems))


def validate_spec(raw: Any, source: str = "<spec>", check_smoke: bool = True) -> SweepSpec:
    """Validate a parsed spec; raise :class:`SpecError` listing every problem."""
    problems = spec_problems(raw, check_smoke)
    if problems:
        raise SpecError(source, problems)
    return SweepSpec.model_validate(raw)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error rather
    than the last value silently winning (a second ``task:`` would change the sweep)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping in; its keys are the merged mapping's
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        """An int, or an :class:`~specsweep.contract.OversizedInt` the spec check names
        (Python refuses to convert more than 4,300 digits, with a traceback)."""
        text = str(self.construct_scalar(node))
        if len(text) > MAX_INT_DIGITS and text.lstrip("+-").replace("_", "").isdigit():
            return parse_int(text)
        return super().construct_yaml_int(node)


UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", UniqueKeyLoader.construct_yaml_int)


# Far above any real spec file (the paper's are about 2 KB); a larger file is not read.
MAX_SPEC_BYTES = 4 * 2**20


def load_spec(path: Union[str, Path], smoke: bool = False, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a YAML spec; ``overrides`` (``--set KEY=VALUE`` arguments) change
    it before it is validated; with ``smoke`` apply its smoke-test reductions."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(str(path), [f"a folder, not a spec file (the specs are YAML files, e.g. {path}/*.yaml)"])
    if not path.is_file():
        raise SpecError(str(path), [f"file not found: {path}" if not path.exists() else
                                    "not a regular file (a spec is a YAML file)"])
    try:
        size_on_disk = path.stat().st_size
        if size_on_disk > MAX_SPEC_BYTES:
            raise SpecError(str(path), [f"{size_on_disk:,} bytes: more than a spec may hold ({MAX_SPEC_BYTES:,} bytes); "
                                        f"a spec is a YAML file of a few KB"])
        with path.open("rb") as stream:
            raw = yaml.load(stream.read(MAX_SPEC_BYTES + 1).decode("utf-8"), Loader=UniqueKeyLoader)
        size = expanded_size(raw)
    except OSError as err:
        raise SpecError(str(path), [f"cannot read the file: {err.strerror}"]) from None
    except UnicodeDecodeError:
        raise SpecError(str(path), ["not a text file (not UTF-8): a spec is a YAML file"]) from None
    except yaml.YAMLError as err:
        raise SpecError(str(path), [f"not valid YAML: {err}"]) from None
    except RecursionError:
        raise SpecError(str(path), ["lists or mappings nested too deeply to be a spec"]) from None
    if size > MAX_SPEC_VALUES:
        raise SpecError(str(path), [f"the document expands to {size:,} values (YAML aliases repeat what they name), "
                                    f"more than a spec may hold ({MAX_SPEC_VALUES:,})"])
    source = str(path)
    if overrides:
        raw, source = _overridden(raw, overrides, source), f"{path} with {describe_settings(overrides)}"
    spec = validate_spec(raw, source)
    return smoke_spec(spec) if smoke else spec


def _overridden(raw: Any, overrides: Sequence[str], source: str) -> Any:
    """``raw`` with the ``--set`` arguments applied (a spec that is no mapping is left for
    validation to name)."""
    try:
        parsed = [parse_setting(setting, UniqueKeyLoader) for setting in overrides]
        return with_overrides(raw, parsed) if isinstance(raw, dict) else raw
    except OverrideError as err:
        raise SpecError(source, [str(err)]) from None


def smoke_spec(spec: SweepSpec) -> SweepSpec:
    """A tiny version of ``spec``: its smoke overrides, 1 epoch, 1 seed, at most
    ``smoke.max_grid_values`` values (first and last) per grid axis other than the
    setting, at most 2 samples."""
    raw = spec.model_dump()
    raw["seeds"] = raw["seeds"][:1]
    raw["train"]["epochs"] = 1
    raw["search"]["num_samples"] = min(raw["search"]["num_samples"], 2)
    keep = spec.smoke.max_grid_values
    for key, param in raw["search"]["space"].items():
        if key == "frontend.setting":
            # Settings A-D are the question of every experiment: smoke tests keep them all.
            continue
        for form in ("grid", "choice"):
            values = param.get(form)
            if values and len(values) > keep:
                param[form] = values[: keep - 1] + values[-1:] if keep > 1 else values[:1]
    for key, value in spec.smoke.overrides.items():
        _set_dotted(raw, key, value)
    raw["search"]["space"] = {k: {f: v for f, v in p.items() if v is not None} for k, p in raw["search"]["space"].items()}
    return validate_spec(raw, f"{spec.name} (smoke)", check_smoke=False)


def param_space(spec: SweepSpec) -> Dict[str, Any]:
    """Tune's ``param_space``: the base trial config with search dimensions at their keys."""
    from ray import tune

    space = spec.base_config()
    if len(spec.seeds) > 1:
        space["seed"] = tune.grid_search(spec.seeds)
    for key, p in spec.search.space.items():
        if p.form == "grid":
            dim = tune.grid_search(p.grid)
        elif p.form == "choice":
            dim = tune.choice(p.choice)
        elif p.form == "uniform":
            dim = tune.uniform(*p.uniform)
        elif p.form == "loguniform":
            dim = tune.loguniform(*p.loguniform)
        else:
            dim = tune.randint(p.randint[0], p.randint[1])
        _set_dotted(space, key, dim)
    return space


def num_trials(spec: SweepSpec) -> int:
    grid = math.prod(len(p.grid) for p in spec.search.space.values() if p.form == "grid")
    return grid * len(spec.seeds) * spec.search.num_samples
