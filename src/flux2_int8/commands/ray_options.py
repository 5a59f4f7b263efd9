"""The `--ray` flags shared by `generate`, `eval` and `quantize`, and the cluster they connect to.

Not a command (cli.py lists the command modules). Nothing here imports Ray at import
time: it is imported only when `--ray` is given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import limits
from .options import gpus_per_worker, in_range

if TYPE_CHECKING:
    from ..scale_out import Cluster

DEFAULT_RAY_TIMEOUT = 15.0  # seconds; a head that answers at all answers in well under this
WORKERS, CPUS_PER_WORKER, RAY_TIMEOUT = in_range(limits.WORKERS), in_range(limits.CPUS_PER_WORKER), in_range(limits.RAY_TIMEOUT)


def ray_address(text: str) -> str:
    """--ray: local, auto, HOST:PORT or ray://HOST:PORT with a port of 1..65535, checked at parse time."""
    from ..scale_out.cluster import ScaleOutError, check_address

    try:
        check_address(text)
    except ScaleOutError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"--ray {text!r}: ")) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out on a Ray cluster (pip install 'flux2-int8[ray]'; see docs/scale-out.md)")
    group.add_argument("--ray", type=ray_address, metavar="ADDRESS", help="run on Ray: local (start one here), auto (this machine's cluster), ray://HOST:PORT or HOST:PORT")
    group.add_argument("--workers", type=WORKERS, default=1, metavar="N", help="actors, each holding one copy of the model (default 1)")
    group.add_argument("--gpus-per-worker", type=gpus_per_worker, metavar="G", help="GPUs per actor (default 0 with --device cpu, else 1 where the cluster has GPUs or --device is cuda)")
    group.add_argument("--cpus-per-worker", type=CPUS_PER_WORKER, default=1.0, metavar="C", help="CPUs per actor, and its torch threads (default 1)")
    group.add_argument("--ray-timeout", type=RAY_TIMEOUT, default=DEFAULT_RAY_TIMEOUT, metavar="SECONDS", help=f"give up on a HOST:PORT or ray:// address that does not answer within this many seconds (default {DEFAULT_RAY_TIMEOUT:g})")


def connect(args: argparse.Namespace) -> Cluster | None:
    """The cluster when `--ray` is given, checked to hold the worker pool before any model loads; else None."""
    from ..scale_out.cluster import ClusterOptions, ScaleOutError, check_address

    if args.ray is None:
        if (args.workers, args.gpus_per_worker, args.cpus_per_worker, getattr(args, "ray_timeout", DEFAULT_RAY_TIMEOUT)) != (1, None, 1.0, DEFAULT_RAY_TIMEOUT):
            raise ScaleOutError("--workers, --gpus-per-worker, --cpus-per-worker and --ray-timeout go with --ray ADDRESS (e.g. --ray local)")
        return None
    check_address(args.ray)
    if getattr(args, "quiet", False) or getattr(args, "json", False):  # Ray's own start-up lines too; read when Ray is first imported
        os.environ.setdefault("RAY_LOGGER_LEVEL", "error")
    if getattr(args, "prompt", None) is not None:  # generate: a single image is not worth a cluster
        raise ScaleOutError("--ray goes with --prompts FILE (a batch); a single --prompt runs here")
    from ..scale_out.cluster import connect as connect_cluster

    requested = None if args.device == "auto" else args.device  # auto: GPUs where the cluster has them
    cluster = connect_cluster(ClusterOptions(args.ray, args.workers, args.gpus_per_worker, args.cpus_per_worker, args.ray_timeout), requested)
    if requested is None:  # the workers load on what they were given, never on a guess of their own
        args.device = "cuda" if cluster.gpus_per_worker > 0 else "cpu"
    return cluster


def eval_fan_out(cluster: Cluster | None, progress: bool = True) -> Callable[[Any, Sequence[Any]], Any] | None:
    """`evaluate(fan_out=...)`: the images made on the cluster (scored here); None without --ray."""
    if cluster is None:
        return None
    from ..scale_out import cluster_fan_out

    return cluster_fan_out(cluster, progress=progress)


def calibrator(cluster: Cluster | None, args: argparse.Namespace) -> Callable[..., Any]:
    """`quantize(calibrator=...)`: the samples calibrated on the cluster, or in this process without --ray."""
    import torch

    from ..quantization.calibrate import run_calibration

    if cluster is None:
        return run_calibration
    from ..scale_out import PipelineSpec, cluster_calibrator

    return cluster_calibrator(cluster, PipelineSpec(args.base, args.transformer, args.device, getattr(torch, args.dtype), args.offload))


def generate(cluster: Cluster, args: argparse.Namespace, jobs: Sequence[Any]) -> None:
    """`generate --prompts --ray`: every job made on the cluster; the summary `generate` prints."""
    import torch

    from ..scale_out import GenerateSpec, generate_on_cluster

    load = {"base": args.base, "transformer": args.transformer, "text_encoder": args.text_encoder, "device": args.device, "dtype": getattr(torch, args.dtype), "compile": args.compile, "offload": args.offload, "local_files_only": args.local_files_only, "activations": args.activations}
    done, steps = generate_on_cluster(cluster, jobs, GenerateSpec(load, args.steps, args.guidance, args.width, args.height), progress=not (args.quiet or args.json))
    total = sum(item.seconds for item in done)
    if args.quiet or args.json:
        return
    print(f"{len(done)} image(s) on {cluster.workers} worker(s), {total:.2f} s of pipeline time, {total / len(done):.2f} s per image ({steps} steps)")
