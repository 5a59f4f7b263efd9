"""Without Ray: calibration statistics merge exactly, and the cluster checks refuse what cannot run."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from flux2_int8.quantization.observers import AbsHistogram, InputAmaxObserver
from flux2_int8.scale_out.cluster import Cluster, ClusterOptions, ScaleOutError, check_address, check_fits


def _batches() -> list[torch.Tensor]:
    """Values whose range grows, with exact powers of two at the top of a range (the bins' edge case)."""
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(4000, generator=generator) * scale for scale in (0.01, 1.0, 40.0, 0.5)]
    batches.insert(1, torch.tensor([0.25, -1.0, 0.0]))
    batches.append(torch.tensor([64.0, 2.0**-30]))
    return batches


def _histogram(batches) -> AbsHistogram:
    histogram = AbsHistogram(bins=256)
    for batch in batches:
        histogram.add(batch)
    return histogram


@pytest.mark.parametrize("split", [1, 2, 4, 5])
def test_histograms_of_any_split_merge_to_the_one_histogram_in_any_order(split):
    batches = _batches()
    whole = _histogram(batches)
    parts = [_histogram(batches[i::split]) for i in range(split)]
    for order in (parts, parts[::-1]):
        merged = AbsHistogram(bins=256)
        for part in order:
            merged.merge(part)
        assert torch.equal(merged.counts, whole.counts)
        assert (merged.upper, merged.amax) == (whole.upper, whole.amax)
    assert whole.upper / 2 <= whole.amax < whole.upper  # the smallest power of two above the max


def test_the_histogram_does_not_depend_on_the_order_of_values():
    batches = _batches()
    assert torch.equal(_histogram(batches).counts, _histogram(batches[::-1]).counts)


def test_observer_states_merge_into_the_observer_that_saw_everything():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    inputs = [torch.randn(3, 8) * scale for scale in (1.0, 8.0, 0.1, 2.0)]

    def observe(batch):
        observer = InputAmaxObserver(model, ["0", "1"], channels=["0"], histogram_bins=64)
        with observer, torch.no_grad():
            for x in batch:
                model(x)
        return observer

    whole = observe(inputs)
    merged = InputAmaxObserver(model, ["0", "1"], channels=["0"], histogram_bins=64)
    for part in (inputs[1::2], inputs[0::2]):
        merged.merge(observe(part).state())
    assert merged.amax == whole.amax and merged.calls == whole.calls
    assert torch.equal(merged.channel_amax["0"], whole.channel_amax["0"])
    for name in ("0", "1"):
        assert torch.equal(merged.histograms[name].counts, whole.histograms[name].counts)
        assert merged.percentile(99.0) == whole.percentile(99.0)


@pytest.mark.parametrize("address", ["local", "auto", "ray://head:10001", "10.0.0.5:6379", "head-node:6379"])
def test_addresses_ray_accepts(address):
    check_address(address)


@pytest.mark.parametrize("address", ["", "head", "http://head:8265", "head:port"])
def test_other_addresses_are_refused(address):
    with pytest.raises(ScaleOutError, match="expected local, auto"):
        check_address(address)


def test_bad_pool_sizes_are_refused():
    with pytest.raises(ScaleOutError, match="--workers 0"):
        ClusterOptions(workers=0)
    with pytest.raises(ScaleOutError, match="--cpus-per-worker"):
        ClusterOptions(cpus_per_worker=0)


def test_a_pool_the_cluster_cannot_hold_is_refused():
    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    total = {"CPU": 16.0, "GPU": 2.0}
    check_fits(Cluster("auto", 2, 1.0, 4.0), total, nodes)
    with pytest.raises(ScaleOutError, match="needs 3 GPUs, the Ray cluster at auto has 2"):
        check_fits(Cluster("auto", 3, 1.0, 4.0), total, nodes)
    with pytest.raises(ScaleOutError, match="needs 24 CPUs"):
        check_fits(Cluster("auto", 2, 0.0, 12.0), total, nodes)
    with pytest.raises(ScaleOutError, match=r"no node .* has that many GPUs \(the largest has 1\)"):
        check_fits(Cluster("auto", 1, 2.0, 1.0), total, nodes)


def test_pool_flags_without_ray_are_refused():
    from flux2_int8.commands import ray_options

    args = argparse.Namespace(ray=None, workers=2, gpus_per_worker=None, cpus_per_worker=1.0, device=None)
    with pytest.raises(ScaleOutError, match="go with --ray"):
        ray_options.connect(args)
    assert ray_options.connect(argparse.Namespace(ray=None, workers=1, gpus_per_worker=None, cpus_per_worker=1.0, device=None)) is None
