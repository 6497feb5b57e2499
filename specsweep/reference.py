"""The spec reference (docs/spec-reference.md), generated from the schema and the registries.

Every key of a sweep spec comes from one of two places: the pydantic models of
:mod:`specsweep.spec` (``train``, ``search``, ``resources``, ...) or the signature of the
component a section names (``data``, ``frontend``, ``backbone``: their constructors'
annotated arguments are their contracts, see :mod:`specsweep.contract`). This module walks
both, adds what each recipe presets and the command-line summary of :mod:`specsweep.cli`,
and prints Markdown::

    python -m specsweep.reference > docs/spec-reference.md

``tests/test_docs.py`` fails when the committed file differs from this output, so a new key,
component or flag reaches the reference with the change that adds it.

Examples
--------
>>> from typing import Annotated, Literal, Optional
>>> from pydantic import Field
>>> type_and_allowed(Optional[Annotated[int, Field(ge=1)]])
('int or null', '>= 1')
>>> type_and_allowed(Literal["list", "archive"])
('str', '`list`, `archive`')
>>> yaml_text((2, 2, 4, 4)), yaml_text(None), yaml_text(1e-10)
('[2, 2, 4, 4]', 'null', '1.0e-10')
"""

from __future__ import annotations

import argparse
import collections.abc
import functools
import inspect
import re
import sys
import types
import typing
from typing import Annotated, Any, Callable, Dict, Iterable, List, Literal, NamedTuple, Optional, Tuple, Union

import yaml
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from specsweep.backbones import BACKBONES, backbone_param_names
from specsweep.cli import build_parser
from specsweep.data.datasets import DATASETS
from specsweep.frontends import FRONTENDS, SETTINGS
from specsweep.frontends.base import constructor_parameters
from specsweep.recipes import RECIPES
from specsweep.registry import Registry
from specsweep.search import SCHEDULERS, SEARCHERS
from specsweep.spec import (
    CheckpointConfig,
    FailureConfig,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    SearchParam,
    SmokeConfig,
    SweepSpec,
    TrainConfig,
    WandbConfig,
)
from specsweep.tasks import TASKS

# Bounds of pydantic / annotated-types metadata, in the words a table cell shows.
_BOUNDS = (("ge", ">= {}"), ("gt", "> {}"), ("le", "<= {}"), ("lt", "< {}"),
           ("min_length", "at least {} items"), ("max_length", "at most {} items"), ("pattern", "matches `{}`"))


