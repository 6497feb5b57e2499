"""Ray for a sweep: a local Ray kept on loopback, or a running cluster joined the way the
``ray`` CLI joins it, with its failures named before the run directory exists.

Joining checks what ``ray.init`` would otherwise wait minutes on or fail on with a
traceback (an address that is not a Ray head, a refused token, another Ray or Python
version). Ray offers no public API for these checks, so this module is the one place
specsweep uses Ray's private modules for them; each says why where it is imported
(``tests/test_layering.py`` holds the list).
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict, Optional

from specsweep.rundir import first_line
from specsweep.spec import SpecError, SweepSpec


class LaunchError(RuntimeError):
    """Ray could not be started or joined; the message says what failed and how to fix it."""


def cluster_address(address: Optional[str]) -> Optional[str]:
    """The cluster a command joins: ``address``, else ``RAY_ADDRESS`` (which Ray sets for a
    job's entrypoint); None for a new local Ray."""
    if not address and os.environ.get("RAY_ADDRESS"):
        from specsweep.contract import address_problem

        problem = address_problem(os.environ["RAY_ADDRESS"])
        if problem:
            # A port past 64 bits reached the socket layer as an OverflowError traceback.
            raise LaunchError(f"RAY_ADDRESS: {problem}")
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's own retries on an address that is not a Ray head run for minutes; a user is told sooner.
_CONNECT_TIMEOUT_S = 25


def start_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> None:
    """Join the Ray cluster at ``address``, else at ``RAY_ADDRESS`` (set for a job's
    entrypoint), else start a local Ray that listens on loopback only.

    Raises
    ------
    LaunchError
        The cluster cannot be joined (bad or unreachable address, refused token, other
        Ray or Python version), or ``num_cpus``/``num_gpus`` were given for a cluster.
    """
    import ray

    if ray.is_initialized():
        return
    origin = "--address" if address else "RAY_ADDRESS"
    address = cluster_address(address)
    if address:
        if num_cpus is not None or num_gpus is not None:
            raise LaunchError(f"--num-cpus sizes a local Ray only; the size of the cluster at {address} is "
                              f"set by `ray start --num-cpus/--num-gpus` on its nodes")
        _join_cluster(address, origin)
        return
    _keep_on_loopback()
    _token_auth_for_local_ray()
    # address="local": a new instance, never one that `ray start` left running.
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             log_to_driver=True, configure_logging=False)


