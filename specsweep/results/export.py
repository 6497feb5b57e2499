"""The model a trial tested, in hand: :func:`load_trial` and ``specsweep export``.

Every trial saves the weights it tested (``tested.pt`` in its folder, the model's
``state_dict`` and the epoch they come from) just before its test, because Tune keeps only
the best checkpoints by the sweep's metric, which need not hold them. For run directories
written before that file existed, the weights are taken from a Tune checkpoint that holds
them: the best epoch's weights kept by the trial's ``BestWeights`` callback
(``train.test_weights: best``) or the checkpoint of the last epoch (``last``).

``specsweep export`` writes the loaded model as a :func:`torch.export.export` program
(``torch.export.save``), which torch alone loads, with the trial's description in the
archive's extra file ``specsweep.json`` (:data:`EXPORT_EXTRA_FILE`)::

    extra = {"specsweep.json": ""}
    model = torch.export.load("model.pt2", extra_files=extra).module()
    card = json.loads(extra["specsweep.json"])
    logits = model(waveform)            # waveform (batch, samples) at card["sample_rate"]

torch.export fixes the number of frames of recurrent backbones (the ASR models), so a
model of variable-length data that it cannot capture for every length is written instead
as a ``torch.save`` dictionary, ``{"format": "specsweep-weights/1", "card": JSON,
"state_dict": ...}`` (readable with ``torch.load(path, weights_only=True)``), that
``specsweep.load_trial(path)`` rebuilds.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from pydantic import ValidationError
from torch import nn

from specsweep.contract import UsageError, pydantic_problems
from specsweep.layout import TESTED_FILE
from specsweep.rundir import CHECKPOINTS, RunDirError, RunLocation, first_line, load_run, trial_folder
from specsweep.spec import SweepSpec, TrialConfig

EXPORT_EXTRA_FILE = "specsweep.json"
EXPORT_FORMAT = "specsweep-trial/1"
WEIGHTS_FORMAT = "specsweep-weights/1"
_NET_PREFIX = "net."


class TrialLoadError(RunDirError):
    """The weights a trial tested cannot be found or read in its run directory."""


@dataclass(frozen=True)
class TrialCard:
    """What a loaded trial is: where it comes from, its config, and how to feed and read it.

    ``labels`` are the dataset's class names (KWS) or phoneme symbols (ASR);
    ``output_labels`` name the model's outputs in order (for ASR output 0 is the CTC
    blank). Inputs are waveforms ``(batch, samples)`` at ``sample_rate``, of
    ``clip_samples`` samples where the dataset's clips have one length (None: any).
    """

    run_dir: str
    trial_id: str
    config: Dict[str, Any]
    labels: List[str]
    output_labels: List[str]
    sample_rate: int
    clip_samples: Optional[int]
    metrics: Dict[str, Any]
    tested_epoch: Optional[int]
    weights_from: str


def _pick_trial(trials: List[Dict[str, Any]], trial_id: str, spec: SweepSpec, run_dir: RunLocation) -> Dict[str, Any]:
    """The finished trial ``trial_id`` (its id or folder name), or with ``best`` the
    finished trial with the best ``best_<metric>`` by the sweep's metric and mode."""
    finished = [t for t in trials if t["status"] == "TERMINATED"]
    if trial_id == "best":
        key = f"best_{spec.metric}"
        scored = [t for t in finished if isinstance(t["metrics"].get(key), (int, float))]
        if not scored:
            raise TrialLoadError(f"{run_dir}: no finished trial reported {key}, so there is no best trial to load")
        pick = max if spec.mode == "max" else min
        return pick(scored, key=lambda t: t["metrics"][key])
    wanted = trial_id.removeprefix(trial_folder(""))
    match = [t for t in trials if t["id"] == wanted]
    if not match:
        known = ", ".join(t["id"] for t in trials[:20]) + (", ..." if len(trials) > 20 else "")
        raise TrialLoadError(f"{run_dir} has no trial {trial_id!r}; its trials: {known or 'none'} (or best)")
    if match[0]["status"] != "TERMINATED":
        raise TrialLoadError(f"trial {wanted} of {run_dir} is {match[0]['status']}, not finished: only a finished "
                             f"trial has tested weights (`specsweep resume` finishes it)")
    return match[0]


def _torch_load(run_dir: RunLocation, relative: str) -> Dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(run_dir.read_bytes(relative)), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        # torch's own text for these advises loading with weights_only=False, which is wrong
        # (and unsafe) for a damaged file.
        reason = "not a torch file specsweep wrote" if isinstance(err, (pickle.UnpicklingError, RuntimeError)) else (
            first_line(err))
        raise TrialLoadError(f"{run_dir.child(relative)} is damaged ({reason})") from None
    if not isinstance(state, dict):
        raise TrialLoadError(f"{run_dir.child(relative)} is damaged (not a dictionary of weights)")
    return state


