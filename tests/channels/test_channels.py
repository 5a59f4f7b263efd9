"""The foldable pairs and the per-channel range observer, below quantization and nano."""

from __future__ import annotations

import torch
from torch import nn

from flux2_int8.channels import ChannelRangeObserver, fold, foldable_consumers, foldable_groups, running_channel_amax


def test_observer_keeps_per_channel_maxima_of_the_named_linears_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    with ChannelRangeObserver(model, ["0"]) as observer:
        model(torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.5, 1.0, -4.0, 0.0]]))
        model(torch.tensor([[[-3.0, 1.0, 0.0, 0.25]]]))  # any leading shape: every token counts
    model(torch.full((1, 4), 100.0))  # after exit: hooks removed
    assert set(observer.channel_amax) == {"0"}
    torch.testing.assert_close(observer.channel_amax["0"], torch.tensor([3.0, 2.0, 4.0, 0.25]))
    assert observer.channel_amax["0"].dtype == torch.float32


def test_running_maximum_merges_with_the_previous_one():
    first = running_channel_amax(torch.tensor([[1.0, -5.0]], dtype=torch.bfloat16))
    assert first.dtype == torch.float32
    torch.testing.assert_close(running_channel_amax(torch.tensor([[-2.0, 1.0]]), first), torch.tensor([2.0, 5.0]))


def test_folding_any_factors_through_every_group_keeps_the_function():
    """Random positive factors on every foldable channel: the tiny transformer computes the same (float32)."""
    from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG, build_tiny_transformer, random_transformer_inputs

    torch.manual_seed(0)
    model = build_tiny_transformer().float().eval()
    inputs = random_transformer_inputs(dict(TINY_TRANSFORMER_CONFIG))
    with torch.no_grad():
        before = model(**inputs).sample.double()
    groups = foldable_groups(model)
    weights = {name: model.get_submodule(name).weight.detach().clone() for name in foldable_consumers(model)}
    assert len(foldable_consumers(model)) == sum(len(g.consumers) for g in groups) == 2 * 4 + 2
    for group in groups:
        width = model.get_submodule(group.consumers[0]).in_features
        fold(model, group, torch.exp(torch.randn(width)))
    with torch.no_grad():
        after = model(**inputs).sample.double()
    assert torch.linalg.norm(after - before) / torch.linalg.norm(before) < 1e-5
    assert all(not torch.allclose(model.get_submodule(name).weight, weight) for name, weight in weights.items())  # every group was folded
