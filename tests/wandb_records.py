"""Read the records of an offline W&B run (``run-<id>.wandb``) so tests can check what
a trial logged without network. The file is a LevelDB-style log of protobuf ``Record``
messages after a 7-byte W&B header; wandb 0.31 reads it in its Go core only."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List

from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < 7:
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        else:
            break


def read_run(run_folder: Path) -> Dict[str, Any]:
    """``{"config": {...}, "history": [{...}], "summary": {...}, "artifacts": [{"name", "type",
    "aliases", "files", "metadata"}], "run": {"name", "job_type", "group"}, "metrics": {name:
    {"step_metric", "summary": [...]}}, "output": "console text"}`` of one offline run folder."""
    run: Dict[str, Any] = {}
    metrics: Dict[str, Dict[str, Any]] = {}
    output: List[str] = []
    config: Dict[str, Any] = {}
    history: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}
    artifacts: List[Dict[str, Any]] = []
    for path in sorted(Path(run_folder).glob("run-*.wandb")):
        for payload in _payloads(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = {"name": record.run.display_name, "job_type": record.run.job_type,
                       "group": record.run.run_group}
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in record.config.update})
            elif kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
            elif kind == "summary":
                summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
            elif kind == "artifact":
                a = record.artifact
                artifacts.append({"name": a.name, "type": a.type, "aliases": list(a.aliases),
                                  "files": [e.path for e in a.manifest.contents],
                                  "metadata": json.loads(a.metadata or "{}")})
            elif kind == "metric":
                m = record.metric
                metrics[m.name or m.glob_name] = {
                    "step_metric": m.step_metric,
                    "summary": [f.name for f, on in m.summary.ListFields() if on]}
            elif kind == "output_raw":
                output.append(record.output_raw.line)
    return {"config": config, "history": history, "summary": summary, "artifacts": artifacts, "run": run,
            "metrics": metrics, "output": "".join(output)}
