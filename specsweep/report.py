"""Paper-style tables and figures from a finished (or partly finished) run directory.

Rows are the settings A-D, columns the swept value (n_mels, mask range, front-end,
backbone, ...), cells mean ± std over seeds of the best validation metric, of the test
metric, and of how far the trainable filterbank and STFT moved from their initial values
(``frontend/*_drift``, ``||W - W0||_F / ||W0||_F``).
"""

from __future__ import annotations

import csv
import io
import pickle
import shlex
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from specsweep.frontends.base import SETTINGS  # noqa: E402
from specsweep.rundir import (CHECKPOINTS, REPORT_DIR, DamagedFileError, RunLocation, first_line, load_run,  # noqa: E402
                              read_bounded, trial_folder)
from specsweep.spec import SweepSpec  # noqa: E402
from specsweep.status import describe_config  # noqa: E402

DRIFT_KEYS = {"filterbank_drift": "frontend/filterbank_drift", "stft_drift": "frontend/stft_drift"}


def protocol_line(spec: SweepSpec) -> str:
    """What protocol the run followed: recipe, training values, data protocol, tested weights."""
    from specsweep.recipes import RECIPES

    t = spec.train
    recipe = "no recipe" if spec.recipe is None else f"recipe {spec.recipe} ({RECIPES.get(spec.recipe).description})"
    data = ", ".join(f"{k} {v}" for k, v in spec.data.items() if k in ("name", "test_set", "protocol"))
    tested = "the last epoch's weights" if t.test_weights == "last" else f"the best epoch's weights by {t.best_by or spec.metric}"
    return (f"Protocol: {recipe}; {t.optimizer} lr {t.lr:g}, {t.schedule} schedule, {t.epochs} epochs, "
            f"batch {t.batch_size}; data: {data}; tested with {tested}.")


class ReportError(RuntimeError):
    """A report cannot be written: its output folder is unusable or the run is damaged."""


def _column_key(spec: SweepSpec) -> Optional[str]:
    """The swept key that becomes the table's columns: the first non-setting dimension."""
    keys = [k for k in spec.search.space if k != "frontend.setting"]
    if not keys:
        return None
    section, leaf = keys[0].split(".", 1)
    return section if leaf == "name" else leaf


def _label(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_label(v) for v in value) if value and isinstance(value[0], list) else "-".join(map(str, value))
    return str(value)


def _mean_std(values: List[float]) -> Tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(trials: List[Dict[str, Any]], spec: SweepSpec) -> Dict[str, Any]:
    """Group finished trials by (setting, column value) over seeds."""
    column = _column_key(spec)
    val_key, test_key = f"best_{spec.metric}", spec.metric.replace("val_", "test_")
    keys = {"val": val_key, "test": test_key, **DRIFT_KEYS}
    groups: Dict[Tuple[str, str], Dict[str, List[float]]] = defaultdict(lambda: {kind: [] for kind in keys})
    raw_columns: Dict[str, Any] = {}
    for t in trials:
        if t["status"] != "TERMINATED":
            continue
        described = describe_config(t["config"], spec)
        col_value = described.get(column) if column else "all"
        col = _label(col_value)
        raw_columns[col] = col_value
        cell = groups[(described["setting"], col)]
        for kind, key in keys.items():
            if isinstance(t["metrics"].get(key), (int, float)):
                cell[kind].append(float(t["metrics"][key]))
    columns = sorted(raw_columns, key=lambda c: (not isinstance(raw_columns[c], (int, float)), raw_columns[c]
                                                  if isinstance(raw_columns[c], (int, float)) else c))
    return {"column": column or "sweep", "columns": columns, "raw_columns": raw_columns, "groups": groups,
            "keys": keys, "val_key": val_key, "test_key": test_key}


def _cell(values: List[float]) -> str:
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.4f} ± {std:.4f} (n={len(values)})"


def markdown_tables(agg: Dict[str, Any]) -> str:
    out = []
    for kind, title in agg["keys"].items():
        if kind in DRIFT_KEYS and not any(cell[kind] for cell in agg["groups"].values()):
            continue
        note = " (0: fixed; ||W - W0|| / ||W0||)" if kind in DRIFT_KEYS else ""
        out.append(f"### {title} (mean ± std over seeds){note}\n")
        out.append("| setting | " + " | ".join(f"{agg['column']}={c}" for c in agg["columns"]) + " |")
        out.append("|---|" + "---|" * len(agg["columns"]))
        for s in SETTINGS:
            if any((s, c) in agg["groups"] for c in agg["columns"]):
                out.append(f"| {s} | " + " | ".join(_cell(agg["groups"].get((s, c), {}).get(kind, []))
                                                    for c in agg["columns"]) + " |")
        out.append("")
    return "\n".join(out)