def _token_auth_for_local_ray() -> None:
    """Token authentication for the local Ray, as Ray enables it by default for a new
    cluster, but chosen explicitly: Ray then keeps quiet about its default (a warning on
    every sweep). ``RAY_AUTH_MODE`` set by the user wins. Ray caches its configuration when
    it is imported, so it is read again, as Ray itself does when it turns token auth on."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    # Private: no public API re-reads Ray's configuration once Ray is imported.
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")


def _keep_on_loopback() -> None:
    """Keep Ray's addresses on 127.0.0.1: Ray binds to loopback when clusters are disabled
    (its setting for single machines), and otherwise rewrites 127.0.0.1 to the machine's
    network address. The variable reaches the processes Ray starts; this process read it
    when it imported Ray."""
    # Private: the constant Ray read at import; no public API changes it afterwards.
    from ray._private import ray_constants

    os.environ[_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _join_cluster(address: str, origin: str) -> None:
    """Connect to a running cluster the way the ``ray`` CLI does, checking first (within
    about half a minute) that a Ray head of this Ray and Python version answers there."""
    import ray

    # Private: HOST:PORT as Ray parses it (IPv6 in brackets included), and ``auto`` or an
    # address resolved as ``ray.init`` resolves it; Ray exposes neither.
    from ray._common.network_utils import parse_address
    from ray._private import services

    scheme = address.split("://", 1)[0] if "://" in address else None
    if scheme is not None:
        hint = {"http": "; http://HOST:8265 is the dashboard, which `ray job submit` takes",
                "https": "; https://HOST:8265 is the dashboard, which `ray job submit` takes",
                "ray": "; ray:// (Ray Client) is not supported: run specsweep on a cluster node or as a job"}
        raise LaunchError(f"{origin} {address!r}: give the head's HOST:PORT as `ray start --head` prints it "
                          f"(port 6379 by default){hint.get(scheme, '')}")
    parsed = parse_address(address)
    if parsed is not None and _is_loopback(parsed[0]):
        # A head on loopback has its nodes on this machine; Ray would otherwise rewrite
        # 127.0.0.1 to the machine's network address, where that head does not listen.
        _keep_on_loopback()
    try:
        gcs_address = services.canonicalize_bootstrap_address_or_die(address)
    except (ValueError, ConnectionError) as err:
        raise LaunchError(f"{origin} {address!r}: {err} (expected HOST:PORT of the head, or `auto`)") from None
    _check_reachable(f"{origin} {address!r}", gcs_address)
    _use_token_like_ray_cli()
    _probe_head(gcs_address)
    try:
        ray.init(address=gcs_address, log_to_driver=True)
    except Exception as err:  # noqa: BLE001 - Ray raises many kinds; the user gets one line
        raise LaunchError(f"joining the Ray cluster at {gcs_address} failed: {first_line(err)}") from None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_reachable(given: str, gcs_address: str) -> None:
    import socket

    from ray._common.network_utils import parse_address

    host, port = parse_address(gcs_address)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except socket.gaierror:
        raise LaunchError(f"{given}: cannot resolve host {host!r}") from None
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise LaunchError(f"no Ray cluster answers at {gcs_address} ({reason}): start its head with "
                          f"`ray start --head`, or give the address that command printed") from None


def _use_token_like_ray_cli() -> None:
    """Like ``ray start`` and the ``ray`` CLI: a token in ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` turns token authentication on unless
    ``RAY_AUTH_MODE`` says otherwise (``ray.init`` with an address does not do this)."""
    import logging

    # Private: the token lookup `ray start` and the ``ray`` CLI use; ``ray.init`` has none.
    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

    # Its warning speaks of starting a cluster, which joining does not.
    setup_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = setup_logger.level
    setup_logger.setLevel(logging.ERROR)
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_logger.setLevel(level)


def _probe_head(gcs_address: str) -> None:
    """Ask the head for its Ray and Python versions, on a thread with a deadline because
    a port that is not a Ray head keeps Ray's client waiting for minutes."""
    import threading

    import ray
    from ray.exceptions import AuthenticationError

    # Private: a client of the head's GCS asked for the cluster's versions, and Ray's own
    # comparison of them; ``ray.init`` only compares them after minutes of retries.
    from ray._common.usage.usage_lib import get_cluster_metadata
    from ray._private.utils import check_version_info
    from ray._raylet import GcsClient

    answer: Dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["metadata"] = get_cluster_metadata(GcsClient(address=gcs_address))
        except Exception as err:  # noqa: BLE001 - reported below
            answer["error"] = err

    thread = threading.Thread(target=ask, name="specsweep-ray-probe", daemon=True)
    thread.start()
    thread.join(_CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise LaunchError(f"{gcs_address} accepts connections but did not answer as a Ray head within "
                          f"{_CONNECT_TIMEOUT_S} s: give the head's GCS port (`ray start --head --port`, "
                          f"6379 by default), not its dashboard or client port")
    error = answer.get("error")
    if isinstance(error, AuthenticationError):
        token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        problem = "refused this machine's authentication token" if token_mode else (
            "requires token authentication and this machine has no token")
        raise LaunchError(f"the Ray cluster at {gcs_address} {problem}: copy the head's token (`ray get-auth-token` "
                          f"there) to ~/.ray/auth_token here, or set RAY_AUTH_TOKEN")
    if error is not None:
        raise LaunchError(f"the Ray head at {gcs_address} did not answer: {first_line(error)}")
    metadata = answer.get("metadata")
    if metadata:
        try:
            check_version_info(metadata, "this machine")
        except RuntimeError:
            raise LaunchError(
                f"the Ray cluster at {gcs_address} runs Ray {metadata['ray_version']} on Python "
                f"{metadata['python_version']}, this machine Ray {ray.__version__} on Python "
                f"{platform.python_version()}: install the same versions here "
                f"as on the cluster") from None


def join_ray(address: Optional[str], num_cpus: Optional[int]) -> None:
    """:func:`start_ray`, with its failures as a LaunchError."""
    try:
        start_ray(address, num_cpus)
    except LaunchError:
        raise
    except (ConnectionError, RuntimeError, ValueError, TimeoutError, OSError) as err:
        target = cluster_address(address)
        where = f"the Ray cluster at {target}" if target else "a local Ray"
        raise LaunchError(f"could not start or join {where}: {err}") from err


def check_cluster(spec: SweepSpec, address: str) -> None:
    """Refuse trials that ask for more CPUs or GPUs than the joined cluster has."""
    import ray

    have = ray.cluster_resources()
    problems = [f"resources.{key}: a trial asks for {asked:g} but the cluster at {address} has {have.get(kind, 0):g}"
                for key, kind, asked in (("cpus", "CPU", spec.resources.cpus), ("gpus", "GPU", spec.resources.fixed_gpus))
                if asked > have.get(kind, 0)]
    if problems:
        raise SpecError("resources", problems)
