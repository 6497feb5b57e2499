"""Argument contracts of components: the types and ranges a builder declares.

A component (dataset, backbone, front-end, ...) states what its arguments may be where
it is defined: either in its signature, with ``typing.Annotated`` types carrying pydantic
constraints, or, when arguments constrain each other, in a ``config_problems`` classmethod.
:func:`argument_problems` reads either, so the spec validator needs no table of its own
and a new argument is checked as soon as its builder declares it.

Examples
--------
>>> from typing import Annotated
>>> def build(width: Annotated[float, Field(gt=0)] = 1.0, seed: Seed = 0, name: str = "x"):
...     return width
>>> argument_problems(build, {"width": "wide", "seed": -1})  # doctest: +NORMALIZE_WHITESPACE
["width: must be a valid number, got 'wide'",
 'seed: must be greater than or equal to 0, got -1']
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

class UsageError(ValueError):
    """A command's arguments are wrong in a way argparse cannot see (the command line
    names the flag and exits with status 2)."""


# Set while the spec of an existing run directory is read: checks added after a run was
# started must not make its results unreadable or its sweep unresumable.
STORED_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("STORED_RUN", default=False)


def _not_a_bool(value: Any) -> Any:
    # pydantic takes true/false for a number (bool is an int in Python): `epochs: true`
    # would run one epoch.
    if isinstance(value, bool) and not STORED_RUN.get():
        raise ValueError("must be a whole number, not true or false")
    return value


# An int that a YAML true/false is not.
WholeNumber = Annotated[int, BeforeValidator(_not_a_bool)]
# NumPy's (and so Lightning's seed_everything's) seed range.
Seed = Annotated[WholeNumber, Field(ge=0, le=2**32 - 1)]
PositiveInt = Annotated[WholeNumber, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, lt=1)]



@dataclass(frozen=True)
class Footprint:
    """A component's size at given input sizes, counted in float32 values, computed
    from its arguments without building it.

    Attributes
    ----------
    trainable : dict
        Trainable parameters by part (as ``trainable_parameter_counts`` reports them).
    frozen : int
        Parameters that are not trained, and buffers.
    activations : int
        Values one example keeps for the backward pass (a rough upper count).
    build : int
        Extra values held only while the component is built (e.g. float64 kernels).
    shape : tuple of int
        Output shape of one example (a front-end's ``(bins, frames)``).
    """

    trainable: Dict[str, int]
    frozen: int = 0
    activations: int = 0
    build: int = 0
    shape: Tuple[int, ...] = ()


# Strict: YAML's "yes" is no boolean and "3" no number here; finite: inf and nan are no sizes.
_ARGUMENT_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


_UNION_MEMBER = re.compile(r"^(int|float|str|bool|list|dict|none|[a-z]+(-[a-z]+)+)(\[.*\])?$|^[a-z]+\[.*\]$")



@dataclass(frozen=True)
class StepMeasure:
    """Training steps of one model timed on a device (:mod:`specsweep.trainables.calibrate`),
    as the sweep's plan prices and packs them: ``clips_per_s``; on a
    GPU also the device's name and memory, the peak memory the steps reserved
    (``torch.cuda.max_memory_reserved``, the allocator's pools and any CUDA graphs'), and
    ``busy``, the fraction of the steps' wall time the GPU spent running their kernels and
    copies (``torch.profiler``; None where the profiler gave nothing)."""

    clips_per_s: float
    device: str
    total_mib: Optional[float] = None
    peak_mib: Optional[float] = None
    busy: Optional[float] = None

def format_loc(loc: Iterable[Any]) -> str:
    """A pydantic error location as a dotted key path (list indices included, the
    names pydantic gives union members left out)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and _UNION_MEMBER.match(p))) or "(top level)"