def write_csv(agg: Dict[str, Any], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", agg["column"], "metric", "mean", "std", "n"])
        for (setting, col), cell in sorted(agg["groups"].items()):
            for kind, key in agg["keys"].items():
                if cell[kind]:
                    mean, std = _mean_std(cell[kind])
                    writer.writerow([setting, col, key, f"{mean:.6f}", f"{std:.6f}", len(cell[kind])])


def _numeric_columns(agg: Dict[str, Any]) -> List[str]:
    """The swept values that are numbers (n_mels), which a line over them can show."""
    return [c for c in agg["columns"] if isinstance(agg["raw_columns"][c], (int, float))]


def plot_metric_vs_column(agg: Dict[str, Any], path: Path) -> Optional[Path]:
    """Test metric against a numeric swept value (n_mels), one line per setting."""
    numeric = _numeric_columns(agg)
    if len(numeric) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in SETTINGS:
        points = [(agg["raw_columns"][c], _mean_std(agg["groups"][(s, c)]["test"]))
                  for c in numeric if agg["groups"].get((s, c), {}).get("test")]
        if points:
            xs = [p[0] for p in points]
            ax.errorbar(xs, [p[1][0] for p in points], yerr=[p[1][1] for p in points], marker="o", capsize=3,
                        label=f"setting {s}")
    ax.set_xlabel(agg["column"])
    ax.set_ylabel(agg["test_key"])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _best_trial_per_setting(trials: List[Dict[str, Any]], spec: SweepSpec) -> Dict[str, Dict[str, Any]]:
    key = f"best_{spec.metric}"
    best: Dict[str, Dict[str, Any]] = {}
    for t in trials:
        value = t["metrics"].get(key)
        if t["status"] != "TERMINATED" or not isinstance(value, (int, float)):
            continue
        s = describe_config(t["config"], spec)["setting"]
        current = best.get(s)
        if current is None or (value > current["metrics"][key] if spec.mode == "max" else value < current["metrics"][key]):
            best[s] = t
    return best


def tested_state(run_dir: RunLocation, trial_dir: str) -> Optional[Dict[str, Any]]:
    """From the latest Tune checkpoint in ``run_dir``'s folder ``trial_dir``:
    ``{"weights": ..., "initial_filterbank": ...}``, the weights the trial tests (its best
    epoch's when it keeps them, else the latest) and the filterbank it started from."""
    checkpoints = run_dir.glob(f"{trial_dir}/{CHECKPOINTS}")
    if not checkpoints:
        return None
    try:
        state = torch.load(io.BytesIO(read_bounded(run_dir, checkpoints[-1])), map_location="cpu", weights_only=True)
        callbacks = state.get("callbacks", {}) if isinstance(state, dict) else None
        if not (isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and isinstance(callbacks, dict)
                and all(isinstance(c, dict) for c in callbacks.values())):
            raise RuntimeError(f"a {type(state).__name__}, not a Lightning checkpoint")
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, DamagedFileError) as err:
        raise ReportError(f"{run_dir.child(checkpoints[-1]).display} is damaged ({str(err).splitlines()[0]}); the tables "
                          f"are written, the filterbank figure needs it: move that checkpoint folder aside to draw "
                          f"the others") from None
    kept = [c["weights"] for k, c in callbacks.items() if k.startswith("BestWeights") and c.get("weights")]
    initial = callbacks.get("FrontendFigures", {}).get("initial", {}).get("filterbank")
    return {"weights": kept[0] if kept else state["state_dict"], "initial_filterbank": initial}


