"""Paper-style tables and figures from a finished (or partly finished) run directory.

Rows are the settings A-D, columns the swept value (n_mels, mask range, front-end,
backbone, ...), cells mean ± std over seeds of the best validation metric and of the test
metric of the best checkpoint.
"""

from __future__ import annotations

import csv
import io
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from specsweep.rundir import RunLocation  # noqa: E402
from specsweep.spec import SweepSpec  # noqa: E402
from specsweep.status import describe_config  # noqa: E402

SETTINGS = ("A", "B", "C", "D")


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
    groups: Dict[Tuple[str, str], Dict[str, List[float]]] = defaultdict(lambda: {"val": [], "test": []})
    raw_columns: Dict[str, Any] = {}
    for t in trials:
        if t["status"] != "TERMINATED":
            continue
        described = describe_config(t["config"], spec)
        col_value = described.get(column) if column else "all"
        col = _label(col_value)
        raw_columns[col] = col_value
        cell = groups[(described["setting"], col)]
        if isinstance(t["metrics"].get(val_key), (int, float)):
            cell["val"].append(float(t["metrics"][val_key]))
        if isinstance(t["metrics"].get(test_key), (int, float)):
            cell["test"].append(float(t["metrics"][test_key]))
    columns = sorted(raw_columns, key=lambda c: (not isinstance(raw_columns[c], (int, float)), raw_columns[c]
                                                  if isinstance(raw_columns[c], (int, float)) else c))
    return {"column": column or "sweep", "columns": columns, "raw_columns": raw_columns, "groups": groups,
            "val_key": val_key, "test_key": test_key}


def _cell(values: List[float]) -> str:
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.4f} ± {std:.4f} (n={len(values)})"


def markdown_tables(agg: Dict[str, Any]) -> str:
    out = []
    for kind, title in (("val", agg["val_key"]), ("test", agg["test_key"])):
        out.append(f"### {title} (mean ± std over seeds)\n")
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
            for kind in ("val", "test"):
                if cell[kind]:
                    mean, std = _mean_std(cell[kind])
                    writer.writerow([setting, col, agg[f"{kind}_key"], f"{mean:.6f}", f"{std:.6f}", len(cell[kind])])


def plot_metric_vs_column(agg: Dict[str, Any], path: Path) -> Optional[Path]:
    """Test metric against a numeric swept value (n_mels), one line per setting."""
    numeric = [c for c in agg["columns"] if isinstance(agg["raw_columns"][c], (int, float))]
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


def best_weights(run_dir: RunLocation, trial_dir: str) -> Optional[Dict[str, torch.Tensor]]:
    """The best epoch's weights, carried in the trial's latest Tune checkpoint."""
    checkpoints = run_dir.glob(f"{trial_dir}/checkpoint_*/checkpoint.ckpt")
    if not checkpoints:
        return None
    state = torch.load(io.BytesIO(run_dir.read_bytes(checkpoints[-1])), map_location="cpu", weights_only=True)
    return state.get("callbacks", {}).get("BestWeights", {}).get("weights")


def _learned_filterbank(run_dir: RunLocation, trial: Dict[str, Any]) -> Optional[torch.Tensor]:
    from specsweep.data.datasets import dataset_output_info
    from specsweep.model import build_model

    weights = best_weights(run_dir, f"trial_{trial['id']}")
    if weights is None:
        return None
    config = trial["config"]
    n_labels, clip = dataset_output_info(config["data"])
    kws = config["task"] == "kws"
    model = build_model(config["frontend"], config["backbone"], clip, n_labels if kws else n_labels + 1,
                        "utterance" if kws else "frames")
    model.load_state_dict({k.removeprefix("net."): v for k, v in weights.items() if k.startswith("net.")})
    return model.frontend.filterbank().detach()


