"""Paper-style tables and figures from one or several (partly) finished run directories.

Trials are grouped by everything that differs except the setting and the seed
(:mod:`specsweep.results.study`). Per group: a table whose rows are the settings A-D and whose
cells are mean ± std over seeds of the best validation metric over epochs, of the test
metric of the tested weights, and of how far the trainable filterbank and STFT moved
from their initial values (``frontend/*_drift``, ``||W - W0||_F / ||W0||_F``); the effects
of B, C, D against A paired by seed with 95 % intervals; and the verdict on each claim of
specsweep/results/claims.yaml. Figures: the effects as a forest plot, the test metric over a numeric
group value (n_mels), the best trial's learned filterbank per group and setting.
"""

from __future__ import annotations

import csv
import io
import pickle
import uuid
import shlex
import statistics
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from specsweep.layout import TESTED_FILE  # noqa: E402
from specsweep.rundir import (CHECKPOINTS, REPORT_DIR, DamagedFileError, RunLocation, first_line, load_run,  # noqa: E402
                              read_bounded, trial_folder)
from specsweep.spec import SweepSpec  # noqa: E402
from specsweep.results.study import (DRIFT_KEYS, ClaimsError, Group, Run, claim_markers, claims_markdown,  # noqa: E402
                             effect_rows, effects_markdown, format_value, group_trials, load_claims, tested_note)


def protocol_line(spec: SweepSpec) -> str:
    """What protocol the run followed: recipe, training values, data protocol, tested weights."""
    from specsweep.recipes import RECIPES

    t = spec.train
    recipe = "no recipe" if spec.recipe is None else f"recipe {spec.recipe} ({RECIPES.about(spec.recipe).description})"
    data = ", ".join(f"{k} {v}" for k, v in spec.data.items() if k in ("name", "test_set", "protocol"))
    tested = "the last epoch's weights" if t.test_weights == "last" else f"the best epoch's weights by {t.best_by or spec.metric}"
    return (f"Protocol: {recipe}; {t.optimizer} lr {t.lr:g}, {t.schedule} schedule, {t.epochs} epochs, "
            f"batch {t.batch_size}; data: {data}; tested with {tested}.")


class ReportError(RuntimeError):
    """A report cannot be written: its output folder is unusable or a run is damaged."""


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.4f} ± {std:.4f} (n={len(values)})"


def _kinds(group: Group) -> Dict[str, str]:
    """Column kind -> its heading in a group's table; drifts only where a trial has one."""
    kinds = {"val": f"best_{group.metric} (best over epochs)", "test": f"{group.test_key} (tested weights)"}
    kinds.update({kind: key for kind, key in DRIFT_KEYS.items() if group.values.get(kind)})
    return kinds


def group_markdown(group: Group) -> str:
    """A group's table (one row per setting, mean ± std over seeds) and its effects."""
    kinds = _kinds(group)
    lines = [f"### {group.title}\n", f"{len(group.trials)} finished trials of run {group.run.name}; mean ± std over "
             f"seeds (drift: 0 for a fixed basis, ||W - W0|| / ||W0|| for a trained one).\n",
             "| setting | " + " | ".join(kinds.values()) + " |", "|---|" + "---|" * len(kinds)]
    for s in group.settings():
        lines.append(f"| {s} | " + " | ".join(_cell(list(group.values[kind].get(s, {}).values())) for kind in kinds) + " |")
    return "\n".join(lines) + "\n\n" + effects_markdown(group)


def label_names(groups: Sequence[Group]) -> List[str]:
    """The label keys of the groups, in order (every group has the same ones)."""
    return list(dict.fromkeys(k for g in groups for k in g.label))