def yaml_text(value: Any) -> str:
    """``value`` as it would be written in a spec (YAML flow style)."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()


def _metadata(items: Iterable[Any]) -> Tuple[List[str], Optional[Registry]]:
    """Bounds and the registry a validator checks against, from ``Annotated`` metadata."""
    bounds: List[str] = []
    registry = None
    for item in items:
        if isinstance(item, FieldInfo):
            more, found = _metadata(item.metadata)
            bounds += more
            registry = registry or found
        elif isinstance(item, AfterValidator) and isinstance(getattr(item.func, "__self__", None), Registry):
            registry = item.func.__self__
        else:
            bounds += [text.format(getattr(item, attr)) for attr, text in _BOUNDS
                       if getattr(item, attr, None) is not None]
    return bounds, registry


def type_and_allowed(annotation: Any, metadata: Iterable[Any] = ()) -> Tuple[str, str]:
    """The type of a key and what values it allows, as two table cells.

    Parameters
    ----------
    annotation : type
        A pydantic field's annotation or a constructor argument's type hint.
    metadata : iterable
        Constraints given outside the annotation (a pydantic field's ``metadata``).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return type_and_allowed(args[0], (*args[1:], *metadata))
    bounds, registry = _metadata(metadata)
    allowed = ", ".join(f"`{name}`" for name in registry.names()) if registry else ""
    if origin in (Union, types.UnionType):
        parts = [type_and_allowed(arg) for arg in args]
        kind = " or ".join(dict.fromkeys(part[0] for part in parts))
        allowed = "; ".join(part[1] for part in parts if part[1])
    elif origin is Literal:
        kind = " or ".join(dict.fromkeys(type(arg).__name__ for arg in args))
        allowed = ", ".join(f"`{yaml_text(arg)}`" for arg in args)
    elif origin in (list, tuple, collections.abc.Sequence):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            items = [type_and_allowed(arg) for arg in args]
            kind = "[" + ", ".join(item[0] for item in items) + "]"
            allowed = "; ".join(dict.fromkeys(item[1] for item in items if item[1]))
        else:
            kind, allowed = type_and_allowed(args[0]) if args else ("any", "")
            kind = f"list of {kind}"
            allowed = f"items {allowed}" if allowed else ""
    elif origin is dict:
        key, value = (type_and_allowed(arg) for arg in args)
        kind = f"mapping of {key[0]} to {value[0]}"
        allowed = f"values {value[1]}" if value[1] else ""
    elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        kind = "mapping"
    elif annotation is type(None):
        kind = "null"
    elif annotation is Any or annotation is inspect.Parameter.empty:
        kind = "any"
    else:
        kind = getattr(annotation, "__name__", str(annotation))
    if kind == "str":
        bounds = [bound.replace(" items", " characters") for bound in bounds]
    bounds = [re.sub(r"\b1 (item|character)s", r"1 \1", bound) for bound in bounds]
    allowed = "; ".join(part for part in (allowed, ", ".join(bounds)) if part)
    return kind, allowed


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> List[str]:
    """A Markdown table."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def _prose(doc: Optional[str]) -> str:
    """A docstring's first part (up to its first numpydoc section), as one paragraph with
    Sphinx roles turned into code."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc)
    text = re.split(r"\n\s*\n(?=\w[\w ]*\n-{3,})", text)[0]
    # Sphinx roles: ``~`` shows the last part of the dotted name, else the whole name.
    text = re.sub(r":\w+:`(~?)([\w.]+)`", lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
                  text)
    return " ".join(text.replace("``", "`").split())


class ParamDoc(NamedTuple):
    """One argument's numpydoc entry: its text, the choices its type names (``{"a", "b"}``),
    and whether the entry documents several arguments together."""

    text: str
    choices: str
    shared: bool


def parameter_docs(obj: Any) -> Dict[str, ParamDoc]:
    """The numpydoc ``Parameters`` entries of ``obj``'s docstring by argument name (an entry
    naming several arguments gives each the same text)."""
    doc = inspect.cleandoc(obj.__doc__ or "")
    match = re.search(r"^Parameters\n-+\n(.*?)(?=^\w[\w ]*\n-{3,}|\Z)", doc, flags=re.S | re.M)
    if not match:
        return {}
    entries: List[Tuple[List[str], str, List[str]]] = []
    for line in match.group(1).splitlines():
        if line and not line[0].isspace():
            names, _, kind = line.partition(" : ")
            choices = re.fullmatch(r"\{(.*)\}", kind.strip())
            entries.append(([name.strip() for name in names.split(",")],
                            choices.group(1).replace('"', "") if choices else "", []))
        elif line.strip() and entries:
            entries[-1][2].append(line.strip())
    return {name: ParamDoc(_prose(" ".join(text)), ", ".join(f"`{c.strip()}`" for c in choices.split(",")) if choices
                           else "", len(names) > 1)
            for names, choices, text in entries for name in names}


def _default(value: Any) -> str:
    if value is PydanticUndefined or value is inspect.Parameter.empty:
        return "required"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{yaml_text(value)}`"


def _field_default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def recipe_tasks(name: str) -> Dict[str, Dict[str, Any]]:
    """The presets of recipe ``name`` for each task it presets anything for."""
    presets = {task: RECIPES.build(name, task=task) for task in TASKS.names()}
    return {task: preset for task, preset in presets.items() if preset["train"] or preset["data"]}


def recipe_presets(section: str, key: str, dataset: Optional[str] = None) -> str:
    """What each recipe sets ``section.key`` to, per task (``data`` keys: for ``dataset``)."""
    sets = []
    for name in RECIPES.names():
        for task, preset in recipe_tasks(name).items():
            values = preset["train"] if section == "train" else preset["data"].get(dataset, {})
            if key in values:
                sets.append(f"{name} ({task}): `{yaml_text(values[key])}`")
    return "; ".join(sets)


def model_section(model: type[BaseModel], prefix: str, anchors: Dict[type, str]) -> List[str]:
    """The table of a pydantic model's keys, each with its type, default, allowed values and
    recipe presets."""
    rows = []
    docs = parameter_docs(model)
    for key, field in model.model_fields.items():
        annotation = field.annotation
        kind, allowed = type_and_allowed(annotation, field.metadata)
        nested = typing.get_args(annotation)[-1] if typing.get_origin(annotation) is dict else annotation
        if nested in anchors:
            kind = f"{kind}, see [{anchors[nested]}](#{_anchor(anchors[nested])})"
        allowed = allowed or spec_choices(f"{prefix}{key}")
        default = _default(_field_default(field))
        row = [f"`{prefix}{key}`", kind, default, allowed]
        if docs:
            row.append(docs[key].text if key in docs else "")
        if prefix == "train.":
            row.append(recipe_presets("train", key))
        rows.append(row)
    header = ["key", "type", "default", "allowed"] + (["meaning"] if docs else []) + \
        (["set by recipe"] if prefix == "train." else [])
    return table(header, rows)


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _names(registry: Registry) -> str:
    return ", ".join(f"`{name}`" for name in registry.names())


def spec_choices(key: str) -> str:
    """What a top-level key allows where a field validator, not its annotation, checks it
    against a registry."""
    if key in ("task", "recipe"):
        return _names(TASKS if key == "task" else RECIPES) + (" or left out" if key == "recipe" else "")
    registry = {"data": DATASETS, "frontend": FRONTENDS, "backbone": BACKBONES}.get(key)
    return f"`name` one of {_names(registry)}, plus that {registry.kind}'s keys" if registry else ""


def _hints(function: Callable[..., Any]) -> Dict[str, Any]:
    return typing.get_type_hints(function, include_extras=True)


def argument_rows(params: Dict[str, inspect.Parameter], hints: Dict[str, Any], docs: Dict[str, ParamDoc],
                  section: str, component: str) -> List[List[str]]:
    """Table rows of a component's constructor arguments: type, default and allowed values
    from its signature (else the choices its docstring names), meaning from its docstring,
    and for a dataset what each recipe presets."""
    rows = []
    for name, param in params.items():
        kind, allowed = type_and_allowed(hints.get(name, param.annotation))
        doc = docs.get(name, ParamDoc("", "", False))
        row = [f"`{section}.{name}`", kind, _default(param.default), allowed or doc.choices, doc.text]
        if section == "data":
            row.append(recipe_presets("data", name, component))
        rows.append(row)
    return rows


class Component(NamedTuple):
    """What the reference shows of one registered component."""

    name: str
    summary: str
    params: Dict[str, inspect.Parameter]
    hints: Dict[str, Any]
    docs: Dict[str, ParamDoc]


def component_section(section: str, title: str, intro: str, components: Iterable[Component]) -> List[str]:
    """A heading per component of a spec section, each with the table of its arguments."""
    header = ["key", "type", "default", "allowed", "meaning"] + (["set by recipe"] if section == "data" else [])
    lines = [f"## {title} (`{section}`)", "", intro, ""]
    for component in components:
        rows = argument_rows(component.params, component.hints, component.docs, section, component.name)
        lines += [f"### `{component.name}`", "", component.summary, ""] + table(header, rows) + [""]
    return lines


def dataset_sections() -> List[str]:
    components = (Component(name, f"Task `{DATASETS.about(name).task}`. {_prose(builder.__doc__)}",
                            dict(inspect.signature(builder).parameters), _hints(builder), parameter_docs(builder))
                  for name, builder in ((name, DATASETS.get(name)) for name in DATASETS.names()))
    return component_section(
        "data", "Datasets",
        "`data.name` selects one; its other keys are the arguments of the dataset's builder "
        "(`specsweep/data/datasets.py`). A recipe's data presets apply only to the dataset they name.", components)


def _frontend(name: str) -> Component:
    cls = FRONTENDS.get(name)
    hints: Dict[str, Any] = {}
    docs: Dict[str, ParamDoc] = {}
    # The nearest class that declares an argument gives its type, as it gives its default;
    # its meaning comes from the nearest entry of its own before one shared with others.
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass) and klass is not object:
            hints.update(_hints(klass.__init__))
            docs.update({key: doc for key, doc in parameter_docs(klass).items()
                         if doc.text and (not doc.shared or key not in docs or docs[key].shared)})
    summary = f"`{cls.__name__}`; filterbank flag `{cls.filterbank_flag}`. {_prose(cls.__doc__)}"
    return Component(name, summary, constructor_parameters(cls), hints, docs)


def frontend_sections() -> List[str]:
    return component_section(
        "frontend", "Front-ends",
        "`frontend.name` selects one; its other keys are the arguments of the front-end's constructor (ranges that "
        "depend on each other, such as `n_mels` up to `n_fft // 2 + 1`, are checked by its `config_problems`). "
        "Every front-end also takes `frontend.setting`: one of " + ", ".join(f"`{s}`" for s in SETTINGS)
        + ", another spelling of its two trainability flags (`trainable_stft` and the filterbank flag named "
          "below); a flag that contradicts it is refused.", (_frontend(name) for name in FRONTENDS.names()))


