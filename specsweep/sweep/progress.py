"""The sweep's console while Tune runs: one progress view, redrawn in place on a terminal
and one line per event otherwise (CI, log files), and ASHA's state kept with the experiment.

Tune pickles its callbacks with the experiment (``tuner.pkl``) and a resumed sweep runs
the unpickled ones, so what depends on the console of *this* invocation (a terminal or
not, ``-v``) is decided when the sweep starts (:meth:`SweepProgress.setup`), from
:data:`CONSOLE`, which :func:`set_console` fills.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, TextIO

from ray.tune import Callback

# "TERMINATED" covers trials that ran to their end and those a scheduler stopped early.
_STATES = ("TERMINATED", "RUNNING", "PENDING", "ERROR")
# The smallest pause between two redraws of the live view (seconds).
_REDRAW_S = 1.0
_CLEAR_LINE = "\x1b[2K"


@dataclass
class ConsoleOptions:
    """How this process's sweep console behaves. ``verbose``: trial output streams to the
    console too (Ray prefixes each line with the trial's process), so the view prints
    lines instead of redrawing over them. ``live``: redraw in place; None follows whether
    the stream is a terminal."""

    verbose: bool = False
    live: Optional[bool] = None


CONSOLE = ConsoleOptions()


def set_console(verbose: bool = False, live: Optional[bool] = None) -> None:
    """Set the console of the sweeps this process runs next (see :class:`ConsoleOptions`)."""
    CONSOLE.verbose, CONSOLE.live = verbose, live


def format_seconds(seconds: float) -> str:
    """``2h05m``, ``4m07s`` or ``12s``."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class SweepProgress(Callback):
    """Trials done / running / pending / errored, each running trial's epoch k/N and
    latest metric, the best value so far, elapsed time and an estimate of the time left.

    The estimate assumes every unfinished trial runs all its reports (epochs plus the test
    report) at the mean report time measured so far, ``concurrency`` at a time; under ASHA
    it is an upper bound.

    Parameters
    ----------
    metric, mode
        The sweep's metric and whether it is maximised (``max``) or minimised (``min``).
    epochs
        Epochs per trial (each trial reports once per epoch and once after testing).
    total_trials
        Trials the sweep will run (Tune creates them lazily).
    labels
        Dotted config keys whose values tell trials apart in the view (the swept keys).
    early_stopping
        Whether a scheduler may stop trials early (the estimate is then an upper bound).
    """

    def __init__(self, metric: str, mode: str, epochs: int, total_trials: int, labels: List[str],
                 early_stopping: bool = False) -> None:
        self.metric, self.mode, self.epochs = metric, mode, epochs
        self.total_trials, self.labels, self.early_stopping = total_trials, labels, early_stopping
        self._reset()

    def _reset(self) -> None:
        self.best: Optional[float] = None
        # Each trial's latest result: callbacks hear of a result before Tune stores it.
        self.latest: Dict[str, Dict] = {}
        self.report_seconds: List[float] = []
        self.concurrency = 1
        self.started = time.monotonic()
        self.live = False
        self.drawn_lines = 0
        self.last_draw = 0.0

    def __getstate__(self) -> Dict[str, Any]:
        # The console state belongs to the invocation that runs the sweep, not to the
        # experiment Tune saves.
        return {k: getattr(self, k) for k in ("metric", "mode", "epochs", "total_trials", "labels", "early_stopping")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def out(self) -> TextIO:
        return sys.stdout

    def setup(self, **info: Any) -> None:
        self._reset()
        live = CONSOLE.live if CONSOLE.live is not None else self.out.isatty()
        self.live = bool(live) and not CONSOLE.verbose and os.environ.get("TERM") != "dumb"

    def label(self, trial: Any) -> str:
        """``<trial id> setting=B seed=1``: the trial id and its swept values."""
        from specsweep.spec import swept_values

        values = swept_values(trial.config, self.labels)
        return " ".join([trial.trial_id, *(f"{name}={value}" for name, value in values.items())])

    def _better(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def _epochs_of(self, trial: Any) -> int:
        from specsweep.spec import trial_value

        return int(trial_value(trial.config, "train.epochs") or self.epochs)

    def eta_seconds(self, trials: List[Any], changed: Optional[Dict[str, str]] = None) -> Optional[float]:
        """Seconds left by the measured mean report time; None before the first report."""
        if not self.report_seconds:
            return None
        mean = sum(self.report_seconds) / len(self.report_seconds)
        left = (self.total_trials - len(trials)) * (self.epochs + 1)
        for t in trials:
            if (changed or {}).get(t.trial_id, t.status) in ("RUNNING", "PENDING", "PAUSED"):
                left += max(self._epochs_of(t) + 1 - _iteration(self._result(t)), 0)
        return left * mean / max(self.concurrency, 1)

    def headline(self, trials: List[Any], changed: Optional[Dict[str, str]] = None) -> str:
        """The sweep in one line; ``changed`` maps trial ids to the states Tune is about
        to give them (callbacks hear of a trial's end before its state changes)."""
        states = [(changed or {}).get(t.trial_id, t.status) for t in trials]
        counts = {s: states.count(s) for s in _STATES}
        counts["PENDING"] += max(self.total_trials - len(trials), 0)
        best = "-" if self.best is None else f"{self.best:.4f}"
        eta = self.eta_seconds(trials, changed)
        eta_text = "-" if eta is None else ("<= " if self.early_stopping else "~") + format_seconds(eta)
        return (f"{counts['TERMINATED']}/{self.total_trials} done, {counts['RUNNING']} running, "
                f"{counts['PENDING']} pending, {counts['ERROR']} errored | best {self.metric} {best} | "
                f"{format_seconds(time.monotonic() - self.started)} elapsed, eta {eta_text}")

    def _result(self, trial: Any) -> Dict:
        return self.latest.get(trial.trial_id) or trial.last_result or {}

    def trial_line(self, trial: Any) -> str:
        """``<label>: epoch k/N <metric> <value>`` after the trial's latest result."""
        result = self._result(trial)
        done = _iteration(result)
        epochs = self._epochs_of(trial)
        value = result.get(self.metric)
        shown = f" {self.metric} {value:.4f}" if isinstance(value, (int, float)) else ""
        return f"{self.label(trial)}: epoch {min(done, epochs)}/{epochs}{shown}"

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _event(self, trials: List[Any], what: str, changed: Optional[Dict[str, str]] = None) -> None:
        if self.live:
            self._draw(trials, force=True, changed=changed)
        else:
            self._print(f"[specsweep] {what} | {self.headline(trials, changed)}")

    def _draw(self, trials: List[Any], force: bool = False, changed: Optional[Dict[str, str]] = None) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < _REDRAW_S:
            return
        self.last_draw = now
        lines = [f"[specsweep] {self.headline(trials, changed)}"]
        lines += [f"  {self.trial_line(t)}" for t in trials if (changed or {}).get(t.trial_id, t.status) == "RUNNING"]
        # Move up over the previous view and rewrite it line by line.
        up = f"\x1b[{self.drawn_lines}F" if self.drawn_lines else ""
        stale = max(self.drawn_lines - len(lines), 0)
        text = up + "".join(f"{_CLEAR_LINE}{line}\n" for line in lines) + f"{_CLEAR_LINE}\n" * stale
        if stale:
            text += f"\x1b[{stale}F"
        self.out.write(text)
        self.out.flush()
        self.drawn_lines = len(lines)

    def on_step_end(self, iteration: int, trials: List[Any], **info: Any) -> None:
        running = sum(t.status == "RUNNING" for t in trials)
        self.concurrency = max(self.concurrency, running)
        if self.live:
            self._draw(trials)

    def on_trial_result(self, iteration: int, trials: List[Any], trial: Any, result: Dict, **info: Any) -> None:
        self.latest[trial.trial_id] = result
        seconds = result.get("time_this_iter_s")
        if isinstance(seconds, (int, float)):
            self.report_seconds.append(float(seconds))
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and self._better(value):
            self.best = float(value)
        # The report after the last epoch carries the test metrics: the trial's "done" line says it.
        if _iteration(result) <= self._epochs_of(trial):
            self._event(trials, self.trial_line(trial))

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        result = self._result(trial)
        stopped = _iteration(result) <= self._epochs_of(trial)
        best = result.get(f"best_{self.metric}")
        shown = f" best {self.metric} {best:.4f}" if isinstance(best, (int, float)) else ""
        self._event(trials, f"{self.label(trial)}: {'stopped early' if stopped else 'done'}{shown}",
                    {trial.trial_id: "TERMINATED"})

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self._event(trials, f"{self.label(trial)}: errored (see its error.txt and trial.log)",
                    {trial.trial_id: "ERROR"})

    def on_trial_recover(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self._event(trials, f"{self.label(trial)}: failed, restarting from its last checkpoint (see its trial.log)")

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        if self.live:
            self._draw(trials, force=True)
        self.drawn_lines = 0


def _iteration(result: Optional[Dict]) -> int:
    return int((result or {}).get("training_iteration", 0) or 0)


class SchedulerState(Callback):
    """Saves a trial scheduler's state with Tune's experiment state and restores it when
    the sweep resumes.

    Tune saves the searcher's state but not the scheduler's: a resumed ASHA sweep would
    start with empty rungs and judge the remaining trials against only the trials that
    report after the resume. Callback states are saved in the same snapshot as the trial
    states, so the rungs restored match the trials restored. The scheduler is the object
    Tune pickled with this callback in the experiment, so both come back together.
    """

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def get_state(self) -> Optional[Dict]:
        # ASHA's bookkeeping: rungs of recorded results, each live trial's bracket, counts.
        return {"scheduler": dict(vars(self.scheduler))}

    def set_state(self, state: Dict) -> None:
        vars(self.scheduler).update(state["scheduler"])
