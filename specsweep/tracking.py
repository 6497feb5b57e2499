"""Weights & Biases for trials: one run per trial, online with a key, offline without.

The API key is read by wandb itself from ``WANDB_API_KEY`` or the user's ``wandb login``
(netrc); specsweep never reads, stores or prints it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence
from urllib.parse import quote

if TYPE_CHECKING:
    from specsweep.spec import TrialConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WandbSettings:
    """Where trial runs go and what they keep. ``mode`` is auto (online when a key is configured), online,
    offline or disabled."""

    project: str = "specsweep"
    entity: Optional[str] = None
    group: Optional[str] = None
    mode: str = "auto"
    tags: List[str] = field(default_factory=list)
    # Each trial's best weights as a model artifact of its run.
    log_checkpoints: bool = False


def has_wandb_credentials() -> bool:
    """Whether wandb finds credentials for its server the way ``wandb.init`` does:
    ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, the netrc file (``NETRC`` or
    ``~/.netrc``) or wandb's settings, without keeping or showing the key."""
    import wandb
    from wandb.errors import AuthenticationError
    from wandb.sdk.lib import wbauth

    try:
        return wbauth.authenticate_session(host=server_url(), source="specsweep", prompt=False,
                                           update_session=False) is not None
    except (AuthenticationError, ValueError) as err:
        # Found but unusable (e.g. both a key and a token file): wandb.init would refuse them too.
        log.warning("W&B credentials found but not usable (%s); logging offline", type(err).__name__)
        return False


def server_url() -> str:
    """The W&B server ``wandb.init`` would talk to: ``WANDB_BASE_URL`` or wandb's default
    (``wandb.Settings()`` alone does not read the environment)."""
    import wandb

    settings = wandb.Settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings.base_url


def environment_problem() -> Optional[str]:
    """A line naming the wandb settings from ``WANDB_*`` variables that wandb refuses
    (e.g. ``WANDB_BASE_URL=localhost:8080``), without their values (one may be a key);
    None when wandb takes them."""
    from pydantic import ValidationError

    try:
        server_url()
    except ValidationError as err:
        fields = sorted({"WANDB_" + str(e["loc"][0]).upper() for e in err.errors() if e.get("loc")})
        return (f"W&B settings from the environment are invalid: {', '.join(fields) or 'a WANDB_ variable'} "
                f"(wandb refuses the value); fix or unset it")
    return None


def group_url(run_url: str, group: str) -> str:
    """The W&B page of a group, from the URL of one of its runs
    (``https://host/entity/project/runs/id``)."""
    return f"{run_url.split('/runs/')[0]}/groups/{quote(group, safe='')}"


def sync_command(folders: List[Path]) -> str:
    """The shell command that uploads offline W&B run folders."""
    return " ".join(["wandb", "sync", *(shlex.quote(str(f)) for f in folders)])


def resolve_mode(mode: str) -> str:
    """``auto`` follows ``WANDB_MODE`` when the user set it, else online with a key."""
    if mode == "auto":
        env = os.environ.get("WANDB_MODE")
        if env in ("online", "offline", "disabled"):
            return env
        return "online" if has_wandb_credentials() else "offline"
    return mode


def run_id(sweep_dir: str, trial_id: str) -> str:
    """A W&B run id that is stable across restores of the same trial, so a resumed
    trial continues its run instead of starting a second one. ``sweep_dir`` is the run
    directory's absolute path or URI, as the launcher gives it (a URI is not a local path
    to resolve)."""
    digest = hashlib.sha1(f"{sweep_dir}/{trial_id}".encode()).hexdigest()[:8]
    return f"{trial_id}-{digest}"


# Swept keys the base of a run name already shows (masked bins as "mask25-50", a random Mel
# initialisation as "randinit").
_NAMED_KEYS = {"task", "backbone.name", "frontend.name", "frontend.setting", "frontend.n_mels", "frontend.mask_bins",
               "frontend.random_mel_init", "seed"}