def backbone_sections() -> List[str]:
    components = (Component(name, f"`{cls.__name__}`. {_prose(cls.__doc__)}",
                            {key: p for key, p in inspect.signature(cls).parameters.items()
                             if key in backbone_param_names(name)},
                            _hints(cls.__init__), parameter_docs(cls))
                  for name, cls in ((name, BACKBONES.get(name)) for name in BACKBONES.names()))
    return component_section(
        "backbone", "Backbones",
        "`backbone.name` selects one; its other keys are the arguments of its constructor. The input shape, the "
        "number of outputs and the head (`utterance` or `frames`) come from the front-end and the task.", components)


def task_section() -> List[str]:
    rows = []
    for name in TASKS.names():
        task = TASKS.about(name)
        metrics = ", ".join(f"`{metric}` ({mode})" for metric, mode in {**task.val_metrics, **task.train_metrics}.items())
        rows.append([f"`{name}`", task.head, f"`{task.metric}`", metrics, f"`{task.datasets_of}` datasets"])
    return ["## Tasks (`task`)", "",
            "`search.metric` may be any metric of the task; `search.mode` defaults to the metric's direction.", ""] + \
        table(["task", "backbone head", "default metric", "metrics (direction)", "trains on"], rows) + [""]


def search_sections() -> List[str]:
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    searchers = [[f"`{name}`", _prose(SEARCHERS.get(name).__doc__), yes(rules.grid), yes(rules.sampled),
                  yes(rules.several_seeds)] for name, rules in ((name, SEARCHERS.about(name)) for name in SEARCHERS.names())]
    schedulers = [[f"`{name}`", _prose(SCHEDULERS.get(name).__doc__)] for name in SCHEDULERS.names()]
    return ["## Searchers (`search.algorithm`)", "",
            *table(["algorithm", "what it does", "grid values", "sampled values", "several seeds"], searchers), "",
            "## Schedulers (`scheduler.name`)", "", *table(["scheduler", "what it does"], schedulers), ""]


