"""The names of what a trial writes into its folder of the run directory.

Shared by the trial that writes these files and by :mod:`specsweep.rundir` (which owns the
run directory's layout), the launcher and the report that read them. This module imports
nothing: a trial worker reads :data:`LOG_FILE` before it loads torch and Lightning, and the
driver names :data:`CHECKPOINT_FILE` without loading them.
"""

from __future__ import annotations

#: What the trial's process prints (Lightning, Ray, W&B, warnings, native libraries).
LOG_FILE = "trial.log"
#: The Lightning checkpoint inside each of Tune's ``checkpoint_<n>/`` folders.
CHECKPOINT_FILE = "checkpoint.ckpt"
#: The best epoch's weights, written when the sweep logs checkpoints to W&B.
BEST_FILE = "best.ckpt"
#: The front-end's and the task's figures.
FIGURES_DIR = "figures"
#: The final tested filterbank's tensors, logged as a versioned W&B artifact.
FILTERBANK_FILE = "filterbank.pt"
#: The weights the trial tested, saved at test time (specsweep.trainables.tested).
TESTED_FILE = "tested.pt"
