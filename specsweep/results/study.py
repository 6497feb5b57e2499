"""The study's answer from one or several run directories: trials grouped so that a group
never mixes what differs, each setting's effect against A per group, and the paper's claims
(specsweep/results/claims.yaml) judged against those effects.

A group holds the finished trials that agree on every config value except the setting and
the seed (task, front-end, backbone, n_mels, mask range, initialisation, ...), and on the
run directory when several are read together. Within a group, :mod:`specsweep.results.effects`
pairs trials by seed. No plotting here: ``specsweep run`` prints the effects from this
module without loading matplotlib.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml
from scipy import stats

from specsweep.results.effects import (CONTRADICTED, NOT_RESOLVED, SUPPORTED, Effect, Interval, interval, paired_effects,
                               seeds_to_resolve, verdict)
from specsweep.frontends.base import SETTINGS
from specsweep.rundir import RunLocation
from specsweep.spec import SweepSpec, trial_value

# Shipped inside the package (pyproject's package data), so an installed copy has it too.
CLAIMS_FILE = Path(__file__).resolve().with_name("claims.yaml")
DRIFT_KEYS = {"filterbank_drift": "frontend/filterbank_drift", "stft_drift": "frontend/stft_drift"}
# Config values that the setting decides, or that identify a trial rather than its condition.
_NOT_GROUPING = {"seed", "frontend.setting", "frontend.trainable_stft", "frontend.trainable_mel",
                 "frontend.trainable_filterbank"}
# What the study varies, in the order a group's label names it when it is not swept.
STUDY_KEYS = ("task", "data.name", "backbone.name", "frontend.name", "frontend.n_mels", "frontend.random_mel_init",
              "frontend.mask_bins", "train.optimizer", "train.lr", "train.epochs")
# Datasets of the paper: verdicts on any other data are about that data.
PAPER_DATA = {"kws": "speechcommands", "asr": "timit"}
PAPER_DATA_NAMES = {"speechcommands": "Speech Commands", "timit": "TIMIT"}
RUN_KEY = "run"


@dataclass
class Run:
    """A run directory's name, spec and trials (as :func:`specsweep.results.status.read_trials`)."""

    name: str
    spec: SweepSpec
    trials: List[Dict[str, Any]]
    location: Optional[RunLocation] = None


@dataclass
class Group:
    """Finished trials of one condition: ``label`` names what sets it apart (short key ->
    value), ``values[kind][setting][seed]`` holds each trial's metric (kinds: ``val``, the
    best validation value over epochs; ``test``, the test metric of the tested weights; and
    the drifts)."""

    label: Dict[str, Any]
    run: Run
    config: Dict[str, Any]
    trials: List[Dict[str, Any]] = field(default_factory=list)
    values: Dict[str, Dict[str, Dict[Any, float]]] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.run.spec.metric

    @property
    def test_key(self) -> str:
        return self.run.spec.test_metric

    @property
    def mode(self) -> str:
        return self.run.spec.mode

    @property
    def title(self) -> str:
        return label_text(self.label)

    def settings(self) -> List[str]:
        return [s for s in SETTINGS if any(s in by_setting for by_setting in self.values.values())]

    def effects(self) -> List[Effect]:
        """B, C, D against A on the test metric, paired by seed."""
        return paired_effects(self.values.get("test", {}), self.mode)