def write_csv(groups: Sequence[Group], path: Path) -> None:
    """One row per group, setting and metric: mean, std and number of seeds."""
    names = label_names(groups)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "setting", "metric", "mean", "std", "n"])
        for g in groups:
            keys = {"val": f"best_{g.metric}", "test": g.test_key, **DRIFT_KEYS}
            for s in g.settings():
                for kind, key in keys.items():
                    values = list(g.values.get(kind, {}).get(s, {}).values())
                    if values:
                        mean, std = _mean_std(values)
                        writer.writerow([*(format_value(g.label.get(n)) for n in names), s, key, f"{mean:.6f}",
                                         f"{std:.6f}", len(values)])


EFFECT_CSV = ["metric", "setting", "baseline", "effect", "low", "high", "pairs", "method", "reading", "unpaired"]


def write_effects_csv(groups: Sequence[Group], path: Path) -> None:
    """One row per group and setting B-D: the paired effect against A and its interval."""
    names = label_names(groups)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, *EFFECT_CSV])
        for r in effect_rows(groups):
            writer.writerow([*(format_value(r["label"].get(n)) for n in names), r["metric"], r["setting"], r["baseline"],
                             f"{r['effect']:.6f}", _number(r["low"]), _number(r["high"]), r["pairs"], r["method"],
                             r["reading"], "; ".join(r["unpaired"])])


def _number(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6f}"


def _numeric_key(groups: Sequence[Group]) -> Optional[str]:
    """A group value that is a number in every group (n_mels) with at least two values."""
    for name in label_names(groups):
        values = [g.label.get(name) for g in groups]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) > 1:
            return name
    return None


