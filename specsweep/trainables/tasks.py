"""Lightning task modules. Each receives a built :class:`SpectrogramModel` and the
trial's validated ``train`` section; optimisation is shared, the loss and metrics differ.
The tasks registry (:mod:`specsweep.tasks`) names them and builds them with ``for_data``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import lightning.pytorch as pl
import torch
import torchaudio
from matplotlib.figure import Figure
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from specsweep.data.datasets import PreparedData
from specsweep.model import SpectrogramModel
from specsweep.spec import TrainConfig
from specsweep.trainables.plots import plot_confusion_matrix


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the trial stops instead of training on garbage."""


class SpeechTask(pl.LightningModule):
    """Shared optimisation for the speech tasks: parameter groups, schedule, clamping
    of front-end parameters after each step, and a stop on non-finite loss."""

    def __init__(self, net: SpectrogramModel, optim: TrainConfig, labels: Sequence[str]) -> None:
        super().__init__()
        self.net = net
        self.optim = optim
        self.labels = list(labels)
        self.figures: Dict[str, Figure] = {}
        self._pending_checks: Deque[Tuple[torch.Tensor, torch.Tensor, int, int, Any]] = deque()
        self._train_loss: Optional[Tuple[torch.Tensor, int]] = None

    @classmethod
    def for_data(cls, net: SpectrogramModel, train: TrainConfig, data: PreparedData) -> "SpeechTask":
        """The task on ``data``'s labels; subclasses add what else of the data they score by."""
        return cls(net, train, data.labels)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.net(waveform)

    def examples_table(self) -> Optional[Tuple[List[str], List[List[str]]]]:
        """``(columns, rows)`` of examples from the last test worth showing as a table
        (W&B), or None when the task has none."""
        return None

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop on a non-finite training loss. On a GPU the check must not wait for the
        step to finish (a CPU-bound trial would lose its lead over the GPU every step):
        the flag is copied back without blocking and read once its copy is done, at a
        later step or at the epoch's last step at the latest, naming the step it came from."""
        bad = ~torch.isfinite(loss.detach())
        if loss.device.type != "cuda":
            if bad:
                self._raise_non_finite(float(loss), self.current_epoch, self.global_step)
            return
        event = torch.cuda.Event()
        pending = (bad.to("cpu", non_blocking=True), loss.detach().to("cpu", non_blocking=True),
                   self.current_epoch, self.global_step, event)
        event.record()
        self._pending_checks.append(pending)

    def _read_checks(self, wait: bool) -> None:
        while self._pending_checks and (wait or self._pending_checks[0][-1].query()):
            bad, value, epoch, step, event = self._pending_checks.popleft()
            event.synchronize()
            if bad:
                self._raise_non_finite(float(value), epoch, step)

    def _raise_non_finite(self, value: float, epoch: int, step: int) -> None:
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {epoch}, step {step}; stopping this trial (lower the learning rate?)"
        )

    def _log_training(self, loss: torch.Tensor, batch_size: int, batch_idx: int, **metrics: Metric) -> None:
        """Log the epoch's training loss (its mean over clips, as Lightning's epoch mean
        weighted by batch size) and ``metrics`` (updated by the caller every step) once,
        at the epoch's last step, where callbacks read them at the epoch's end. Logging
        through Lightning every step cost more CPU time than a small model's step: moving
        each logged metric object to the device on every call."""
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            # An epoch of unknown length has no last step to log at.
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
            for name, metric in metrics.items():
                self.log(name, metric, on_step=False, on_epoch=True)
            return
        weighted = loss.detach() * batch_size
        if batch_idx == 0 or self._train_loss is None:
            self._train_loss = (weighted, batch_size)
        else:
            self._train_loss = (self._train_loss[0] + weighted, self._train_loss[1] + batch_size)
        if batch_idx + 1 >= batches:
            total, clips = self._train_loss
            self.log("train_loss", total / clips, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
            for name, metric in metrics.items():
                self.log(name, metric, on_step=False, on_epoch=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.net.frontend.after_optimizer_step()
        # Validation and the epoch's checkpoint come after the last step: they must not
        # see weights that a non-finite loss has spoiled.
        self._read_checks(wait=batch_idx + 1 >= self.trainer.num_training_batches)

    def on_train_epoch_end(self) -> None:
        self._read_checks(wait=True)

    def configure_optimizers(self) -> Any:
        o = self.optim
        frontend = [p for p in self.net.frontend.parameters() if p.requires_grad]
        groups: List[Dict[str, Any]] = [{"params": [p for p in self.net.backbone.parameters() if p.requires_grad]}]
        if frontend:
            groups.append({"params": frontend, "lr": o.frontend_lr if o.frontend_lr is not None else o.lr})
        # On a GPU one fused kernel updates every parameter; the default (foreach) launches
        # several per parameter group and step, which small models are bound by.
        params = [p for g in groups for p in g["params"]]
        fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
        if o.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay, **fused)
        elif o.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, **fused)
        elif o.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, **fused)
        else:
            raise ValueError(f"train.optimizer must be adam, adamw or sgd, got {o.optimizer!r}")
        keep_implementation(opt)
        if o.schedule == "constant" and o.warmup_epochs == 0:
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(o.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))
        cosine = o.schedule == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def keep_implementation(optimizer: torch.optim.Optimizer) -> None:
    """Keep ``optimizer``'s implementation (fused, foreach) when a checkpoint's state is
    loaded into it. ``load_state_dict`` takes each parameter group's flags, and where its
    ``step`` counters live, from the checkpoint: a GPU trial resumed from a checkpoint a
    CPU trial wrote would fall back from the fused kernel, and a CPU trial resumed from a
    GPU checkpoint would run a fused CPU kernel instead of what trials on the CPU run.

    Examples
    --------
    >>> w = [torch.nn.Parameter(torch.zeros(2))]
    >>> fused = torch.optim.Adam(w, fused=True)
    >>> w[0].grad = torch.ones(2); fused.step()
    >>> plain = torch.optim.Adam(w); keep_implementation(plain)
    >>> plain.load_state_dict(fused.state_dict())
    >>> plain.param_groups[0]["fused"], plain.defaults["fused"]
    (None, None)
    """
    built = {key: optimizer.defaults.get(key) for key in ("fused", "foreach", "capturable")}

    def restore(opt: torch.optim.Optimizer) -> None:
        on_device = bool(built["fused"] or built["capturable"])
        for group in opt.param_groups:
            group.update({key: value for key, value in built.items() if key in group})
            for param in group["params"]:
                state = opt.state.get(param, {})
                if torch.is_tensor(state.get("step")):
                    # Fused and capturable kernels keep step counts on the parameter's device,
                    # the others on the CPU (torch.optim.Optimizer._process_value_according_to_param_policy).
                    state["step"] = state["step"].to(device=param.device if on_device else "cpu",
                                                      dtype=torch.float32)

    optimizer.register_load_state_dict_post_hook(restore)