def recipe_section() -> List[str]:
    lines = ["## Recipes (`recipe`)", "",
             "A recipe fills the `train` keys (and, for the dataset it names, the `data` keys) that a spec leaves "
             "out; every value the spec gives wins. The values per task:", ""]
    for name in RECIPES.names():
        recipe = RECIPES.about(name)
        presets = recipe_tasks(name)
        tasks = list(presets)
        keys = list(dict.fromkeys(key for task in tasks for key in presets[task]["train"]))
        rows = [[f"`train.{key}`"] + [f"`{yaml_text(presets[t]['train'][key])}`" if key in presets[t]["train"] else ""
                                      for t in tasks] for key in keys]
        for task in tasks:
            for dataset, values in presets[task]["data"].items():
                rows += [[f"`data.{key}` (`{dataset}`)"] + [f"`{yaml_text(value)}`" if t == task else "" for t in tasks]
                         for key, value in values.items()]
        lines += [f"### `{name}`", "", f"{recipe.description[0].upper()}{recipe.description[1:]}.", ""]
        lines += table(["key"] + [f"task `{t}`" for t in tasks], rows) + [""]
    return lines


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> Iterable[Tuple[str, str, argparse.ArgumentParser]]:
    """``(command line, help, parser)`` of every leaf command under ``parser``."""
    # argparse keeps sub-commands and their help only in private attributes; the reference reads them there.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from _subcommands(sub, f"{prefix} {name}")
                else:
                    yield f"{prefix} {name}", helps.get(name, ""), sub