def plot_best_filterbanks(run_dir: RunLocation, trials: List[Dict[str, Any]], spec: SweepSpec, path: Path) -> Optional[Path]:
    best = _best_trial_per_setting(trials, spec)
    banks = {s: _learned_filterbank(run_dir, t) for s, t in sorted(best.items())}
    banks = {s: b for s, b in banks.items() if b is not None}
    if not banks:
        return None
    fig, axes = plt.subplots(1, len(banks), figsize=(4 * len(banks), 3.2), squeeze=False)
    for ax, (s, bank) in zip(axes[0], banks.items()):
        for row in bank:
            ax.plot(row.numpy(), linewidth=0.8)
        ax.set_title(f"setting {s} (best trial {best[s]['id']})")
        ax.set_xlabel("STFT bin")
    axes[0][0].set_ylabel("weight")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build_report(run_dir: Union[Path, str, RunLocation], out: Optional[Path] = None) -> Dict[str, Path]:
    """Write ``report.md``, ``report.csv`` and the PNGs to the local folder ``out``
    (default: ``RUN_DIR/report`` of a local run directory); return their paths."""
    from specsweep import tracking
    from specsweep.launcher import load_run
    from specsweep.status import read_trials

    run_dir = RunLocation(run_dir)
    spec = load_run(run_dir)
    trials = read_trials(run_dir)
    if out is None:
        if not run_dir.is_local:
            raise ValueError("a run directory in cloud storage needs a local output folder (out)")
        out = Path(run_dir.path) / "report"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(trials, spec)
    finished = sum(t["status"] == "TERMINATED" for t in trials)
    header = (f"# {spec.name}: {spec.description}\n\n{finished}/{len(trials)} trials finished; task {spec.task}, "
              f"metric {spec.metric} ({spec.mode}).\n\n")
    files = {"markdown": out / "report.md", "csv": out / "report.csv"}
    files["markdown"].write_text(header + markdown_tables(agg))
    write_csv(agg, files["csv"])
    plot = plot_metric_vs_column(agg, out / f"{spec.metric.replace('val_', 'test_')}_vs_{agg['column']}.png")
    if plot:
        files["metric_plot"] = plot
    banks = plot_best_filterbanks(run_dir, trials, spec, out / "best_filterbanks.png")
    if banks:
        files["filterbanks"] = banks
    if tracking.resolve_mode(spec.wandb.mode) == "online":
        _to_wandb(spec, run_dir, files)
    return files


def _to_wandb(spec: SweepSpec, run_dir: RunLocation, files: Dict[str, Path]) -> None:
    import wandb

    with open(files["csv"]) as f:
        rows = list(csv.reader(f))
    run = wandb.init(project=spec.wandb.project, entity=spec.wandb.entity, group=spec.wandb.group or run_dir.name,
                     name=f"{run_dir.name}-report", job_type="report", dir=str(files["csv"].parent))
    run.log({"results": wandb.Table(columns=rows[0], data=rows[1:]),
             **{k: wandb.Image(str(p)) for k, p in files.items() if p.suffix == ".png"}})
    run.finish()


def add_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="tables (Markdown, CSV) and figures of a run directory")
    report.add_argument("run_dir", help="run directory: local folder or URI")
    report.add_argument("--out", type=Path, help="local output folder (default RUN_DIR/report; for a run directory "
                        "in cloud storage, written there as well)")
    report.set_defaults(func=_cmd_report)


def _cmd_report(args: Any) -> int:
    run_dir = RunLocation(args.run_dir)
    if run_dir.is_local or args.out:
        files = build_report(run_dir, args.out)
        _print_report(files, {kind: str(path) for kind, path in files.items()})
        return 0
    # The report of a run directory in cloud storage is written there, like its other artifacts.
    with tempfile.TemporaryDirectory() as tmp:
        files = build_report(run_dir, Path(tmp))
        run_dir.upload(Path(tmp), "report")
        _print_report(files, {kind: str(run_dir.child(f"report/{path.name}")) for kind, path in files.items()})
    return 0


def _print_report(files: Dict[str, Path], shown: Dict[str, str]) -> None:
    print(files["markdown"].read_text())
    for kind, where in shown.items():
        print(f"{kind}: {where}")