def label_text(label: Mapping[str, Any]) -> str:
    """``backbone=simple, frontend=nnaudio``; ``all trials`` for an empty label."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in label.items()) or "all trials"


def format_value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(format_value(v) for v in value) if value and isinstance(value[0], list) else "-".join(map(str, value))
    return str(value)


def _leaves(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Dotted keys of a nested config to their (non-dict) values."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_leaves(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _short(key: str) -> str:
    """A dotted key's short name, as :func:`specsweep.spec.swept_values` names them."""
    return key.split(".")[0] if key.endswith(".name") else key.rsplit(".", 1)[-1]


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def grouping_keys(runs: Sequence[Run]) -> List[str]:
    """The dotted config keys (and :data:`RUN_KEY` for several runs) that set groups apart.

    Candidates are the runs' swept keys first, in spec order, then every other config value
    that differs between finished trials; a candidate joins only when it splits a group
    further, so values that follow from another (a backbone's own options) do not repeat it.
    With several runs, :data:`RUN_KEY` comes first.
    """
    finished = [(run, _leaves(t["config"])) for run in runs for t in run.trials if t["status"] == "TERMINATED"]
    swept = [k for run in runs for k in run.spec.search.space if k not in _NOT_GROUPING]
    # The study's own dimensions before incidental options (alphabetical), so that a label
    # says "backbone=simple" rather than the first option that happens to follow from it.
    others = sorted({k for _, leaves in finished for k in leaves} - set(swept) - _NOT_GROUPING,
                    key=lambda k: (STUDY_KEYS.index(k) if k in STUDY_KEYS else len(STUDY_KEYS), k))
    chosen: List[str] = []
    count = 1
    for key in dict.fromkeys(swept + others):
        split = len({tuple(_value(run, leaves, k) for k in chosen + [key]) for run, leaves in finished})
        if split > count:
            chosen.append(key)
            count = split
    # Several runs are never pooled: the run directory is a key even where a config value
    # already tells them apart.
    return ([RUN_KEY] if len(runs) > 1 else []) + chosen


def _value(run: Run, leaves: Mapping[str, Any], key: str) -> str:
    return _hashable(run.name if key == RUN_KEY else leaves.get(key))


def _names(keys: Sequence[str]) -> Dict[str, str]:
    """Each key's short name, or the dotted key where two short names would collide."""
    shorts = [_short(k) for k in keys]
    return {k: (s if shorts.count(s) == 1 else k) for k, s in zip(keys, shorts)}


def group_trials(runs: Sequence[Run]) -> List[Group]:
    """The finished trials of ``runs`` in :class:`Group` s, in order of first appearance."""
    keys = grouping_keys(runs)
    names = _names(keys)
    groups: Dict[Tuple[str, ...], Group] = {}
    for run in runs:
        kinds = {"val": f"best_{run.spec.metric}", "test": run.spec.test_metric, **DRIFT_KEYS}
        for t in run.trials:
            if t["status"] != "TERMINATED":
                continue
            leaves = _leaves(t["config"])
            ident = tuple(_value(run, leaves, k) for k in keys)
            if ident not in groups:
                label = {names[k]: (run.name if k == RUN_KEY else leaves.get(k)) for k in keys}
                groups[ident] = Group(label, run, t["config"], values={kind: {} for kind in kinds})
            group = groups[ident]
            group.trials.append(t)
            setting = run.spec.describe(t["config"])["setting"]
            for kind, key in kinds.items():
                value = t["metrics"].get(key)
                # A non-finite metric (a diverged trial's NaN) is left out: the seed then shows
                # as unpaired, named in the report, instead of turning every effect into NaN.
                if isinstance(value, (int, float)) and math.isfinite(value):
                    # A seed repeated within a group (a resumed copy) keeps its first trial.
                    group.values[kind].setdefault(setting, {}).setdefault(trial_value(t["config"], "seed"), float(value))
    return list(groups.values())


