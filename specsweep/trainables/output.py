"""Trial output into the trial's log file: what a trial prints (Lightning, Ray, W&B,
Python warnings, native libraries) goes to ``trial.log`` in its folder, not to the console.

The redirection is at the file-descriptor level, so output from C extensions and child
processes started by the trial lands there too. A worker process runs one trial at a time
(Tune may reuse it for the next trial), so the process's output follows the trial it runs.
"""

from __future__ import annotations

import atexit
import os
import select
import sys
import threading
from pathlib import Path
from typing import List, Optional

from specsweep.layout import LOG_FILE

# Seconds a streaming process waits at exit for the last output to reach the log.
_DRAIN_S = 2.0
# How long the pipe stays empty before the copying thread may change log files.
_IDLE_S = 0.05


class _Tee:
    """Copies what the process writes to fds 1 and 2 into the trial's log file and to the
    original stdout (Ray's worker log, which Ray streams to the driver).

    The copying thread changes log files only when the pipe is empty, so everything a
    trial wrote before the next one starts lands in its own log.
    """

    def __init__(self, original: int) -> None:
        self.original = original
        self.sinks: List[int] = [original]
        self.next_log: Optional[int] = None
        self.switched = threading.Event()
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.thread = threading.Thread(target=self._pump, args=(read_fd,), name="specsweep-trial-output", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def _pump(self, read_fd: int) -> None:
        while True:
            if select.select([read_fd], [], [], _IDLE_S)[0]:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    return
                for fd in self.sinks:
                    os.write(fd, chunk)
            elif self.next_log is not None:
                for fd in self.sinks[1:]:
                    os.close(fd)
                self.sinks, self.next_log = [self.original, self.next_log], None
                self.switched.set()

    def switch(self, log_fd: int) -> None:
        """Copy into ``log_fd`` from now on (after what is already in the pipe)."""
        self.switched.clear()
        self.next_log = log_fd
        self.switched.wait(timeout=_DRAIN_S)

    def close(self) -> None:
        """Give fds 1 and 2 back to the original stdout and copy what is left in the pipe.
        Child processes still holding the pipe (wandb's service) keep it open: the copy
        waits for them only a moment."""
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.original, 1)
        os.dup2(self.original, 2)
        self.thread.join(timeout=_DRAIN_S)


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
