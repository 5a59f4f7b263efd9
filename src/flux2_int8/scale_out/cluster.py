"""Joining (or starting) a Ray cluster, and refusing a run the cluster cannot hold before it starts.

Ray waits forever for resources nobody has: asked for 8 GPUs on a cluster of 4, a
run would hang at 0 %. So the cluster's resources are read as soon as we connect and
a worker pool that cannot be placed is an error, before any model loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import Flux2Int8Error

LOCAL = "local"
# host:port, as `ray start --head` prints it; ray:// addresses go to Ray Client.
_HOST_PORT = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$")


class ScaleOutError(Flux2Int8Error):
    """Ray is missing, the cluster cannot be reached, or it lacks what the run asks for."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run and how wide: the `--ray`, `--workers`, `--gpus-per-worker`, `--cpus-per-worker` flags.

    `address` is `local` (start Ray on this machine, or use the one this process
    already started), `auto` (the cluster this machine belongs to), `ray://host:port`
    or `host:port`. `gpus_per_worker` None means 0 for `--device cpu`, 1 for a CUDA
    device, and without `--device` 1 where the cluster has GPUs, else 0.
    """

    address: str = LOCAL
    workers: int = 1
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        check_address(self.address)
        if self.workers < 1:
            raise ScaleOutError(f"--workers {self.workers}: give at least 1")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ScaleOutError(f"--gpus-per-worker {self.gpus_per_worker:g}: must be 0 or more")
        if self.cpus_per_worker <= 0:
            raise ScaleOutError(f"--cpus-per-worker {self.cpus_per_worker:g}: must be more than 0")


@dataclass(frozen=True)
class Cluster:
    """A connected cluster and the worker pool placed on it: `workers` actors of these resources each."""

    address: str
    workers: int
    gpus_per_worker: float
    cpus_per_worker: float


def check_address(address: str) -> None:
    if address in (LOCAL, "auto") or address.startswith("ray://") or _HOST_PORT.match(address):
        return
    raise ScaleOutError(f"--ray {address!r}: expected local, auto, ray://HOST:PORT or HOST:PORT (the address `ray start --head` prints)")


def import_ray() -> Any:
    """Ray, or one line saying how to install it (it is an optional extra)."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the part we use; `ray` alone lacks it)
    except ImportError as error:
        raise ScaleOutError(f"--ray needs Ray Data ({error.name} is not installed): pip install 'flux2-int8[ray]'") from None
    return ray


def connect(options: ClusterOptions, device: str | None = None) -> Cluster:
    """Join or start Ray and check the worker pool fits on it, before anything loads.

    A Ray already running in this process (a notebook's, a test session's) is used
    as it is, whatever `address` says. A local Ray started here stops with the process
    (Ray's own exit hook) or at `ray.shutdown()`.
    """
    ray = import_ray()
    if not ray.is_initialized():
        _init(ray, options.address)
    resources = ray.cluster_resources()
    gpus = options.gpus_per_worker
    if gpus is None:  # a GPU each where there are GPUs, or where --device asks for one
        gpus = 0.0 if device == "cpu" or (device is None and not resources.get("GPU")) else 1.0
    if gpus == 0 and device is not None and device.startswith("cuda"):
        raise ScaleOutError(f"--device {device} with --gpus-per-worker 0: the workers would see no GPU; give --gpus-per-worker 1 (or more)")
    cluster = Cluster(options.address, options.workers, gpus, options.cpus_per_worker)
    check_fits(cluster, resources, _node_resources(ray))
    return cluster


def _init(ray: Any, address: str) -> None:
    # Worker logs stay on the workers (one progress bar here); errors still come back as exceptions.
    settings: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    try:
        if address == LOCAL:
            ray.init(**settings)
        else:
            ray.init(address=address, **settings)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ScaleOutError(f"--ray {address}: cannot connect ({str(error).splitlines()[0] if str(error) else type(error).__name__}); start the head with `ray start --head` and pass the address it prints") from None


def _node_resources(ray: Any) -> list[dict[str, float]]:
    return [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]


def check_fits(cluster: Cluster, total: dict[str, float], nodes: list[dict[str, float]]) -> None:
    """Refuse a pool the cluster cannot place: too few GPUs/CPUs in all, or no node big enough for one worker."""
    for kind, per_worker in (("GPU", cluster.gpus_per_worker), ("CPU", cluster.cpus_per_worker)):
        flag = f"--{kind.lower()}s-per-worker"
        needed, have = per_worker * cluster.workers, total.get(kind, 0.0)
        if needed > have:
            raise ScaleOutError(f"--workers {cluster.workers} x {flag} {per_worker:g} needs {needed:g} {kind}s, the Ray cluster at {cluster.address} has {have:g}: ask for fewer (Ray would otherwise wait for them forever)")
        if per_worker > 0 and nodes and not any(node.get(kind, 0.0) >= per_worker for node in nodes):
            largest = max(node.get(kind, 0.0) for node in nodes)
            raise ScaleOutError(f"{flag} {per_worker:g}: no node of the Ray cluster at {cluster.address} has that many {kind}s (the largest has {largest:g})")