def _learned_filterbank(run_dir: RunLocation, trial: Dict[str, Any]) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """``(learned, initial)`` filterbanks ``(n_bins, n_freq)`` of a finished trial."""
    from specsweep.assembly import build_model_for
    from specsweep.data.datasets import describe_dataset
    from specsweep.spec import TrialConfig

    state = tested_state(run_dir, trial_folder(trial["id"]))
    if state is None:
        return None
    where = run_dir.child(trial_folder(trial["id"])).display
    try:
        config = TrialConfig.model_validate(trial["config"])
        model = build_model_for(config, describe_dataset(config.data))
        weights = state["weights"]
        model.load_state_dict({k.removeprefix("net."): v for k, v in weights.items() if k.startswith("net.")})
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as err:
        # A config or weights that no model of this version takes (damaged, or another version's).
        raise ReportError(f"{where}: its config or checkpoint does not make a model ({first_line(err)[:200]}); the "
                          f"tables are written, the filterbank figure needs it") from None
    return model.frontend.filterbank().detach(), state["initial_filterbank"]


def plot_best_filterbanks(run_dir: RunLocation, trials: List[Dict[str, Any]], spec: SweepSpec, path: Path) -> Optional[Path]:
    best = _best_trial_per_setting(trials, spec)
    banks = {s: _learned_filterbank(run_dir, t) for s, t in sorted(best.items())}
    banks = {s: b for s, b in banks.items() if b is not None}
    if not banks:
        return None
    fig, axes = plt.subplots(1, len(banks), figsize=(4 * len(banks), 3.2), squeeze=False)
    for ax, (s, (bank, initial)) in zip(axes[0], banks.items()):
        if initial is not None and initial.shape == bank.shape:
            for row in initial:
                ax.plot(row.numpy(), color="0.6", linewidth=0.8, linestyle="--")
        for row in bank:
            ax.plot(row.numpy(), linewidth=0.8)
        drift = best[s]["metrics"].get(DRIFT_KEYS["filterbank_drift"])
        title = f"setting {s} (best trial {best[s]['id']})"
        ax.set_title(title if drift is None else f"{title}\nfilterbank drift {drift:.3f}", fontsize=9)
        ax.set_xlabel("STFT bin")
    axes[0][0].set_ylabel("weight (dashed grey: initial)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build_report(run_dir: Union[Path, str, RunLocation], out: Optional[Path] = None,
                 wandb: bool = False) -> Dict[str, Any]:
    """Write ``report.md``, ``report.csv`` and the PNGs to the local folder ``out``
    (default: ``RUN_DIR/report`` of a local run directory); return their paths.

    With the sweep's W&B mode online the report is also a W&B run in the sweep's group
    (:func:`publish_to_wandb`); with ``wandb`` an offline one too (under ``out/wandb``, to
    upload with ``wandb sync``). ``"wandb"`` in the result is then that run's URL or the
    ``wandb sync`` command that uploads it."""
    from specsweep import tracking
    from specsweep.status import DamagedRunError, read_trials

    run_dir = RunLocation(run_dir)
    spec = load_run(run_dir)
    if out is None and not run_dir.is_local:
        raise ReportError(f"{run_dir} is in cloud storage: give a local folder (--out) for the report")
    out = Path(out) if out else Path(run_dir.path) / REPORT_DIR
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder for the report's files")
    try:
        trials = read_trials(run_dir)
    except DamagedRunError as err:
        raise ReportError(f"{err}\nno report from a damaged run: `specsweep status {shlex.quote(str(run_dir))}` shows what can "
                          f"still be read") from None
    # A folder where a report file belongs (report.md, a figure) is named before anything is written.
    taken = sorted(p for p in out.glob("*") if p.suffix in (".md", ".csv", ".png") and not p.is_file()) if out.is_dir() else []
    if taken:
        raise ReportError(f"{taken[0]} is not a file, where the report writes one; move it aside")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"--out {out}: cannot create the folder ({err.strerror})") from None
    agg = aggregate(trials, spec)
    finished = sum(t["status"] == "TERMINATED" for t in trials)
    header = (f"# {spec.name}: {spec.description}\n\n{finished}/{len(trials)} trials finished; task {spec.task}, "
              f"metric {spec.metric} ({spec.mode}).\n\n{protocol_line(spec)}\n\n")
    files = {"markdown": out / "report.md", "csv": out / "report.csv"}
    files["markdown"].write_text(header + markdown_tables(agg))
    write_csv(agg, files["csv"])
    plot = plot_metric_vs_column(agg, out / f"{spec.metric.replace('val_', 'test_')}_vs_{agg['column']}.png")
    if plot:
        files["metric_plot"] = plot
    banks = plot_best_filterbanks(run_dir, trials, spec, out / "best_filterbanks.png")
    if banks:
        files["filterbanks"] = banks
    mode = tracking.resolve_mode(spec.wandb.mode)
    result: Dict[str, Any] = dict(files)
    if mode == "online" or (wandb and mode == "offline"):
        result["wandb"] = publish_to_wandb(spec, run_dir, agg, files, mode)
    return result