def command_section() -> List[str]:
    """Every command with its arguments and help, from :func:`specsweep.cli.build_parser`."""
    lines = ["## Commands", "",
             "`python -m specsweep ...` is the same command; `specsweep --help` and every command's `--help` "
             "answer without loading torch. Every command exits 0 on success, 1 when trials errored or did not "
             "finish, 2 for bad input (spec, flag, run directory, dataset) or environment, with one line per "
             "problem and no traceback (`--debug`, accepted by every command, shows it).", ""]
    for name, help_text, sub in _subcommands(build_parser(), "specsweep"):
        sub.formatter_class = functools.partial(argparse.HelpFormatter, width=1000)
        usage = " ".join(sub.format_usage().removeprefix("usage: ").split())
        rows = [[", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`", action.help or ""]
                for action in sub._actions if action.dest not in ("help", "debug")]
        lines += [f"### `{name}`", "", f"{help_text[0].upper()}{help_text[1:]}.", "", "```", usage, "```", ""]
        lines += table(["argument", "meaning"], rows) + [""]
    return lines


def reference() -> str:
    """The whole reference as Markdown."""
    sections = {TrainConfig: "train", SearchConfig: "search", SearchParam: "search.space values",
                SchedulerConfig: "scheduler", ResourcesConfig: "resources", FailureConfig: "failure",
                CheckpointConfig: "checkpoint", WandbConfig: "wandb", SmokeConfig: "smoke"}
    lines = ["# Spec reference", "",
             "<!-- Generated by `python -m specsweep.reference > docs/spec-reference.md`: do not edit; "
             "tests/test_docs.py fails when this file differs from the generated text. -->", "",
             "Every key of a sweep spec (YAML), from the schema in `specsweep/spec.py` and the registered components. "
             "A spec names its components by `name` and gives their arguments as keys; a search varies any of "
             "them through dotted keys in `search.space` (`frontend.n_mels`, `train.lr`, ...). Unknown keys are "
             "refused. How to write one: [tutorial](tutorial.md); the paper's protocol: [protocol](protocol.md).", "",
             "## Top level", ""]
    lines += model_section(SweepSpec, "", sections) + [""]
    for model, title in sections.items():
        prefix = "search.space.KEY." if model is SearchParam else f"{title}."
        intro = _prose(model.__doc__) if model.__doc__ and not model.__doc__.startswith("!!!") else ""
        lines += [f"## {title}", ""] + ([intro, ""] if intro else [])
        lines += model_section(model, prefix, sections) + [""]
    lines += recipe_section() + task_section() + dataset_sections() + frontend_sections() + backbone_sections()
    lines += search_sections() + command_section()
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Print the reference (``python -m specsweep.reference > docs/spec-reference.md``)."""
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
