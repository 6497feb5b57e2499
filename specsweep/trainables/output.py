"""Trial output into the trial's log file: what a trial prints (Lightning, Ray, W&B,
Python warnings, native libraries) goes to ``trial.log`` in its folder, not to the console.

The redirection is at the file-descriptor level, so output from C extensions and child
processes started by the trial lands there too. A worker process runs one trial at a time
(Tune may reuse it for the next trial), so the process's output follows the trial it runs.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import List, Optional

LOG_FILE = "trial.log"


class _Tee:
    """Copies what the process writes to fds 1 and 2 into the trial's log file and to the
    original stdout (Ray's worker log, which Ray streams to the driver)."""

    def __init__(self, original: int) -> None:
        self.original = original
        self.sinks: List[int] = [original]
        self.lock = threading.Lock()
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        threading.Thread(target=self._pump, args=(read_fd,), name="specsweep-trial-output", daemon=True).start()

    def _pump(self, read_fd: int) -> None:
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                return
            with self.lock:
                for fd in self.sinks:
                    os.write(fd, chunk)

    def switch(self, log_fd: int) -> None:
        with self.lock:
            for fd in self.sinks[1:]:
                os.close(fd)
            self.sinks = [self.original, log_fd]


_tee: Optional[_Tee] = None


def capture_output(trial_dir: Path, stream: bool = False) -> Path:
    """Send this process's stdout and stderr to ``trial_dir/trial.log`` (appended to, so a
    restored trial continues its log); with ``stream`` also to the original stdout.

    Returns the log file's path.
    """
    global _tee
    path = Path(trial_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if stream:
        if _tee is None:
            _tee = _Tee(os.dup(1))
        _tee.switch(log_fd)
    else:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    return path