def side_by_side(agg: Dict[str, Any]) -> Tuple[List[str], List[List[Any]]]:
    """``(columns, rows)``: one row per setting, and per metric (validation, test, drifts)
    and swept value a column of its mean over seeds, so that settings A-D compare along a
    row of columns."""
    settings = [s for s in SETTINGS if any((s, c) in agg["groups"] for c in agg["columns"])]
    single = agg["columns"] == ["all"]
    columns = ["setting"] + [key if single else f"{key} {agg['column']}={c}"
                             for key in agg["keys"].values() for c in agg["columns"]]
    rows = [[setting, *(_cell_mean(agg, setting, c, kind) for kind in agg["keys"] for c in agg["columns"])]
            for setting in settings]
    return columns, rows


def _cell_mean(agg: Dict[str, Any], setting: str, column: str, kind: str) -> Optional[float]:
    """Mean over seeds of metric ``kind`` of a setting at a swept value; None without results."""
    values = agg["groups"].get((setting, column), {}).get(kind, [])
    return _mean_std(values)[0] if values else None


def publish_to_wandb(spec: SweepSpec, run_dir: RunLocation, agg: Dict[str, Any], files: Dict[str, Path],
                     mode: str) -> str:
    """Log the report as one W&B run in the sweep's group (``job_type: report``) beside its
    trials: the settings side by side (a table with one row per setting, and a chart of the
    test metric per setting: bars, or lines over a numeric swept value), the long table of
    ``report.csv``, the figures, and the test metric per setting in the summary. Returns
    the run's URL, or offline the ``wandb sync`` command that uploads it."""
    import wandb

    from specsweep import tracking

    with open(files["csv"]) as f:
        long_rows = list(csv.reader(f))
    columns, rows = side_by_side(agg)
    test_key = agg["test_key"]
    run = wandb.init(project=spec.wandb.project, entity=spec.wandb.entity, group=spec.wandb.group or run_dir.name,
                     name=f"{run_dir.name}-report", job_type="report", dir=str(files["csv"].parent), mode=mode,
                     tags=spec.wandb.tags, config={"sweep": spec.name, "metric": spec.metric, "mode": spec.mode,
                                                   "protocol": protocol_line(spec)},
                     reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"))
    try:
        table = wandb.Table(columns=columns, data=rows)
        logged: Dict[str, Any] = {"settings": table, "results": wandb.Table(columns=long_rows[0], data=long_rows[1:]),
                                  **{kind: wandb.Image(str(p)) for kind, p in files.items() if p.suffix == ".png"}}
        numeric = _numeric_columns(agg)
        if len(numeric) > 1:
            logged[f"{test_key}_vs_{agg['column']}"] = wandb.plot.line_series(
                xs=[agg["raw_columns"][c] for c in numeric], keys=[f"setting {r[0]}" for r in rows],
                ys=[[_nan_if_none(_cell_mean(agg, r[0], c, "test")) for c in numeric] for r in rows],
                title=f"{test_key} over {agg['column']}", xname=agg["column"])
        elif agg["columns"] == ["all"]:
            logged[f"{test_key}_by_setting"] = wandb.plot.bar(table, "setting", test_key, title=f"{test_key} by setting")
        run.log(logged)
        for setting, *_ in rows:
            for c in agg["columns"]:
                mean = _cell_mean(agg, setting, c, "test")
                if mean is not None:
                    suffix = "" if agg["columns"] == ["all"] else f"/{agg['column']}={c}"
                    run.summary[f"{test_key}/{setting}{suffix}"] = mean
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
    """``specsweep report``: build the report of ``args.run_dir`` into ``args.out`` and print it."""
    run_dir = RunLocation(args.run_dir)
    if run_dir.is_local or args.out:
        files = build_report(run_dir, args.out, wandb=args.wandb)
        _print_report(files, {kind: str(path) for kind, path in files.items() if kind != "wandb"})
        return 0
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
