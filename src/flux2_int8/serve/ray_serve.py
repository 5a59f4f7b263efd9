"""Past one GPU: the same app as a Ray Serve deployment, one model per replica.

Ray Serve does the routing between replicas and restarts a replica whose process
dies; each replica runs the app `build_app` makes (its own engine, batcher, queue and
metrics), so the API and the answers are those of `flux2-int8 serve` without `--ray`.
The cluster is joined and checked by `scale_out.cluster` (resources for every replica,
`--device auto` on a CPU cluster), before any replica loads a model.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any

from ..scale_out.cluster import LOCAL, ClusterOptions, ScaleOutError, check_address
from .settings import ModelSpec, ServeConfigError, ServeSettings

APP_NAME = "flux2-int8"


@dataclass(frozen=True)
class ReplicaOptions:
    """`--ray ADDRESS --replicas N --gpus-per-replica G --cpus-per-replica C`."""

    address: str = LOCAL
    replicas: int = 1
    gpus_per_replica: float | None = None
    cpus_per_replica: float = 1.0

    def __post_init__(self) -> None:
        check_address(self.address)
        if self.replicas < 1:
            raise ServeConfigError(f"--replicas {self.replicas}: give at least 1")


def serve_on_ray(spec: ModelSpec, settings: ServeSettings, options: ReplicaOptions, quiet: bool = False, as_json: bool = False) -> None:
    """Deploy `options.replicas` replicas on the cluster, serve on settings.host:port through Ray Serve's proxy, until SIGTERM or Ctrl-C."""
    from ..scale_out.cluster import connect

    try:
        cluster = connect(ClusterOptions(options.address, options.replicas, options.gpus_per_replica, options.cpus_per_replica), spec.device)
    except ScaleOutError as error:  # the same checks as --workers; said in this command's words
        raise ScaleOutError(str(error).replace("--workers", "--replicas").replace("-per-worker", "-per-replica")) from None
    import ray
    from ray import serve

    port = settings.port or _free_port(settings.host)
    serve.start(http_options={"host": settings.host, "port": port})
    if spec.threads is None:
        spec = dataclasses.replace(spec, threads=max(1, int(cluster.cpus_per_worker)))
    serve.run(deployment(spec, settings, cluster.workers, cluster.gpus_per_worker, cluster.cpus_per_worker).bind(), name=APP_NAME, route_prefix="/")
    url = f"http://{settings.host}:{port}"
    if as_json:
        import json

        print(json.dumps({"url": url, "port": port, "replicas": cluster.workers}), flush=True)
    elif not quiet:
        print(f"serving on {url} with {cluster.workers} Ray Serve replica(s); Ctrl-C or SIGTERM stops", flush=True)
    _wait_for_a_signal()
    serve.shutdown()
    ray.shutdown()


def deployment(spec: ModelSpec, settings: ServeSettings, replicas: int, gpus: float, cpus: float) -> Any:
    """The Ray Serve deployment: each replica builds its own engine and app (`serve.ingress` with a builder)."""
    from ray import serve

    def build() -> Any:  # runs in each replica's process
        from .app import build_app
        from .engine import Engine

        return build_app(Engine(spec), settings)

    ingress = serve.ingress(build)(type("Flux2Int8Replica", (), {}))
    return serve.deployment(
        ingress,
        name=APP_NAME,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
        # Each replica's own queue bounds its work (429 past --max-queue); Ray only has to hand requests on.
        max_ongoing_requests=settings.max_queue + settings.max_batch,
        health_check_period_s=2,
        graceful_shutdown_timeout_s=settings.request_timeout,
    )


def _free_port(host: str) -> int:
    """A port free now on `host` (Ray Serve's proxy takes a number, not 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_for_a_signal() -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
