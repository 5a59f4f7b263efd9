"""`--device auto` (the default) resolves against the cluster before the pool is sized: no GPU there, CPU workers."""

from __future__ import annotations

import argparse

import pytest

from flux2_int8.commands import ray_options


def _args(device: str, workers: int = 2, gpus: float | None = None) -> argparse.Namespace:
    return argparse.Namespace(ray="local", workers=workers, gpus_per_worker=gpus, cpus_per_worker=1.0, device=device, ray_timeout=30.0)


def test_auto_on_a_cluster_without_gpus_is_cpu_workers(ray_session):
    if ray_session.cluster_resources().get("GPU"):
        pytest.skip("this Ray cluster has GPUs")
    args = _args("auto")
    cluster = ray_options.connect(args)
    assert (cluster.workers, cluster.gpus_per_worker, args.device) == (2, 0.0, "cpu")


def test_an_explicit_device_is_kept_and_a_gpu_pool_still_refused(ray_session):
    from flux2_int8.scale_out.cluster import ScaleOutError, connect, ClusterOptions

    args = _args("cpu")
    assert ray_options.connect(args).gpus_per_worker == 0.0 and args.device == "cpu"
    if not ray_session.cluster_resources().get("GPU"):
        with pytest.raises(ScaleOutError, match="GPU"):
            ray_options.connect(_args("cuda"))
        assert connect(ClusterOptions("local", 2), "auto").gpus_per_worker == 0.0
