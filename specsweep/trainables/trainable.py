"""The Ray Tune trainable as the driver hands it to Tune.

This module imports neither torch nor Lightning: the driver only names the function, and
importing Lightning there (about 5 s on 2 cores) would hold up the start of every trial.
Trial workers import :mod:`specsweep.trainables.trial` when the first trial runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict

from specsweep.trainables.context import RunContext

# In a trial worker this module loads when Tune's actor unpickles the trainable, before the
# first trial imports torch and Lightning: trials report it so that a slot's start can be
# split into process start and imports (``timing/worker_unix``).
LOADED_UNIX = time.time()
# Seconds a stopping trial's thread gets to end (and finish its W&B run) before Tune syncs
# the trial folder and reuses or ends the actor.
STOP_GRACE_S = 10.0
# Set while this worker's trial thread is inside a trial, i.e. not yet past its W&B finish.
_IN_TRIAL = threading.Event()


def train_trial(config: Dict[str, Any], run: RunContext) -> None:
    """Tune function trainable: one trial, run by :func:`specsweep.trainables.trial.train_trial`.

    Tune names trials after this function (``train_trial_<id>``) and checks the name when
    a sweep is resumed, so it keeps the name of the function it stands for.
    """
    from ray import tune

    from specsweep.trainables.output import capture_output

    # Before the trial imports torch and Lightning, so their notices reach the log too.
    capture_output(Path(tune.get_context().get_trial_dir()), stream=run.stream_output)
    from specsweep.trainables import trial

    _IN_TRIAL.set()
    try:
        trial.train_trial(config, run, worker_unix=LOADED_UNIX)
    finally:
        _IN_TRIAL.clear()


class _TrialThreadFirst:
    """Mixin for the class Tune builds from :func:`train_trial` (Tune reads ``__mixins__``).

    A trial stopped by the scheduler (ASHA) ends in its own thread: its next report raises
    ``SystemExit`` and the trial then finishes its W&B run. Tune's function trainable does
    not wait for that thread before it syncs the trial folder to storage and reuses the
    actor or lets it exit (and the raylet then ends wandb's service, a child of the worker):
    the synced folder held the run unfinished, and at worst its finish failed ("Problem
    finishing run"). Here the thread ends first.
    """

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        _end_trial_thread()
        return super().reset_config(new_config)

    def cleanup(self) -> None:
        _end_trial_thread()
        super().cleanup()


def _end_trial_thread() -> None:
    # A trial that ran to its end has finished its W&B run already: Tune's own finish (and
    # its folder sync) is enough, and a second one would sync every trial twice.
    if not _IN_TRIAL.is_set():
        return
    # The session is Ray's own (ray.train), the one FunctionTrainable's cleanup ends; its
    # finish() stops the trial thread at its next report and waits for it. It stays private:
    # Ray 2.60 has no public API that stops or joins a function trainable's thread
    # (ray.tune.get_context() reads trial metadata only), and the thread waits inside
    # tune.report on a lock that only this session releases.
    from ray.train._internal.session import get_session

    session = get_session()
    if session is not None and session.training_started and session.training_thread.is_alive():
        session.finish(timeout=STOP_GRACE_S)


train_trial.__mixins__ = (_TrialThreadFirst,)  # type: ignore[attr-defined]