def _signed(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def interval_text(iv: Interval) -> str:
    """``[-0.0200, +0.0446]``, or why there is no interval."""
    if iv.low is None:
        return iv.method
    return f"[{_signed(iv.low)}, {_signed(iv.high)}]"


def reading_text(effect: Effect) -> str:
    """``better``/``worse``, or ``not resolved`` with the seeds that would resolve the
    measured effect at the measured spread."""
    if effect.reading != NOT_RESOLVED:
        return effect.reading
    return f"{NOT_RESOLVED}{_seeds_note(effect.interval)}"


def _seeds_note(iv: Interval) -> str:
    needed = seeds_to_resolve(iv.mean, iv.sd)
    if needed is None:
        return ""
    return f" (~{needed} seeds would resolve {_signed(iv.mean)} at sd {iv.sd:.4f})"


EFFECT_COLUMNS = ("setting", "effect", "95% interval", "pairs", "method", "reading")


def effect_rows(groups: Sequence[Group]) -> List[Dict[str, Any]]:
    """One row per group and setting B-D: the group's label, the test metric, the effect."""
    rows = []
    for g in groups:
        for e in g.effects():
            iv = e.interval
            rows.append({"group": g.title, "label": g.label, "metric": g.test_key, "mode": g.mode, "setting": e.setting,
                         "baseline": e.baseline, "effect": iv.mean, "low": iv.low, "high": iv.high, "pairs": iv.n,
                         "method": iv.method, "reading": reading_text(e), "unpaired": list(e.unpaired), "sd": iv.sd})
    return rows


def effects_markdown(group: Group) -> str:
    """The effect table of one group (Markdown), with its unpaired trials named."""
    effects = group.effects()
    if not effects:
        return "No effects: setting A or the others have no finished trials in this group.\n"
    better = "higher" if group.mode == "max" else "lower"
    lines = [f"Effects on {group.test_key} against A, paired by seed ({better} is better; 95 % intervals):\n",
             "| " + " | ".join(EFFECT_COLUMNS) + " |", "|" + "---|" * len(EFFECT_COLUMNS)]
    for e in effects:
        iv = e.interval
        lines.append(f"| {e.setting} − A | {_signed(iv.mean)} | {interval_text(iv)} | {iv.n} | {iv.method} | "
                     f"{reading_text(e)} |")
    unpaired = [u for e in effects for u in e.unpaired]
    if unpaired:
        lines.append(f"\nUnpaired trials (left out of the effects): {', '.join(dict.fromkeys(unpaired))}.")
    return "\n".join(lines) + "\n"


def effects_console(groups: Sequence[Group]) -> str:
    """The effects of every group as a plain-text table for the end of ``specsweep run``."""
    rows = effect_rows(groups)
    if not rows:
        return "(no effects: no group has finished trials of A and another setting)"
    table = [["group", "metric", "setting", "effect", "95% interval", "pairs", "reading"]]
    table += [[r["group"], r["metric"], f"{r['setting']} - A", _signed(r["effect"]),
               interval_text(Interval(r["effect"], r["low"], r["high"], r["pairs"], r["method"])), str(r["pairs"]),
               r["reading"]] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    unpaired = sorted({f"{r['group']}: {u}" for r in rows for u in r["unpaired"]})
    if unpaired:
        lines.append("unpaired trials (left out): " + "; ".join(unpaired))
    return "\n".join(lines)


def tested_note(spec: SweepSpec, weights: bool = True) -> str:
    """What the test metric measures (with ``weights``: with which weights) and what the
    validation column is."""
    t = spec.train
    tested = ("the last epoch's weights" if t.test_weights == "last"
              else f"the weights of the best epoch by {t.best_by or spec.metric}") if weights else "the tested weights"
    return (f"{spec.metric.replace('val_', 'test_')} is measured with {tested}; best_{spec.metric} is the best "
            f"validation value over all epochs, not necessarily that of the tested weights.")


def effects_summary(groups: Sequence[Group], specs: Iterable[SweepSpec]) -> str:
    """What ``specsweep run`` prints after its results table: the effects with intervals
    and what they rest on."""
    specs = list(specs)
    n_pairs = {r["pairs"] for r in effect_rows(groups)}
    few = min(n_pairs) if n_pairs else 0
    notes = [tested_note(s) for s in specs]
    if few == 1:
        notes.append("With one seed per setting there is no interval: an effect needs at least two seeds to be judged.")
    elif 1 < few < 5:
        notes.append(f"With {few} seeds per setting the intervals are wide (t(0.975, {few - 1}) = "
                     f"{stats.t.ppf(0.975, few - 1):.1f}): an effect smaller than the seed-to-seed spread is not "
                     f"resolved; more seeds narrow them.")
    notes += data_notes(specs)
    return "Effects of B, C, D against A (paired by seed, 95 % interval):\n" + effects_console(groups) + "\n" + \
        "\n".join(notes)


def data_notes(specs: Iterable[SweepSpec]) -> List[str]:
    """A line per run whose data or recipe are not the paper's."""
    from specsweep.recipes import RECIPES

    notes = []
    for spec in specs:
        name = spec.data.get("name")
        if name != PAPER_DATA.get(spec.task):
            paper = PAPER_DATA_NAMES[PAPER_DATA[spec.task]] if spec.task in PAPER_DATA else "the paper's data"
            notes.append(f"Data {name} is not {paper} (the paper's data: Speech Commands / TIMIT): effects and "
                         f"verdicts here are about {name}, not the paper's results.")
        if spec.recipe is None or not RECIPES.about(spec.recipe).paper_protocol:
            notes.append(f"{spec.name}: recipe {spec.recipe or 'none'} is not the paper's protocol (recipe: paper).")
    return list(dict.fromkeys(notes))


# --- claims ---------------------------------------------------------------------------------


class ClaimsError(ValueError):
    """The claims file cannot be read or is malformed."""


def load_claims(path: Path = CLAIMS_FILE) -> Optional[List[Dict[str, Any]]]:
    """The claims of ``path`` (specsweep/results/claims.yaml); None when the file is
    missing (an install without the package's data)."""
    if not path.is_file():
        return None
    try:
        claims = yaml.safe_load(path.read_text())["claims"]
    except (OSError, yaml.YAMLError, TypeError, KeyError) as err:
        raise ClaimsError(f"{path} is damaged ({type(err).__name__}: {str(err)[:200]}); it needs a 'claims' list") from None
    if not isinstance(claims, list):
        raise ClaimsError(f"{path}: 'claims' must be a list of claims, got {type(claims).__name__}")
    required = {"id", "text", "task", "metric", "models", "settings", "against", "direction", "figure", "source"}
    for claim in claims:
        missing = required - set(claim) if isinstance(claim, dict) else required
        if missing:
            raise ClaimsError(f"{path}: claim {claim.get('id', '?') if isinstance(claim, dict) else claim!r} lacks "
                              f"{', '.join(sorted(missing))}")
    return claims


def _frontend_value(config: Mapping[str, Any], name: str) -> Any:
    from specsweep.frontends import frontend_argument

    try:
        return frontend_argument(trial_value(config, "frontend") or {}, name)
    except (KeyError, ValueError):
        return None


def _matches(claim: Mapping[str, Any], group: Group) -> bool:
    """Whether ``group``'s trials are a condition ``claim`` speaks of: its task, one of its
    models, its metric, and every ``where`` value (front-end values read with their defaults)."""
    config = group.config
    if trial_value(config, "task") != claim["task"] or group.test_key != claim["metric"]:
        return False
    if trial_value(config, "backbone.name") not in claim["models"]:
        return False
    for key, allowed in (claim.get("where") or {}).items():
        section, _, leaf = key.partition(".")
        value = _frontend_value(config, leaf) if section == "frontend" else _leaves(config).get(key)
        if value not in (allowed if isinstance(allowed, list) else [allowed]):
            return False
    return True


@dataclass
class Comparison:
    """One measured comparison a claim speaks of, and its verdict."""

    group: str
    what: str
    interval: Interval
    verdict: str


def _model_pairs(claim: Mapping[str, Any], groups: Sequence[Group]) -> List[Tuple[Group, Group]]:
    """Pairs (simpler, more complex) of groups alike except in the backbone."""
    simpler, larger = claim["models"]
    by_rest: Dict[str, Dict[str, Group]] = {}
    for g in groups:
        if _matches(claim, g):
            rest = {k: v for k, v in g.label.items() if k != "backbone"}
            by_rest.setdefault(_hashable(rest), {})[trial_value(g.config, "backbone.name")] = g
    return [(pair[simpler], pair[larger]) for pair in by_rest.values() if simpler in pair and larger in pair]


def _gain_difference(small: Group, large: Group, setting: str, against: str) -> Interval:
    """Per seed, the simpler model's gain minus the more complex one's (gains signed so that
    positive is better), over the seeds all four trials have."""
    sign = 1.0 if small.mode == "max" else -1.0
    a, b = small.values.get("test", {}), large.values.get("test", {})
    seeds = set.intersection(*(set(v.get(s, {})) for v in (a, b) for s in (setting, against)))
    diffs = [sign * ((a[setting][seed] - a[against][seed]) - (b[setting][seed] - b[against][seed]))
             for seed in sorted(seeds, key=str)]
    return interval(diffs)


def judge_claim(claim: Mapping[str, Any], groups: Sequence[Group]) -> Dict[str, Any]:
    """The comparisons of ``claim`` in ``groups`` and its overall verdict: supported when
    one comparison supports it (the abstract's figures are the study's best cases),
    contradicted when none does and one goes the other way, else not resolved."""
    comparisons = []
    if claim.get("compare") == "gain_by_model":
        for small, large in _model_pairs(claim, groups):
            rest = label_text({k: v for k, v in small.label.items() if k != "backbone"})
            for s in claim["settings"]:
                iv = _gain_difference(small, large, s, claim["against"])
                if iv.n:
                    what = (f"({s} − {claim['against']}) of {claim['models'][0]} minus that of {claim['models'][1]}, "
                            f"signed better-positive")
                    comparisons.append(Comparison(rest, what, iv, verdict(iv, claim["direction"])))
    else:
        for g in groups:
            if not _matches(claim, g):
                continue
            for e in g.effects():
                if e.setting in claim["settings"] and e.baseline == claim["against"] and e.interval.n:
                    comparisons.append(Comparison(g.title, f"{e.setting} − {e.baseline}", e.interval,
                                                  verdict(e.interval, claim["direction"])))
    verdicts = [c.verdict for c in comparisons]
    overall = (SUPPORTED if SUPPORTED in verdicts else CONTRADICTED if CONTRADICTED in verdicts
               else NOT_RESOLVED if comparisons else "no trials")
    return {"claim": claim, "comparisons": comparisons, "verdict": overall}


def _paper_figure(claim: Mapping[str, Any]) -> str:
    return f"{claim['figure_text']} ({claim['pinned']})" if claim.get("figure_text") else claim.get("pinned", "")


def claims_markdown(groups: Sequence[Group], specs: Sequence[SweepSpec],
                    claims: Optional[List[Dict[str, Any]]]) -> str:
    """The verdict on each claim of specsweep/results/claims.yaml, with the measured effects and the
    paper's figure side by side."""
    if claims is None:
        return f"## The paper's claims\n\n{CLAIMS_FILE} is missing from this install: no verdicts.\n"
    out = ["## The paper's claims (specsweep/results/claims.yaml)\n"]
    out += [f"- {note}" for note in data_notes(specs)]
    out.append("")
    for judged in (judge_claim(c, groups) for c in claims):
        claim = judged["claim"]
        out.append(f"### {claim['id']}: {judged['verdict']}\n")
        out.append(f"Paper: \"{claim['text']}\" — {_paper_figure(claim)}. Source: {claim['source']}.\n")
        if not judged["comparisons"]:
            where = "".join(f", {k} {v}" for k, v in (claim.get("where") or {}).items())
            out.append(f"No finished trials of this claim's comparisons (task {claim['task']}, metric {claim['metric']}, "
                       f"models {', '.join(claim['models'])}{where}) in the run(s).\n")
            continue
        out.append("| group | comparison | measured | 95 % interval | pairs | verdict |")
        out.append("|---|---|---|---|---|---|")
        for c in judged["comparisons"]:
            note = _seeds_note(c.interval) if c.verdict == NOT_RESOLVED else ""
            out.append(f"| {c.group} | {c.what} | {_signed(c.interval.mean)} | {interval_text(c.interval)} | "
                       f"{c.interval.n} | {c.verdict}{note} |")
        out.append("")
    return "\n".join(out)


def claim_markers(groups: Sequence[Group], claims: Optional[List[Dict[str, Any]]]) -> Dict[Tuple[str, str], float]:
    """``{(group title, setting): paper figure}`` for every effect a claim with a figure speaks of."""
    markers: Dict[Tuple[str, str], float] = {}
    for claim in claims or []:
        if claim.get("figure") is None or claim.get("compare") == "gain_by_model":
            continue
        for g in groups:
            if _matches(claim, g):
                for s in claim["settings"]:
                    markers[(g.title, s)] = float(claim["figure"])
    return markers