class KWSTask(SpeechTask):
    """Keyword spotting: cross-entropy over ``len(labels)`` classes, accuracy, and a
    confusion matrix figure at the end of testing.

    Batches are ``(waveform (batch, samples), targets (batch, 1))``.
    """

    def __init__(self, net: SpectrogramModel, optim: TrainConfig, labels: Sequence[str]) -> None:
        super().__init__(net, optim, labels)
        n = len(self.labels)
        # Training targets come from the prepared split: checking their range every step costs a
        # device sync (torch.unique) and a dozen kernels for nothing.
        self.train_acc = MulticlassAccuracy(n, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.loss_fn = nn.CrossEntropyLoss()

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        waveform, targets = batch
        logits = self(waveform)
        targets = targets[:, 0]
        return self.loss_fn(logits, targets), logits, targets

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, targets = self._step(batch)
        self._check_finite(loss)
        # update, not forward: only the epoch's accuracy is logged, so no per-batch value is computed.
        self.train_acc.update(logits, targets)
        self._log_training(loss, len(targets), batch_idx, train_acc=self.train_acc)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, targets = self._step(batch)
        self.val_acc(logits, targets)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True)
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, targets = self._step(batch)
        self.test_acc(logits, targets)
        self.test_confusion(logits, targets)
        self.log("test_loss", loss, on_epoch=True)
        self.log("test_acc", self.test_acc, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        self.figures["confusion_matrix"] = plot_confusion_matrix(matrix, self.labels)


def greedy_ctc_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> List[List[int]]:
    """Best path decoding: per-frame argmax, repeats merged, blanks removed.

    Parameters
    ----------
    log_probs : Tensor, shape (batch, frames, symbols)
    lengths : Tensor, shape (batch,)
        Valid frames per utterance.

    Examples
    --------
    >>> lp = torch.log(torch.eye(3)[[1, 1, 0, 2, 2, 0]]).unsqueeze(0)
    >>> greedy_ctc_decode(lp, torch.tensor([6]))
    [[1, 2]]
    """
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for seq, n in zip(best, lengths.tolist()):
        decoded = torch.unique_consecutive(seq[:n])
        out.append([int(s) for s in decoded if s != blank])
    return out


class ASRTask(SpeechTask):
    """Phoneme recognition with CTC: blank is class 0, ``labels[i]`` is class ``i + 1``.

    Batches are ``(waveform (batch, samples), waveform_lengths, targets (batch, max_len),
    target_lengths)``. Symbols are scored after ``score_map`` folds them (TIMIT's 61 phones
    to 39; "" drops a symbol) when given. The phone error rate of a stage uses the edit
    distance (``torchaudio.functional.edit_distance``) of each utterance: with
    ``per_average="corpus"`` the summed edits over the summed reference lengths, with
    ``"utterance"`` the mean over utterances of edits over reference length (an empty
    reference counts as length 1). The CTC loss sees each utterance's frames less
    ``optim.ctc_drop_frames`` at its end (at least one); decoding sees them all.

    ``zero_infinity``: an utterance with fewer frames than its labels need adds nothing
    to the loss rather than an infinite one that would end the trial.
    """

    def __init__(
        self,
        net: SpectrogramModel,
        optim: TrainConfig,
        labels: Sequence[str],
        score_map: Optional[Dict[str, str]] = None,
        examples_to_log: int = 4,
        per_average: str = "corpus",
    ) -> None:
        super().__init__(net, optim, labels)
        if per_average not in ("corpus", "utterance"):
            raise ValueError(f"per_average must be 'corpus' or 'utterance', got {per_average!r}")
        self.ctc = nn.CTCLoss(blank=0, zero_infinity=True)
        self.ctc_drop_frames = optim.ctc_drop_frames
        self.score_map = score_map or {}
        self.examples_to_log = examples_to_log
        self.per_average = per_average
        # Per stage: summed edits, summed reference lengths, summed per-utterance rates, utterances.
        self._errors: Dict[str, List[float]] = {"val": [0, 0, 0.0, 0], "test": [0, 0, 0.0, 0]}
        self.examples: List[Dict[str, str]] = []

    @classmethod
    def for_data(cls, net: SpectrogramModel, train: TrainConfig, data: PreparedData) -> "ASRTask":
        """Scored as the dataset's protocol says (its phone folding and PER average)."""
        return cls(net, train, data.labels, score_map=data.score_map, per_average=data.per_average)

    def _frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Output frames per utterance of ``samples`` samples, ``(batch,)`` on its device.
        Computed elementwise on the tensor where the front-end's ``num_frames`` takes one
        (the STFT front-ends' arithmetic does): a Python loop over a GPU tensor waits for
        the GPU once per utterance. Otherwise utterance by utterance."""
        try:
            frames = self.net.frontend.num_frames(samples)
        except (TypeError, ValueError, RuntimeError):
            frames = None
        if torch.is_tensor(frames) and frames.shape == samples.shape and not frames.is_floating_point():
            return frames
        return torch.tensor([self.net.frontend.num_frames(int(n)) for n in samples], device=samples.device)

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        waveform, wave_lengths, targets, target_lengths = batch
        log_probs = self(waveform).log_softmax(-1)
        frames = self._frames(wave_lengths).clamp(max=log_probs.shape[1])
        loss_frames = (frames - self.ctc_drop_frames).clamp(min=1) if self.ctc_drop_frames else frames
        loss = self.ctc(log_probs.transpose(0, 1), self._classes(targets), loss_frames, target_lengths)
        return loss, log_probs, frames

    @staticmethod
    def _classes(targets: torch.Tensor) -> torch.Tensor:
        # Dataset targets index ``labels``; class 0 is the CTC blank, so label i is class i + 1.
        return targets + 1

    def _symbols(self, ids: Sequence[int]) -> List[str]:
        folded = (self.score_map.get(self.labels[i - 1], self.labels[i - 1]) for i in ids)
        return [s for s in folded if s]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._step(batch)
        self._check_finite(loss)
        self._log_training(loss, len(batch[0]), batch_idx)
        return loss

    def _score(self, batch: Any, stage: str) -> None:
        loss, log_probs, frames = self._step(batch)
        _, _, targets, target_lengths = batch
        hyps = greedy_ctc_decode(log_probs, frames)
        for i, hyp in enumerate(hyps):
            ref = self._symbols(self._classes(targets[i, : target_lengths[i]]).tolist())
            hyp_symbols = self._symbols(hyp)
            self.count_errors(stage, ref, hyp_symbols)
            if stage == "test" and len(self.examples) < self.examples_to_log:
                self.examples.append({"reference": " ".join(ref), "hypothesis": " ".join(hyp_symbols)})
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(hyps))

    def count_errors(self, stage: str, reference: Sequence[str], hypothesis: Sequence[str]) -> None:
        """Add one scored utterance to the phone error rate of ``stage``."""
        edits = torchaudio.functional.edit_distance(reference, hypothesis)
        errors = self._errors[stage]
        errors[0] += edits
        errors[1] += len(reference)
        errors[2] += edits / max(1, len(reference))
        errors[3] += 1

    def phone_error_rate(self, stage: str) -> float:
        """The phone error rate of the utterances counted for ``stage`` so far, averaged as
        ``per_average`` says."""
        edits, ref_total, rate_sum, utterances = self._errors[stage]
        if self.per_average == "utterance":
            return rate_sum / max(1, utterances)
        return edits / max(1, ref_total)

    def _log_per(self, stage: str) -> None:
        per = self.phone_error_rate(stage)
        self._errors[stage] = [0, 0, 0.0, 0]
        self.log(f"{stage}_per", per, prog_bar=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._score(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_per("val")

    def on_test_epoch_start(self) -> None:
        self.examples = []

    def examples_table(self) -> Optional[Tuple[List[str], List[List[str]]]]:
        """The first decoded test utterances beside their references."""
        return ["reference", "hypothesis"], [[e["reference"], e["hypothesis"]] for e in self.examples]

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._score(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_per("test")