def pydantic_problems(err: ValidationError, prefix: str = "") -> List[str]:
    """One ``key.path: what is allowed, got value`` line per bad value of ``err`` (the
    alternatives of a union joined by "or")."""
    allowed: Dict[str, List[str]] = {}
    values: Dict[str, Any] = {}
    problems: Dict[str, str] = {}
    for e in err.errors():
        loc = prefix + format_loc(e["loc"])
        if e["type"] == "extra_forbidden":
            if loc.endswith("api_key"):
                problems[loc] = f"{loc}: never put a W&B key in a spec; set WANDB_API_KEY or run `wandb login`"
            else:
                problems[loc] = f"{loc}: unknown key"
        elif e["type"] == "missing":
            problems[loc] = f"{loc}: missing (required)"
        else:
            msg = e["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
            allowed.setdefault(loc, []).append(msg)
            values[loc] = e.get("input")
            problems[loc] = loc
    lines = []
    for loc, line in problems.items():
        if loc in allowed:
            msg = " or ".join(dict.fromkeys(allowed[loc]))
            if loc == "(top level)" and re.match(r"^[\w.]+: ", msg):
                # A check across sections that names its own key path.
                line = msg
            else:
                # Messages that name the value already: "..., got 3", "unknown searcher 'x'; allowed: ...".
                line = f"{loc}: {msg}" if "got" in msg or "allowed:" in msg else f"{loc}: {msg}, got {_short(values[loc])}"
        lines.append(line)
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _signature_target(builder: Callable[..., Any]) -> Callable[..., Any]:
    return builder.__init__ if inspect.isclass(builder) else builder


@functools.lru_cache(maxsize=None)
def arguments_model(builder: Callable[..., Any], skip: Tuple[str, ...] = ()) -> type[BaseModel]:
    """A pydantic model of ``builder``'s keyword arguments (minus ``skip``), from its
    annotations and defaults."""
    target = _signature_target(builder)
    hints = typing.get_type_hints(target, include_extras=True)
    fields: Dict[str, Any] = {}
    for name, param in inspect.signature(target).parameters.items():
        if name == "self" or name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(f"{getattr(builder, '__name__', 'builder')}Arguments", __config__=_ARGUMENT_CONFIG, **fields)


def argument_problems(builder: Callable[..., Any], args: Mapping[str, Any], skip: Tuple[str, ...] = ()) -> List[str]:
    """One line per argument of ``args`` that ``builder``'s contract refuses, each
    starting with the argument's name and saying what is allowed.

    Builders with a ``config_problems`` classmethod (arguments that constrain each
    other) are checked by it; the others by their annotated signature.
    """
    own = getattr(builder, "config_problems", None)
    if own is not None:
        return own(**args)
    try:
        arguments_model(builder, tuple(skip))(**args)
    except ValidationError as err:
        return pydantic_problems(err)
    return []


# 64-bit integers: what torch, NumPy and Ray's samplers convert without overflow. A value
# outside is never a size, seed or count anyone means.
INT_LIMIT = 2**63 - 1
# float32's largest finite value: spec numbers reach float32 tensors (front-end constants,
# learning rates as optimiser alphas), where a larger one becomes inf.
FLOAT32_MAX = 3.4028234663852886e38
# Digits of an integer a parser may turn into an int: far above INT_LIMIT's 19, far below
# Python's int-to-string limit (4,300 digits), past which converting or printing one fails.
MAX_INT_DIGITS = 100


class OversizedInt:
    """An integer literal with more than :data:`MAX_INT_DIGITS` digits, kept as its digit
    count by the spec and run-directory parsers (never converted), so that the one check
    of numbers (:func:`number_problems`) names its key path."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer of {self.digits:,} digits>"


def parse_int(text: str) -> Any:
    """``int(text)``, or :class:`OversizedInt` for more than :data:`MAX_INT_DIGITS` digits
    (a parser's integer hook: ``json.loads(..., parse_int=parse_int)``).

    Examples
    --------
    >>> parse_int("-12"), parse_int("9" * 5000)
    (-12, <an integer of 5,000 digits>)
    """
    digits = len(text.lstrip("+-").replace("_", ""))
    return OversizedInt(digits) if digits > MAX_INT_DIGITS else int(text)


def _yaml_key(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return repr(key)


def number_problems(value: Any, path: str = "") -> List[str]:
    """The one rule for numbers and keys of anything parsed from a spec, a flag or a run
    directory, checked before any component sees a value: mapping keys are strings,
    integers fit 64 bits, floats are finite and within float32's range. No argument of
    any component allows otherwise, so every component, a new one included, is covered
    without a table of its own.

    Examples
    --------
    >>> number_problems({"frontend": {True: 1, "power": float("nan"), "eps": 1e300, "n": 2**64}})
    ... # doctest: +NORMALIZE_WHITESPACE
    ["frontend: the key true is not a string (YAML reads true, false, yes, no, null and numbers as such); quote it: 'true':",
     'frontend.power: must be a finite number, got nan',
     'frontend.eps: must be within float32 range (at most 3.4e+38 in size), got 1e+300',
     'frontend.n: must be a whole number of at most 64 bits (|n| <= 9223372036854775807), got 18446744073709551616']
    """
    return numbers_checked(value, path)[0]


def numbers_checked(value: Any, path: str = "", finite: bool = True) -> Tuple[List[str], Any, List[str]]:
    """``(problems, cleaned, paths)``: :func:`number_problems`'s lines (without
    ``finite``, floats are not checked: metrics read back may be NaN), a copy of ``value``
    without the keys that are not strings and with None for each refused number (so that
    the other checks can still run and list their problems at once), and the key paths
    of what was taken out (later lines about them say the same again)."""
    problems: List[str] = []
    paths: List[str] = []

    def walk(where: str, node: Any) -> Any:
        name = where or "(top level)"
        if isinstance(node, dict):
            kept = {}
            for key, child in node.items():
                if not isinstance(key, str):
                    problems.append(f"{name}: the key {_yaml_key(key)} is not a string (YAML reads true, false, yes, "
                                    f"no, null and numbers as such); quote it: '{_yaml_key(key)}':")
                    paths.append(f"{where}.{_yaml_key(key)}" if where else _yaml_key(key))
                    continue
                kept[key] = walk(f"{where}.{key}" if where else key, child)
            return kept
        if isinstance(node, (list, tuple)):
            return [walk(f"{where}.{i}" if where else str(i), child) for i, child in enumerate(node)]
        problem = _number_problem(node) if finite or not isinstance(node, float) else None
        if problem is None:
            return node
        problems.append(f"{name}: {problem}")
        paths.append(name)
        return None

    cleaned = walk(path, value)
    return problems, cleaned, paths


def _number_problem(node: Any) -> Optional[str]:
    if isinstance(node, OversizedInt):
        return f"must be a whole number of at most 64 bits (|n| <= {INT_LIMIT}), got an integer of {node.digits:,} digits"
    if isinstance(node, bool):
        return None
    if isinstance(node, int) and abs(node) > INT_LIMIT:
        # Printing an int of thousands of digits fails (Python's int-to-string limit).
        got = node if node.bit_length() < 300 else f"an integer of about {int(node.bit_length() * 0.30103):,} digits"
        return f"must be a whole number of at most 64 bits (|n| <= {INT_LIMIT}), got {got}"
    if isinstance(node, float) and not math.isfinite(node):
        return f"must be a finite number, got {node}"
    if isinstance(node, float) and abs(node) > FLOAT32_MAX:
        return f"must be within float32 range (at most {FLOAT32_MAX:.2g} in size), got {node:g}"
    return None


def address_problem(text: str) -> Optional[str]:
    """What is wrong with a cluster address (``--address`` or ``RAY_ADDRESS``), or None
    for ``auto``, ``local``, or ``HOST:PORT`` with a port in 1-65535 (the launcher names
    what it does not join, such as a dashboard's http:// address)."""
    if text in ("auto", "local"):
        return None
    if text.startswith("ray://"):
        return (f"ray:// (Ray Client) is not supported: give the head's HOST:PORT, or run specsweep on a cluster "
                f"node or as a job; got {text[:200]!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return f"must be HOST:PORT (or auto, local), got {text[:200]!r}"
    # Digits counted before converting: Python refuses ints of thousands of digits.
    if not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        return f"port must be a number in 1-65535, got {port[:40]!r} in {text[:200]!r}"
    return None


# Far above any real spec (the paper's hold about a hundred values), far below what
# exhausts memory when YAML aliases nest ("billion laughs").
MAX_SPEC_VALUES = 100_000


def expanded_size(value: Any) -> int:
    """How many values ``value`` holds once every repeated reference is counted as a copy
    (YAML aliases load as shared objects that validation would expand), counted once per
    distinct object.

    Examples
    --------
    >>> row = [1, 2, 3]
    >>> expanded_size({"a": row, "b": row})  # the mapping, 2 keys, the list twice
    11
    """
    sizes: Dict[int, int] = {}

    def size(node: Any) -> int:
        if isinstance(node, dict):
            children: Any = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            return 1
        if id(node) not in sizes:
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    return size(value)