def plot_metric_vs_numeric(groups: Sequence[Group], path: Path) -> Optional[Path]:
    """Test metric against a numeric group value (n_mels): one line per setting and per
    combination of the other group values."""
    key = _numeric_key(groups)
    if key is None:
        return None
    series = _series_over(groups, key, spread=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        xs = sorted(points)
        ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], marker="o", capsize=3, label=name)
    ax.set_xlabel(key)
    ax.set_ylabel(groups[0].test_key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _series_over(groups: Sequence[Group], key: str, spread: bool = False) -> Dict[str, Dict[Any, Any]]:
    """``{"setting S (other group values)": {value of key: mean test metric}}`` (with
    ``spread``: ``(mean, std)``) over the groups, one series per setting and combination of
    the group values other than ``key``."""
    series: Dict[str, Dict[Any, Any]] = {}
    for g in groups:
        rest = ", ".join(f"{k}={format_value(v)}" for k, v in g.label.items() if k != key)
        for s in g.settings():
            values = list(g.values["test"].get(s, {}).values())
            if values:
                mean, std = _mean_std(values)
                series.setdefault(f"setting {s}" + (f" ({rest})" if rest else ""), {})[g.label[key]] = (
                    (mean, std) if spread else mean)
    return series


def plot_effects(groups: Sequence[Group], claims: Optional[List[Dict[str, Any]]], path: Path) -> Optional[Path]:
    """Forest plot: one row per group and setting B-D, the paired effect against A with its
    95 % interval, a line at 0, and the paper's figure (a red diamond) where a claim of
    specsweep/results/claims.yaml gives one for that comparison. One panel per test metric."""
    rows = [r for r in effect_rows(groups) if r["pairs"]]
    if not rows:
        return None
    markers = claim_markers(groups, claims)
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    heights = [sum(r["metric"] == m for r in rows) for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 1.4 + 0.45 * sum(heights) + 0.6 * len(metrics)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        mine = [r for r in rows if r["metric"] == metric]
        ys = list(range(len(mine)))[::-1]
        for y, r in zip(ys, mine):
            if r["low"] is not None:
                ax.plot([r["low"], r["high"]], [y, y], color="tab:blue", linewidth=2)
            ax.plot(r["effect"], y, "o", color="tab:blue")
            figure = markers.get((r["group"], r["setting"]))
            if figure is not None:
                ax.plot(figure, y, "D", color="tab:red", markersize=6,
                        label="paper's figure (abstract)" if not ax.get_legend_handles_labels()[0] else None)
        ax.axvline(0, color="0.3", linewidth=1)
        # Room on both sides of 0 and of the paper's markers, and below the rows for the legend.
        ax.margins(x=0.12)
        ax.set_ylim(-1, len(mine))
        ax.set_yticks(ys)
        ax.set_yticklabels([f"{r['group']}:\n{r['setting']} − A (n={r['pairs']})" for r in mine], fontsize=7)
        better = "higher" if mine[0]["mode"] == "max" else "lower"
        ax.set_xlabel(f"{metric}: setting − A, paired by seed, 95 % interval ({better} is better)")
        ax.grid(axis="x", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _best_trial_per_setting(group: Group) -> Dict[str, Dict[str, Any]]:
    """The trial with the best validation value of each setting of a group."""
    key = f"best_{group.metric}"
    best: Dict[str, Dict[str, Any]] = {}
    for t in group.trials:
        value = t["metrics"].get(key)
        if not isinstance(value, (int, float)):
            continue
        s = group.run.spec.describe(t["config"])["setting"]
        current = best.get(s)
        if current is None or (value > current["metrics"][key] if group.mode == "max" else value < current["metrics"][key]):
            best[s] = t
    return best


def _initial_filterbank(run_dir: RunLocation, trial_dir: str) -> Optional[torch.Tensor]:
    """The filterbank a trial started from, as its latest Tune checkpoint keeps it (the
    ``FrontendFigures`` callback's state); None where no checkpoint holds a readable one:
    the figure then has no dashed line, and the report goes on."""
    checkpoints = run_dir.glob(f"{trial_dir}/{CHECKPOINTS}")
    if not checkpoints:
        return None
    try:
        state = torch.load(io.BytesIO(read_bounded(run_dir, checkpoints[-1])), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, DamagedFileError):
        return None
    callbacks = state.get("callbacks") if isinstance(state, dict) else None
    figures = callbacks.get("FrontendFigures") if isinstance(callbacks, dict) else None
    initial = figures.get("initial") if isinstance(figures, dict) else None
    bank = initial.get("filterbank") if isinstance(initial, dict) else None
    return bank if isinstance(bank, torch.Tensor) and bank.dim() == 2 else None


def _learned_filterbank(run_dir: RunLocation, trial: Dict[str, Any],
                        spec: SweepSpec) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """``(tested, initial)`` filterbanks ``(n_bins, n_freq)`` of a finished trial: the
    tested weights' (:func:`~specsweep.results.export.tested_model`, as ``load_trial`` and
    ``export`` read them), over the one it started from; None for a trial folder holding
    no weights at all (nothing to draw)."""
    from specsweep.results.export import TrialLoadError, tested_model

    folder = trial_folder(trial["id"])
    if not (run_dir.is_file(f"{folder}/{TESTED_FILE}") or run_dir.glob(f"{folder}/{CHECKPOINTS}")):
        return None
    try:
        model = tested_model(run_dir, trial, spec)
    except TrialLoadError as err:
        raise ReportError(f"{err}; the tables are written, the filterbank figure needs it") from None
    return model.frontend.filterbank().detach(), _initial_filterbank(run_dir, folder)


def plot_best_filterbanks(groups: Sequence[Group], path: Path) -> Optional[Path]:
    """The learned filterbank of each group's best trial per setting (one row of panels per
    group), over its initial filterbank (dashed grey)."""
    panels = []
    for g in groups:
        best = _best_trial_per_setting(g)
        banks = {s: _learned_filterbank(g.run.location, t, g.run.spec) for s, t in sorted(best.items())}
        row = [(s, best[s], b) for s, b in banks.items() if b is not None]
        if row:
            panels.append((g, row))
    if not panels:
        return None
    columns = max(len(row) for _, row in panels)
    fig, axes = plt.subplots(len(panels), columns, figsize=(4 * columns, 3.2 * len(panels)), squeeze=False)
    for r, (g, row) in enumerate(panels):
        for c in range(columns):
            axes[r][c].set_visible(c < len(row))
        for ax, (s, trial, (bank, initial)) in zip(axes[r], row):
            if initial is not None and initial.shape == bank.shape:
                for line in initial:
                    ax.plot(line.numpy(), color="0.6", linewidth=0.8, linestyle="--")
            for line in bank:
                ax.plot(line.numpy(), linewidth=0.8)
            drift = trial["metrics"].get(DRIFT_KEYS["filterbank_drift"])
            title = f"{g.title}\nsetting {s} (best trial {trial['id']})"
            ax.set_title(title if drift is None else f"{title}, drift {drift:.3f}", fontsize=8)
            ax.set_xlabel("STFT bin")
        axes[r][0].set_ylabel("weight (dashed grey: initial)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def read_runs(run_dirs: Sequence[Union[Path, str, RunLocation]]) -> List[Run]:
    """Spec and trials of each run directory, named by folder (by path where two share a name)."""
    from specsweep.results.status import DamagedRunError, read_trials

    locations = [RunLocation(r) for r in run_dirs]
    names = [loc.name for loc in locations]
    runs = []
    for loc, name in zip(locations, names):
        spec = load_run(loc)
        try:
            trials = read_trials(loc)
        except DamagedRunError as err:
            raise ReportError(f"{err}\nno report from a damaged run: `specsweep status {shlex.quote(str(loc))}` shows "
                              f"what can still be read") from None
        runs.append(Run(name if names.count(name) == 1 else str(loc), spec, trials, loc))
    if len({str(loc) for loc in locations}) < len(locations):
        raise ReportError("a run directory is given twice: give each once")
    return runs


def _header(runs: Sequence[Run]) -> str:
    lines = []
    for run in runs:
        spec = run.spec
        finished = sum(t["status"] == "TERMINATED" for t in run.trials)
        title = f"# {spec.name}: {spec.description}" if len(runs) == 1 else f"## Run {run.name}: {spec.name}"
        lines.append(f"{title}\n\n{run.location}: {finished}/{len(run.trials)} trials finished; task {spec.task}, "
                     f"metric {spec.metric} ({spec.mode}).\n\n{protocol_line(spec)} {tested_note(spec, weights=False)}\n")
    if len(runs) > 1:
        lines.insert(0, f"# Report of {len(runs)} runs: {', '.join(r.name for r in runs)}\n")
    return "\n".join(lines) + "\n"


def build_report(run_dirs: Union[Path, str, RunLocation, Sequence[Union[Path, str, RunLocation]]],
                 out: Optional[Path] = None, wandb: bool = False) -> Dict[str, Any]:
    """Write ``report.md``, ``report.csv``, ``effects.csv`` and the PNGs of one or several run
    directories to the local folder ``out`` (default: ``RUN_DIR/report`` of one local run
    directory); return their paths.

    With the (first) sweep's W&B mode online the report is also a W&B run in the sweep's group
    (:func:`publish_to_wandb`); with ``wandb`` an offline one too (under ``out/wandb``, to
    upload with ``wandb sync``). ``"wandb"`` in the result is then that run's URL or the
    ``wandb sync`` command that uploads it."""
    from specsweep import tracking

    if isinstance(run_dirs, (str, Path, RunLocation)):
        run_dirs = [run_dirs]
    first = RunLocation(run_dirs[0])
    if out is None and len(run_dirs) > 1:
        raise ReportError(f"{len(run_dirs)} run directories: give a local folder (--out) for their report")
    if out is None and not first.is_local:
        raise ReportError(f"{first} is in cloud storage: give a local folder (--out) for the report")
    out = Path(out) if out else Path(first.path) / REPORT_DIR
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder for the report's files")
    runs = read_runs(run_dirs)
    try:
        claims = load_claims()
    except ClaimsError as err:
        raise ReportError(str(err)) from None
    # A folder where a report file belongs (report.md, a figure) is named before anything is written.
    taken = sorted(p for p in out.glob("*") if p.suffix in (".md", ".csv", ".png") and not p.is_file()) if out.is_dir() else []
    if taken:
        raise ReportError(f"{taken[0]} is not a file, where the report writes one; move it aside")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"--out {out}: cannot create the folder ({err.strerror})") from None
    groups = group_trials(runs)
    body = "\n".join(group_markdown(g) for g in groups) or "No finished trials.\n"
    files = {"markdown": out / "report.md", "csv": out / "report.csv", "effects_csv": out / "effects.csv"}
    files["markdown"].write_text(_header(runs) + "## Results per group\n\n" + body + "\n"
                                 + claims_markdown(groups, [r.spec for r in runs], claims))
    write_csv(groups, files["csv"])
    write_effects_csv(groups, files["effects_csv"])
    figures = {"effects": plot_effects(groups, claims, out / "effects.png")}
    key = _numeric_key(groups)
    if key:
        figures["metric_plot"] = plot_metric_vs_numeric(groups, out / f"{groups[0].test_key}_vs_{key}.png")
    figures["filterbanks"] = plot_best_filterbanks(groups, out / "best_filterbanks.png")
    files.update({kind: path for kind, path in figures.items() if path})
    spec = runs[0].spec
    mode = tracking.resolve_mode(spec.wandb.mode)
    result: Dict[str, Any] = dict(files)
    if mode == "online" or (wandb and mode == "offline"):
        result["wandb"] = publish_to_wandb(runs, groups, files, mode)
    return result


def side_by_side(groups: Sequence[Group]) -> Tuple[List[str], List[List[Any]]]:
    """``(columns, rows)``: one row per group and setting with the group's values, the mean
    over seeds of each metric (best validation over epochs, test, drifts) and the setting's
    effect against A on the test metric (mean, 95 % interval, pairs, method, reading)."""
    names = label_names(groups)
    metrics = list(dict.fromkeys(key for g in groups for key in (f"best_{g.metric}", g.test_key)))
    columns = [*names, "setting", *metrics, *DRIFT_KEYS.values(), "effect vs A", "effect low", "effect high",
               "pairs", "method", "reading"]
    effects = {(r["group"], r["setting"]): r for r in effect_rows(groups)}
    rows = []
    for g in groups:
        keys = {f"best_{g.metric}": "val", g.test_key: "test", **{v: k for k, v in DRIFT_KEYS.items()}}
        for s in g.settings():
            means = [_mean_or_none(g, keys.get(m), s) for m in [*metrics, *DRIFT_KEYS.values()]]
            e = effects.get((g.title, s), {})
            rows.append([*(format_value(g.label.get(n)) for n in names), s, *means, e.get("effect"), e.get("low"),
                         e.get("high"), e.get("pairs"), e.get("method"), e.get("reading")])
    return columns, rows


def _mean_or_none(group: Group, kind: Optional[str], setting: str) -> Optional[float]:
    values = list(group.values.get(kind, {}).get(setting, {}).values()) if kind else []
    return _mean_std(values)[0] if values else None


def publish_to_wandb(runs: Sequence[Run], groups: Sequence[Group], files: Dict[str, Path], mode: str) -> str:
    """Log the report as one W&B run in the (first) sweep's group (``job_type: report``)
    beside its trials: the settings side by side with their effects against A (a table with
    one row per group and setting), the effects table, the long table of ``report.csv``, the
    figures, a chart of the test metric per setting (bars for one group, lines over a numeric
    group value), and the test metric and effects in the summary. Returns the run's URL, or
    offline the ``wandb sync`` command that uploads it."""
    import wandb

    from specsweep import tracking

    tables = {}
    for kind in ("csv", "effects_csv"):
        with open(files[kind]) as f:
            rows = list(csv.reader(f))
        tables[kind] = wandb.Table(columns=rows[0], data=rows[1:])
    columns, rows = side_by_side(groups)
    first, spec = runs[0], runs[0].spec
    test_key = groups[0].test_key if groups else spec.test_metric
    # tracking's init: an online report whose server fails falls back to offline, as trials do.
    settings = tracking.WandbSettings(project=spec.wandb.project, entity=spec.wandb.entity,
                                      group=spec.wandb.group or first.name, mode=mode, tags=spec.wandb.tags)
    # A new W&B run per report: an id of its own (a trial's is stable, for resuming it).
    run = tracking.init_run(settings, files["csv"].parent, f"report-{uuid.uuid4().hex[:12]}", f"{first.name}-report",
                            {"sweep": spec.name, "metric": spec.metric, "mode": spec.mode,
                             "protocol": protocol_line(spec), "runs": [r.name for r in runs]}, [], job_type="report")
    try:
        table = wandb.Table(columns=columns, data=rows)
        logged: Dict[str, Any] = {"settings": table, "results": tables["csv"], "effects_table": tables["effects_csv"],
                                  **{kind: wandb.Image(str(p)) for kind, p in files.items() if p.suffix == ".png"}}
        key = _numeric_key(groups)
        if key:
            xs = sorted({g.label[key] for g in groups})
            lines = _series_over(groups, key)
            logged[f"{test_key}_vs_{key}"] = wandb.plot.line_series(
                xs=xs, ys=[[_nan_if_none(points.get(x)) for x in xs] for points in lines.values()], keys=list(lines),
                title=f"{test_key} over {key}", xname=key)
        elif len(groups) == 1:
            logged[f"{test_key}_by_setting"] = wandb.plot.bar(table, "setting", test_key, title=f"{test_key} by setting")
        run.log(logged)
        for g in groups:
            suffix = "" if len(groups) == 1 else f"/{g.title}"
            for s in g.settings():
                mean = _mean_or_none(g, "test", s)
                if mean is not None:
                    run.summary[f"{g.test_key}/{s}{suffix}"] = mean
            for e in g.effects():
                run.summary[f"effect/{g.test_key}/{e.setting}-{e.baseline}{suffix}"] = e.interval.mean
        where = tracking.sync_command([Path(run.dir).parent]) if run.offline else run.url
    finally:
        run.finish()
        # The service this run started would outlive it, and processes started from this one
        # later (Ray workers) would find it through WANDB_SERVICE and use it.
        wandb.teardown()
    return where


def _nan_if_none(value: Optional[float]) -> float:
    # A line chart leaves a gap at NaN where a setting has no result at that value.
    return float("nan") if value is None else value


def report_command(args: Any) -> int:
    """``specsweep report``: build the report of ``args.run_dirs`` into ``args.out`` and print it."""
    run_dirs = [RunLocation(r) for r in args.run_dirs]
    if args.out or (len(run_dirs) == 1 and run_dirs[0].is_local):
        files = build_report(run_dirs, args.out, wandb=args.wandb)
        _print_report(files, {kind: str(path) for kind, path in files.items() if kind != "wandb"})
        return 0
    if len(run_dirs) > 1:
        raise ReportError(f"{len(run_dirs)} run directories: give a local folder (--out) for their report")
    (run_dir,) = run_dirs
    if args.wandb:
        raise ReportError(f"{run_dir} is in cloud storage: give a local folder (--out) to keep the offline W&B run of "
                          f"the report in")
    # The report of a run directory in cloud storage is written there, like its other artifacts.
    with tempfile.TemporaryDirectory() as tmp:
        files = build_report(run_dir, Path(tmp))
        run_dir.upload(Path(tmp), REPORT_DIR)
        _print_report(files, {kind: str(run_dir.child(f"{REPORT_DIR}/{path.name}")) for kind, path in files.items()
                              if kind != "wandb"})
    return 0


def _print_report(files: Dict[str, Any], shown: Dict[str, str]) -> None:
    print(files["markdown"].read_text())
    for kind, where in shown.items():
        print(f"{kind}: {where}")
    if "wandb" in files:
        print(f"W&B: {files['wandb']}")
