"""``--set KEY=VALUE`` on the command line: one parser for ``data prepare --set`` and the
spec overrides of ``run --set`` and ``inspect --set``.

A value is read as YAML (``0.01``, ``[1, 2]``, ``{grid: [A, D]}``, ``null``); a spec key is
dotted (``train.lr``), and under ``search.space`` and ``smoke.overrides``, whose own keys are
dotted key paths, the rest of the key is one key (``search.space.train.lr``).

Examples
--------
>>> parse_setting("seeds=[1, 2]")
('seeds', [1, 2])
>>> spec = {"train": {"lr": 0.1}, "search": {"space": {}}}
>>> with_overrides(spec, [("train.lr", 0.01), ("search.space.frontend.setting", {"grid": ["A", "D"]})])
{'train': {'lr': 0.01}, 'search': {'space': {'frontend.setting': {'grid': ['A', 'D']}}}}
>>> spec["train"]["lr"]  # the spec read from the file is left as it was
0.1
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Type

import yaml

from specsweep.contract import MAX_SPEC_VALUES, expanded_size

# Sections whose keys are themselves dotted key paths.
_DOTTED_KEY_SECTIONS = ("search.space", "smoke.overrides")


class OverrideError(ValueError):
    """A ``--set`` argument is malformed or names no place in the spec."""


def parse_setting(setting: str, loader: Type[yaml.SafeLoader] = yaml.SafeLoader) -> Tuple[str, Any]:
    """``KEY=VALUE`` as ``(KEY, VALUE read as YAML by loader)``; OverrideError naming the
    argument (cut to 200 characters: a hostile value can be megabytes). The spec passes its
    own loader, which keeps integers Python cannot print as values the number rule names."""
    key, sep, value = setting.partition("=")
    shown = setting if len(setting) <= 200 else setting[:200] + "..."
    if not sep or not key.strip():
        raise OverrideError(f"--set {shown}: expected KEY=VALUE")
    try:
        parsed = yaml.load(value, Loader=loader)
        # YAML aliases load as shared objects: one that holds itself, or aliases nested
        # tenfold, would send every later check into endless recursion or billions of values.
        size = expanded_size(parsed)
    except yaml.YAMLError as err:
        raise OverrideError(f"--set {shown}: the value is not valid YAML ({getattr(err, 'problem', err)})") from None
    except RecursionError:
        raise OverrideError(f"--set {shown}: the value nests too deeply (a YAML alias that holds itself?)") from None
    if size > MAX_SPEC_VALUES:
        raise OverrideError(f"--set {shown}: the value expands to {size:,} values (YAML aliases repeat what they "
                            f"name), more than a spec may hold ({MAX_SPEC_VALUES:,})")
    return key.strip(), parsed


def _key_path(key: str) -> List[str]:
    for section in _DOTTED_KEY_SECTIONS:
        if key.startswith(section + ".") and len(key) > len(section) + 1:
            return [*section.split("."), key[len(section) + 1:]]
    return key.split(".")


def with_overrides(raw: Dict[str, Any], overrides: Sequence[Tuple[str, Any]]) -> Dict[str, Any]:
    """A copy of the parsed spec ``raw`` with each ``(dotted key, value)`` set, later ones
    winning; sections on a key's path are created where absent. The mappings on each path
    are copied, so that a YAML alias shared with another place of the spec keeps its value
    there. OverrideError where a key has an empty part or runs through a value."""
    out: Dict[str, Any] = dict(raw)
    for key, value in overrides:
        parts = _key_path(key)
        if not all(parts):
            raise OverrideError(f"--set {key}: not a key (dotted names such as train.lr)")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part, {})
            if not isinstance(child, dict):
                raise OverrideError(f"--set {key}: {'.'.join(parts[:depth + 1])} is a value ({child!r}), not a section "
                                    f"with keys")
            node[part] = node = dict(child)
        node[parts[-1]] = value
    return out


def describe_settings(settings: Sequence[str]) -> str:
    """How a spec's source reads with its ``--set`` arguments, for messages."""
    return " ".join(f"--set {s}" for s in settings)