def _net_weights(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The model's entries of a Lightning task's ``state_dict`` (the task holds it as ``net``)."""
    return {k.removeprefix(_NET_PREFIX): v for k, v in state_dict.items() if k.startswith(_NET_PREFIX)}


def _from_checkpoints(run_dir: RunLocation, folder: str, config: TrialConfig, spec: SweepSpec,
                      tested_epoch: Optional[int]) -> Optional[tuple[Dict[str, torch.Tensor], str]]:
    """The tested weights from a Tune checkpoint of a trial written before ``tested.pt``
    existed: the ``BestWeights`` state that chose them, or the last epoch's checkpoint."""
    if tested_epoch is None:
        return None
    best_key = f"BestWeights[{config.train.best_by or spec.metric}, keep_weights=True]"
    for relative in reversed(run_dir.glob(f"{folder}/{CHECKPOINTS}")):
        state = _torch_load(run_dir, relative)
        if config.train.test_weights == "best":
            callbacks = state.get("callbacks")
            kept = callbacks.get(best_key) if isinstance(callbacks, dict) else None
            if isinstance(kept, dict) and isinstance(kept.get("weights"), dict) and kept.get("best_epoch") == tested_epoch:
                return _net_weights(kept["weights"]), relative
        elif state.get("epoch") == tested_epoch and isinstance(state.get("state_dict"), dict):
            return _net_weights(state["state_dict"]), relative
    return None


def _tested_weights(run_dir: RunLocation, trial: Dict[str, Any], config: TrialConfig,
                    spec: SweepSpec) -> tuple[Dict[str, torch.Tensor], str, Optional[int]]:
    """``(state_dict, file, epoch)`` of the weights the trial tested."""
    folder = trial_folder(trial["id"])
    relative = f"{folder}/{TESTED_FILE}"
    if run_dir.is_file(relative):
        saved = _torch_load(run_dir, relative)
        if not isinstance(saved.get("state_dict"), dict):
            raise TrialLoadError(f"{run_dir.child(relative)} is damaged (no state_dict)")
        return saved["state_dict"], relative, saved.get("epoch")
    tested_epoch = trial["metrics"].get("tested_epoch")
    found = _from_checkpoints(run_dir, folder, config, spec, tested_epoch)
    if found is None:
        which = f"epoch {tested_epoch}'s" if tested_epoch is not None else "its"
        raise TrialLoadError(
            f"{run_dir.child(folder)} holds no {TESTED_FILE} (trials save it since specsweep records it) and no "
            f"checkpoint with the weights trial {trial['id']} tested ({which} {config.train.test_weights} weights; Tune "
            f"kept only the best {spec.checkpoint.num_to_keep} checkpoint(s) by {spec.metric}): its model cannot be "
            f"recovered")
    return found[0], found[1], tested_epoch


def load_trial(run_dir: Union[str, Path, RunLocation], trial_id: str = "best") -> nn.Module:
    """The model a trial tested: front-end and backbone with its tested weights, in eval mode.

    Parameters
    ----------
    run_dir
        A run directory (local folder or URI), or a weights file that ``specsweep export``
        wrote for a model torch.export could not capture (``trial_id`` is then unused).
    trial_id
        A trial's id (as ``specsweep status`` shows it) or folder name, or ``"best"``: the
        finished trial with the best ``best_<metric>`` by the sweep's metric and mode.

    Returns
    -------
    nn.Module
        A :class:`~specsweep.model.SpectrogramModel` mapping waveforms ``(batch, samples)``
        to logits ``(batch, n_outputs)`` (KWS) or ``(batch, frames, n_outputs)`` (ASR),
        with ``config`` (:class:`~specsweep.spec.TrialConfig`), ``labels`` (the dataset's
        label names) and ``trial`` (:class:`TrialCard`) attached.

    Raises
    ------
    TrialLoadError
        No such trial, not finished, or its tested weights are missing or damaged.
    """
    from specsweep.results.status import read_trials

    if not isinstance(run_dir, RunLocation) and Path(run_dir).is_file():
        return _load_weights_file(Path(run_dir))
    run = RunLocation(run_dir)
    spec = load_run(run)
    return tested_model(run, _pick_trial(read_trials(run), str(trial_id), spec, run), spec)


def tested_model(run: RunLocation, trial: Dict[str, Any], spec: SweepSpec) -> nn.Module:
    """:func:`load_trial` for a trial already read (a record of
    :func:`~specsweep.results.status.read_trials`) of the run ``run`` of ``spec``."""
    config = _trial_config(trial["config"], f"trial {trial['id']} of {run}")
    weights, source, epoch = _tested_weights(run, trial, config, spec)
    return _model(config, weights, run.child(source).uri, run_dir=run.uri, trial_id=trial["id"],
                  metrics=trial["metrics"], tested_epoch=epoch)


def _trial_config(config: Any, what: str) -> TrialConfig:
    try:
        return TrialConfig.model_validate(config)
    except ValidationError as err:
        raise TrialLoadError(f"{what}: its config does not validate ({'; '.join(pydantic_problems(err))}); was it "
                             f"written by another version of specsweep?") from None


def _model(config: TrialConfig, weights: Dict[str, torch.Tensor], source: str, **card: Any) -> nn.Module:
    """The trial's model with ``weights`` (read from ``source``), in eval mode, its card attached."""
    from specsweep.assembly import build_model_for
    from specsweep.data.datasets import describe_dataset
    from specsweep.tasks import get_task

    try:
        info = describe_dataset(config.data)
        model = build_model_for(config, info)
    except (ValueError, KeyError, TypeError) as err:
        # A config that validates as a TrialConfig but names an unknown component or a value
        # its component refuses (a hand-edited run).
        raise TrialLoadError(f"{source}: the trial's model cannot be built from its config ({first_line(err)})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise TrialLoadError(f"{source}: the weights do not fit the trial's model ({first_line(err)})") from None
    model.eval()
    blanks = ["<blank>"] * (get_task(config.task).num_outputs(len(info.labels)) - len(info.labels))
    model.config = config
    model.labels = list(info.labels)
    model.trial = TrialCard(config=config.model_dump(), labels=list(info.labels), output_labels=blanks + list(info.labels),
                            sample_rate=info.sample_rate, clip_samples=info.clip_samples, weights_from=source, **card)
    return model


def _load_weights_file(path: Path) -> nn.Module:
    """The model of a weights file :func:`export_trial` wrote."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        card = json.loads(saved["card"]) if isinstance(saved, dict) and saved.get("format") == WEIGHTS_FORMAT else None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise TrialLoadError(f"{path} is not a specsweep weights file ({first_line(err)})") from None
    if not isinstance(card, dict) or not isinstance(saved.get("state_dict"), dict):
        raise TrialLoadError(f"{path} is not a specsweep weights file (no {WEIGHTS_FORMAT} card and state_dict); "
                             f"a .pt2 program loads with torch.export.load")
    config = _trial_config(card.get("config"), str(path))
    return _model(config, saved["state_dict"], card.get("weights_from", str(path)), run_dir=card.get("run_dir", ""),
                  trial_id=card.get("trial_id", ""), metrics=card.get("metrics", {}),
                  tested_epoch=card.get("tested_epoch"))


def export_command(args: Any) -> int:
    """``specsweep export RUN_DIR ID --out FILE``: :func:`export_trial`, and what was written."""
    print(_export(args.run_dir, args.trial_id, args.out))
    return 0


def _export(run_dir: str, trial_id: str, out: Path) -> str:
    """Write trial ``trial_id`` of ``run_dir`` to the new file ``out``; what to tell the
    user. :class:`UsageError` names an ``out`` that exists or whose folder does not."""
    exists = UsageError(f"--out {out} exists; give a new file name (export never overwrites)")
    # Checked before the model is loaded; export_trial's exclusive open covers a race.
    if out.exists() or out.is_symlink():
        raise exists
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    try:
        written = export_trial(run_dir, trial_id, out)
    except FileExistsError:
        raise exists from None
    if written == EXPORT_FORMAT:
        return (f"{out}: trial {trial_id} of {run_dir} as a torch.export program; load it with "
                f"torch.export.load({str(out)!r}).module() (its description: extra file {EXPORT_EXTRA_FILE})")
    return (f"{out}: trial {trial_id} of {run_dir} as weights and description (torch.export cannot capture this "
            f"model for every length); load it with specsweep.load_trial({str(out)!r})")


def export_trial(run_dir: Union[str, Path, RunLocation], trial_id: str, out: Path) -> str:
    """Write trial ``trial_id``'s tested model to ``out`` (never overwriting it:
    FileExistsError); returns the format written.

    ``specsweep-trial/1``: a ``torch.export`` program with a dynamic batch size (and length,
    for variable-length data) and the trial's :class:`TrialCard` as the extra file
    ``specsweep.json``. Where torch.export cannot capture the model for every length (it
    fixes the number of frames of recurrent backbones), ``specsweep-weights/1``: a
    ``torch.save`` dictionary ``{"format", "card" (the card as JSON), "state_dict"}``
    that :func:`load_trial` rebuilds the model from.
    """
    from torch._dynamo.exc import UserError

    model = load_trial(run_dir, trial_id)
    description = asdict(model.trial)
    samples = model.trial.clip_samples or model.trial.sample_rate
    dims: Dict[int, Any] = {0: torch.export.Dim.DYNAMIC}
    if model.trial.clip_samples is None:
        # A named dimension: torch.export fails instead of silently fixing the length.
        dims[1] = torch.export.Dim("samples", min=model.trial.sample_rate // 10, max=model.trial.sample_rate * 600)
    try:
        with torch.no_grad():
            program = torch.export.export(model, (torch.zeros(2, samples),), dynamic_shapes=(dims,))
    except UserError:
        # "x": of two exports to one path, one fails instead of both writing.
        with open(out, "xb") as stream:
            torch.save({"format": WEIGHTS_FORMAT, "card": _card_json(WEIGHTS_FORMAT, description),
                        "state_dict": model.state_dict()}, stream)
        return WEIGHTS_FORMAT
    with open(out, "xb") as stream:
        torch.export.save(program, stream, extra_files={EXPORT_EXTRA_FILE: _card_json(EXPORT_FORMAT, description)})
    return EXPORT_FORMAT


def _card_json(form: str, description: Dict[str, Any]) -> str:
    return json.dumps({"format": form, **description}, indent=1, default=str)
