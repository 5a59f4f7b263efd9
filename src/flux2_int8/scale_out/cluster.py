"""Joining (or starting) a Ray cluster, and refusing a run the cluster cannot hold before it starts.

Ray waits forever for resources nobody has: asked for 8 GPUs on a cluster of 4, a
run would hang at 0 %. So the cluster's resources are read as soon as we connect and
a worker pool that cannot be placed is an error, before any model loads.

Ray also retries an address that does not answer for minutes, deaf to Ctrl-C
(`--ray 127.0.0.1:1`). So a HOST:PORT or ray:// address is first probed with a plain
socket bounded by `timeout` (interruptible): it must answer as a gRPC server does. Only
then is `ray.init` called, in a helper thread the main thread waits on in short slices
(a backstop): past the timeout, or at Ctrl-C / SIGTERM, the run ends with one line
naming the address.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from .. import limits
from ..errors import Flux2Int8Error

LOCAL = "local"
# host:port, as `ray start --head` prints it; ray:// addresses go to Ray Client.
_HOST_PORT = re.compile(r"^(?P<client>ray://)?(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?$")
RAY_CLIENT_PORT = 10001  # Ray Client's default, what `ray://HOST` means
DEFAULT_TIMEOUT = 15.0  # seconds to wait for an address to answer
# HTTP/2's client connection preface and an empty SETTINGS frame; a gRPC server answers with its SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_FRAME_HEADER_BYTES, _SETTINGS_FRAME = 9, 0x04


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
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        check_address(self.address)
        try:
            limits.WORKERS.check(self.workers, "--workers")
            limits.check_gpus_per_worker(self.gpus_per_worker)
            limits.CPUS_PER_WORKER.check(self.cpus_per_worker, "--cpus-per-worker")
            limits.RAY_TIMEOUT.check(self.timeout, "--ray-timeout")
        except limits.RangeError as error:
            raise ScaleOutError(str(error)) from None


@dataclass(frozen=True)
class Cluster:
    """A connected cluster and the worker pool placed on it: `workers` actors of these resources each."""

    address: str
    workers: int
    gpus_per_worker: float
    cpus_per_worker: float


def check_address(address: str) -> None:
    """Refuse an address that is none of local, auto, HOST:PORT, ray://HOST:PORT, or whose port is not 1..65535."""
    if address in (LOCAL, "auto"):
        return
    match = _HOST_PORT.match(address)
    if match is None or (match["port"] is None and match["client"] is None):
        raise ScaleOutError(f"--ray {address!r}: expected local, auto, ray://HOST:PORT or HOST:PORT (the address `ray start --head` prints)")
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise ScaleOutError(f"--ray {address!r}: port {int(match['port'])} is not a TCP port (1 to 65535)")


def probe(address: str, timeout: float) -> None:
    """Refuse a HOST:PORT / ray:// address that does not answer as a gRPC server within `timeout` seconds.

    Ray's head (GCS) and its client server speak gRPC, i.e. HTTP/2: sent the HTTP/2
    client preface, they answer at once with a SETTINGS frame. A port nobody listens on,
    one that accepts and stays silent, or another kind of server is told apart here with
    a plain socket (interruptible, bounded by `timeout`), before Ray, which would retry
    for minutes, is asked. local and auto are not probed (Ray finds those itself).
    """
    if address == "auto" and _HOST_PORT.match(os.environ.get("RAY_ADDRESS", "")):  # what `auto` will use
        address = os.environ["RAY_ADDRESS"]
    match = _HOST_PORT.match(address)
    if match is None or address == LOCAL or (match["port"] is None and match["client"] is None):
        return
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((match["host"], int(match["port"] or RAY_CLIENT_PORT)), timeout=timeout) as connection:
            connection.sendall(_HTTP2_PREFACE)
            answer = _receive(connection, _FRAME_HEADER_BYTES, deadline)
    except TimeoutError:
        reason = f"no answer within {timeout:g} s (--ray-timeout)"
    except OSError as error:
        reason = error.strerror or type(error).__name__
    else:
        if len(answer) == _FRAME_HEADER_BYTES and answer[3] == _SETTINGS_FRAME:
            return
        reason = "something answers there, but not as a Ray head (no gRPC)"
    raise ScaleOutError(f"--ray {address}: cannot connect ({reason}); start the head with `ray start --head` and pass the address it prints")


def _receive(connection: socket.socket, count: int, deadline: float) -> bytes:
    """Up to `count` bytes, fewer if the peer closes; TimeoutError past `deadline`."""
    data = b""
    while len(data) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        connection.settimeout(left)
        chunk = connection.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


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
    device = None if device == "auto" else device  # auto: decided by the cluster's GPUs, below
    ray = import_ray()
    if not ray.is_initialized():
        probe(options.address, options.timeout)
        _init_within(ray, options.address, options.timeout)
    resources = ray.cluster_resources()
    gpus = options.gpus_per_worker
    if gpus is None:  # a GPU each where there are GPUs, or where --device asks for one
        gpus = 0.0 if device == "cpu" or (device is None and not resources.get("GPU")) else 1.0
    if gpus == 0 and device is not None and device.startswith("cuda"):
        raise ScaleOutError(f"--device {device} with --gpus-per-worker 0: the workers would see no GPU; give --gpus-per-worker 1 (or more)")
    cluster = Cluster(options.address, options.workers, gpus, options.cpus_per_worker)
    check_fits(cluster, resources, _node_resources(ray))
    return cluster


def _init_within(ray: Any, address: str, timeout: float) -> None:
    """`_init`, given up after `timeout` seconds for a remote address.

    ray.init runs in a daemon thread; this thread waits in short slices, so Ctrl-C and
    SIGTERM reach the command at once. An init left running is abandoned with the process.
    `local` starts Ray here (nothing to wait for on a network) in this thread, as before.
    """
    if address == LOCAL:
        _init(ray, address)
        return
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            _init(ray, address)
            outcome.append(None)
        except BaseException as error:  # handed to the waiting thread
            outcome.append(error)

    worker = threading.Thread(target=target, name="flux2-int8-ray-init", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.1)
    if not outcome:
        raise ScaleOutError(f"--ray {address}: Ray did not connect within {timeout:g} s (--ray-timeout); is it a Ray head? start one with `ray start --head` and pass the address it prints")
    if outcome[0] is not None:
        raise outcome[0]


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
