"""``resources.gpus: auto`` on the joined Ray cluster: each distinct model measured on a GPU
(a Ray task holding a whole one), the measurements kept between launches, and the packing
:mod:`specsweep.plan.packing` plans from them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from specsweep.contract import StepMeasure
from specsweep.plan.cost import model_key
from specsweep.plan.packing import Packing, PackingError, label, plan_packing
from specsweep.spec import TrialConfig

# Measurements kept between launches, in the dataset cache folder (MeasureCache).
MEASURES_FILE = "gpu_measures.json"
# Seconds between notes while the measurements wait for GPUs.
_WAIT_NOTE_S = 120.0


def _measure_on_gpu(config: TrialConfig, cpus: float) -> Dict[str, Any]:
    """Body of the Ray task that measures one model on the GPU Ray gave it."""
    import torch

    from specsweep.trainables.calibrate import measure_steps

    if not torch.cuda.is_available():
        import ray

        raise PackingError(
            f"Ray gave a GPU on node {ray.util.get_node_ip_address()} (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}) but torch sees no CUDA device there "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); was the node started with "
            f"`ray start --num-gpus` on a machine without a usable GPU?")
    return asdict(measure_steps(config, cpus))


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # a source tree that was never installed
        return "source"


class MeasureCache:
    """GPU measurements kept between launches, in ``gpu_measures.json`` under the
    dataset cache (``SPECSWEEP_CACHE``): by model, the Ray accelerator type of the GPUs
    measured on, the trial's CPUs, and the torch and specsweep versions of this machine.
    A damaged or unwritable file is the same as none: models are measured again."""

    def __init__(self, path: Path, gpu_type: str, cpus: float) -> None:
        self.path, self.gpu_type, self.cpus = path, gpu_type, cpus

    def key(self, model: str) -> str:
        import torch

        return json.dumps({"model": model, "gpu_type": self.gpu_type, "cpus": self.cpus, "torch": torch.__version__,
                           "specsweep": _installed("specsweep")}, sort_keys=True)

    def _entries(self) -> Dict[str, Any]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def get(self, model: str) -> Optional[StepMeasure]:
        entry = self._entries().get(self.key(model))
        try:
            return StepMeasure(**entry["measure"]) if isinstance(entry, dict) else None
        except (KeyError, TypeError):
            return None

    def put(self, model: str, measure: StepMeasure) -> None:
        entries = self._entries()
        entries[self.key(model)] = {"measure": asdict(measure), "measured": datetime.now().isoformat(timespec="seconds")}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".gpu_measures-", delete=False) as f:
                json.dump(entries, f, indent=1)
            os.replace(f.name, self.path)
        except OSError as err:
            print(f"[specsweep]   could not keep the measurement in {self.path} ({err}); it will be measured again",
                  flush=True)


def cluster_gpu_type() -> Optional[str]:
    """The accelerator type Ray reports for the GPUs of the joined cluster
    (``accelerator_type:<type>`` among a node's resources), when all its GPU nodes have
    one and the same; None otherwise."""
    import ray

    types = set()
    for node in ray.nodes():
        resources = node.get("Resources", {})
        if not node.get("Alive") or resources.get("GPU", 0) <= 0:
            continue
        kinds = [name.split(":", 1)[1] for name in resources if name.startswith("accelerator_type:")]
        types.add(kinds[0] if len(kinds) == 1 else None)
    return types.pop() if len(types) == 1 else None


def _print_plans(measures: Mapping[str, StepMeasure], configs: Sequence[TrialConfig], key: str, source: str) -> None:
    m = measures[key]
    for p in plan_packing(measures, [c for c in configs if model_key(c) == key]).values():
        print(f"[specsweep]   {p.label}: {p.per_gpu} per GPU ({p.gpus:g} GPU each) on {m.device} ({source}): "
              f"{p.why}; {m.clips_per_s:,.0f} clips/s alone", flush=True)


def measure_models(configs: Sequence[TrialConfig], cpus: float) -> Dict[str, Packing]:
    """Measure each distinct model of ``configs`` on a GPU of the joined Ray cluster (one
    Ray task per model, each holding a whole GPU, as many at once as there are GPUs) and
    plan its packing; models measured before on GPUs of the same type come from the
    :class:`MeasureCache`. Prints a line per model as its measurement comes in."""
    import ray

    from specsweep.data.cache import default_cache_root

    distinct: Dict[str, TrialConfig] = {}
    for config in configs:
        distinct.setdefault(model_key(config), config)
    gpu_type = cluster_gpu_type()
    cache = MeasureCache(default_cache_root() / MEASURES_FILE, gpu_type, cpus) if gpu_type else None
    measures: Dict[str, StepMeasure] = {}
    for key in distinct:
        kept = cache.get(key) if cache else None
        if kept is not None:
            measures[key] = kept
    if measures and cache:
        print(f"[specsweep] resources.gpus: auto: {len(measures)} model(s) measured before on {gpu_type} GPUs "
              f"(kept in {cache.path}; delete it to measure again)", flush=True)
        for key in measures:
            _print_plans(measures, configs, key, "measured before")
    todo = {key: config for key, config in distinct.items() if key not in measures}
    if not todo:
        return plan_packing(measures, configs)
    # max_calls=1: the worker exits after its task, so its CUDA context and cached memory
    # leave the GPU before trials arrive.
    task = ray.remote(num_gpus=1, num_cpus=cpus, max_retries=0, max_calls=1)(_measure_on_gpu)
    print(f"[specsweep] resources.gpus: auto: measuring {len(todo)} model(s) on a GPU each "
          f"(compiling ones take about a minute)", flush=True)
    pending = {task.remote(config, cpus): key for key, config in todo.items()}
    started = time.monotonic()
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=_WAIT_NOTE_S)
            if not done:
                # A GPU busy with other work, or one the autoscaler has yet to add, holds the task.
                print(f"[specsweep]   still measuring {len(pending)} model(s) after "
                      f"{time.monotonic() - started:.0f} s (each needs a whole free GPU; `ray status` shows what "
                      f"holds them)", flush=True)
                continue
            key = pending.pop(done[0])
            try:
                measures[key] = StepMeasure(**ray.get(done[0]))
            except ray.exceptions.RayError as err:
                # A task's own exception (RayTaskError.cause), or its worker crashed, ran out
                # of memory, lost its node.
                cause = getattr(err, "cause", None) or err
                lines = str(cause).strip().splitlines()
                raise PackingError(f"measuring {label(distinct[key])} on a GPU failed: "
                                   f"{lines[-1] if lines else type(cause).__name__}") from None
            if cache:
                cache.put(key, measures[key])
            _print_plans(measures, configs, key, "measured now")
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return plan_packing(measures, configs)


def resolve_gpus(configs: Sequence[TrialConfig], cpus: float) -> Dict[str, Packing]:
    """``auto`` on the joined Ray cluster: a packing per model when it has GPUs, none
    (trials on CPUs, with a line saying so) when it has none."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus <= 0:
        print("[specsweep] resources.gpus: auto: Ray has no GPUs here; trials run on CPUs", flush=True)
        return {}
    return measure_models(configs, cpus)