def run_name(trial: "TrialConfig", config: Dict[str, Any], swept_keys: Sequence[str] = (),
             sample: Optional[str] = None) -> str:
    """``kws-bcresnet-nnaudio-D-mels40-lr0.01-seed1`` style names, unique within a sweep:
    task, backbone, front-end, setting and n_mels from the trial config (values it leaves
    out are the front-end's defaults), then every other swept key's value under the key's
    last part (the whole dotted key where two swept keys end alike), then the seed, then
    ``sample``, the trial's number, for sweeps that may draw one configuration twice
    (``search.num_samples`` above 1).

    Examples
    --------
    >>> from specsweep.spec import TrialConfig
    >>> config = {"task": "kws", "data": {"name": "embedded_kws"}, "seed": 1,
    ...           "frontend": {"name": "nnaudio", "setting": "B"}, "backbone": {"name": "bcresnet"},
    ...           "train": {"lr": 0.001}}
    >>> run_name(TrialConfig.model_validate(config), config, ["train.lr", "frontend.setting"])
    'kws-bcresnet-nnaudio-B-mels40-lr0.001-seed1'
    >>> masked = {**config, "frontend": {"name": "nnaudio", "setting": "B", "mask_bins": [0, 10], "random_mel_init": True}}
    >>> run_name(TrialConfig.model_validate(masked), masked, ["frontend.mask_bins", "frontend.random_mel_init"])
    'kws-bcresnet-nnaudio-B-mels40-mask0-10-randinit-seed1'
    """
    from specsweep.frontends import frontend_argument
    from specsweep.spec import swept_values

    fe = trial.frontend
    parts = [trial.task, trial.backbone["name"], fe["name"], trial.setting, f"mels{frontend_argument(fe, 'n_mels')}"]
    if fe.get("mask_bins"):
        parts.append("mask" + "_".join(f"{a}-{b}" for a, b in _pairs(fe["mask_bins"])))
    if fe.get("random_mel_init"):
        parts.append("randinit")
    others = [key for key in swept_keys if key not in _NAMED_KEYS]
    last_parts = [key.rsplit(".", 1)[-1] for key in others]
    for key, last in zip(others, last_parts):
        (value,) = swept_values(config, [key]).values()
        parts.append(f"{key if last_parts.count(last) > 1 else last}{_name_value(value)}")
    parts.append(f"seed{trial.seed}")
    if sample is not None:
        parts.append(f"sample{sample}")
    return "-".join(str(p) for p in parts)


def _name_value(value: Any) -> str:
    """A value as a run name shows it: numbers in their shortest exact form (distinct
    values stay distinct), lists and mappings as compact JSON."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return repr(value) if isinstance(value, float) else str(value)


def _pairs(mask: Any) -> List[List[int]]:
    return [mask] if mask and isinstance(mask[0], int) else list(mask)


def init_run(settings: WandbSettings, directory: Path, run_id_: str, name: str, config: Dict[str, Any],
             tags: List[str], job_type: str = "trial") -> Any:
    """Start or resume the W&B run of a trial or a report (``job_type``); fall back to
    offline when online fails, so that no key and no network never fail a sweep or a report.

    What the process prints through Python's ``sys.stdout`` and ``sys.stderr`` (Lightning,
    warnings, logging) while the run is open goes to the run's console log (W&B's Logs
    tab) as well as to where it went before (``trial.log``). wandb's ``wrap`` console
    patches those streams' writes; its file-descriptor ``redirect`` would take the trial's
    own redirection to ``trial.log`` over."""
    mode = resolve_mode(settings.mode)
    if mode == "disabled":
        return None
    import wandb

    directory.mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        project=settings.project, entity=settings.entity, group=settings.group, name=name, id=run_id_,
        resume="allow", config=config, tags=sorted(set(settings.tags) | set(tags)), dir=str(directory),
        job_type=job_type,
        # init_timeout is wandb's own (90 s, or WANDB_INIT_TIMEOUT).
        reinit="finish_previous", settings=wandb.Settings(silent=True, console="wrap"),
    )
    try:
        return wandb.init(mode=mode, **kwargs)
    except Exception as err:  # wandb raises its own error types for network and auth failures
        if mode != "online":
            raise
        log.warning("W&B online init failed (%s); logging this %s offline instead", type(err).__name__, job_type)
        # wandb's service still holds the run id of the online attempt, which it keeps
        # trying: an offline run of the same id is refused ("run ID is in use") until the
        # service is gone.
        wandb.teardown()
        return wandb.init(mode="offline", **kwargs)


def define_metrics(run: Any, summaries: Dict[str, str], per_epoch: Iterable[str] = ()) -> None:
    """Plot a trial's metrics against ``epoch`` (which Lightning logs with every epoch's
    metrics) and summarise each of ``summaries`` (metric -> ``"max"`` or ``"min"``) by its
    best value, so that a running or crashed trial shows its best, not its last; the
    other ``per_epoch`` metrics and the front-end's drift keep their last value."""
    run.define_metric("epoch")
    for name in per_epoch:
        if name not in summaries:
            run.define_metric(name, step_metric="epoch")
    run.define_metric("frontend/*", step_metric="epoch")
    for name, mode in summaries.items():
        run.define_metric(name, step_metric="epoch", summary=mode)


def unreachable_server() -> Optional[str]:
    """Why the W&B server (:func:`server_url`) cannot be reached from here, or None when a
    connection opens, or when a proxy is configured (its route cannot be judged). A TCP
    connection with a 5 s timeout; nothing is sent."""
    import socket
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    if any(scheme != "no" for scheme in getproxies()):  # "no": NO_PROXY, hosts that bypass one
        return None
    url = urlsplit(server_url())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=5):
            return None
    except OSError as err:
        return f"{url.scheme}://{url.netloc}: {err.strerror or type(err).__name__}"


_exit_teardown_registered = False


def finish_run(run: Any) -> None:
    """Finish a trial's run and keep wandb's service process for the next trial on this
    worker (Tune reuses trial actors; starting the service costs each trial ~0.3 s).

    The service stops when the worker exits, through a hook that runs before wandb's
    own: Ray ends a worker's child processes as the worker leaves, at times before the
    worker's exit hooks run, and wandb's hook then prints a traceback for a service
    that is already gone."""
    global _exit_teardown_registered
    if run is None:
        return
    run.finish()
    if not _exit_teardown_registered:
        # Registered after wandb's hook (added when the service started), so it runs first.
        atexit.register(_teardown_quietly)
        _exit_teardown_registered = True


def _teardown_quietly() -> None:
    import wandb

    try:
        wandb.teardown()
    # The service is gone: nothing is left to flush, runs finished. wandb exits with the
    # service's status (SystemExit -9 when Ray killed it first), which must not replace the
    # worker's own exit.
    except (Exception, SystemExit) as err:
        log.debug("wandb service already stopped at exit (%s)", type(err).__name__)


def log_trial_files(run: Any, log_file: Path, best_weights: Optional[Path], metadata: Dict[str, Any]) -> None:
    """Attach the trial's log file to its run and, when given, its best weights as a
    ``model`` artifact (aliases ``best`` and ``latest``)."""
    import wandb

    # Files in the run's folder are uploaded when it finishes (wandb.save would link the
    # file there instead, and warn that later lines need another save).
    shutil.copy(log_file, Path(run.dir) / log_file.name)
    if best_weights is not None:
        artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metadata)
        artifact.add_file(str(best_weights))
        run.log_artifact(artifact, aliases=["best"])


def log_filterbank(run: Any, files: List[Path], metadata: Dict[str, Any]) -> None:
    """The trial's final filterbank (``files``: its tensors and figure) as version after
    version of the run's ``filterbank`` artifact: a resumed trial that tests again adds a
    version, and ``latest`` names the newest."""
    import wandb

    artifact = wandb.Artifact(f"filterbank-{run.id}", type="filterbank", metadata=metadata)
    for path in files:
        artifact.add_file(str(path))
    run.log_artifact(artifact)
