"""The eager fast path: the same integers and floats as the plain ops, bit for bit, with fewer temporaries.

`kernels.quantize_input_eager` and `rescale_accumulator_eager` are what an eager
`Int8Linear` runs; `quantize_input` (`quantize_activation`) and `rescale_accumulator` are the definitions (and what `torch.compile` traces). The blocked CPU form
is forced here on small tensors, with a scratch of a few rows, so that several blocks,
a short last block and rows wider than the scratch are all exercised.
"""

from __future__ import annotations

import pytest
import torch

from flux2_int8.int8 import Int8Linear, kernels
from flux2_int8.int8.backends import BACKENDS


@pytest.fixture(params=["whole", "blocked", "row-by-row"])
def blocking(request, monkeypatch):
    """As in production (small tensors: one block), blocked (7-row blocks), and wider than the scratch (1 row)."""
    if request.param != "whole":
        monkeypatch.setattr(kernels, "_BLOCKED_FROM", 0)
        monkeypatch.setattr(kernels, "SCRATCH_ELEMENTS", 7 * 40 if request.param == "blocked" else 5)
    return request.param


def activations(dtype: torch.dtype, rows: int = 23, width: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=generator) * torch.logspace(-2, 1.5, rows)[:, None]
    x[0, :4] = torch.tensor([0.25, 0.75, -0.25, 1e4])  # ties at scale 0.5 and a saturating value
    x[1] = 0.0  # an all-zero token
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_eager_quantization_gives_the_same_integers(blocking, dtype, mode):
    x = activations(dtype)
    scale = torch.tensor(0.5) if mode == "static" else kernels.row_scale(x)
    assert torch.equal(kernels.quantize_input_eager(x, scale)[0], kernels.quantize_activation(x, scale))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_the_one_pass_input_step_gives_the_same_integers_and_scales(blocking, dtype, mode):
    """Dynamic scales come from each block's min and max, not from an |x| temporary: the same scales."""
    x = activations(dtype)
    scale = torch.tensor(0.5) if mode == "static" else None
    got, got_scale = kernels.quantize_input_eager(x, scale)
    expected, expected_scale = kernels.quantize_input(x, scale)
    assert torch.equal(got, expected) and torch.equal(got_scale, expected_scale)


@pytest.mark.parametrize("group", [4, 32, 256])  # 256 goes through the Kronecker factors
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_the_blocked_rotation_gives_the_integers_of_the_whole_one(blocking, group, mode):
    """Rotated block by block, sums may reassociate: an integer may move by one step at a tie, no further."""
    from flux2_int8.int8.rotation import hadamard

    x = activations(torch.bfloat16, width=512)
    scale = torch.tensor(0.05) if mode == "static" else None
    got, got_scale = kernels.quantize_input_eager(x, scale, hadamard(group))
    expected, expected_scale = kernels.quantize_input(x, scale, hadamard(group))
    moved = (got.int() - expected.int()).abs()
    assert moved.max() <= 1 and moved.float().mean() < 1e-3
    torch.testing.assert_close(got_scale, expected_scale, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
@pytest.mark.parametrize("bias", [False, True])
def test_eager_rescale_gives_the_same_floats(blocking, dtype, mode, bias):
    generator = torch.Generator().manual_seed(1)
    accumulator = torch.randint(-(2**28), 2**28, (23, 40), generator=generator, dtype=torch.int32)  # past 2**24: float32 rounds
    weight_scale = torch.rand(40, generator=generator) * 1e-3
    scale = torch.tensor(0.037) if mode == "static" else torch.rand(23, 1, generator=generator) * 0.1
    bias_vector = torch.randn(40, generator=generator).to(dtype) if bias else None
    got = kernels.rescale_accumulator_eager(accumulator, scale, weight_scale, bias_vector, dtype)
    assert got.dtype == dtype and torch.equal(got, kernels.rescale_accumulator(accumulator, scale, weight_scale, bias_vector, dtype))


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_the_eager_layer_equals_its_plain_ops_form(blocking, mode):
    """The whole int_mm layer, eager fast path vs the plain ops it replaces."""
    generator = torch.Generator().manual_seed(2)
    layer = Int8Linear(40, 24, bias=True, activations=mode)
    layer.weight.data = torch.randint(-127, 128, (24, 40), generator=generator, dtype=torch.int8)
    layer.weight_scale.copy_(torch.rand(24, generator=generator) * 1e-2)
    layer.bias.data = torch.randn(24, generator=generator)
    if mode == "static":
        layer.input_scale.fill_(0.03)
    layer.backend = "int_mm"
    x = activations(torch.bfloat16, rows=3 * 23).reshape(3, 23, 40)
    x2d = x.reshape(-1, 40)
    scale = layer.input_scale if mode == "static" else kernels.row_scale(x2d)
    accumulator = torch._int_mm(kernels.quantize_activation(x2d, scale), layer.weight.t())
    expected = kernels.rescale_accumulator(accumulator, scale, layer.weight_scale, layer.bias, x.dtype)
    assert torch.equal(layer(x), expected.reshape(3, 23, 24))


def test_auto_is_resolved_once_per_device_and_follows_a_backend_change(monkeypatch):
    from flux2_int8.int8 import backends, linear

    asked: list[torch.device] = []
    real = backends.pick_backend
    monkeypatch.setattr(linear, "pick_backend", lambda device, k, n: asked.append(device) or real(device, k, n))
    layer = Int8Linear(8, 8)
    layer.weight.data = torch.ones(8, 8, dtype=torch.int8)
    layer.weight_scale.fill_(1.0)
    layer.input_scale.fill_(1.0)
    x = torch.ones(2, 8)
    for _ in range(3):
        layer(x)
    assert asked == [torch.device("cpu")]
    calls: list[str] = []
    monkeypatch.setitem(BACKENDS, "reference", lambda *operands: calls.append("reference") or kernels.reference_linear(*operands))
    layer.backend = "reference"
    layer(x)
    layer.backend = "auto"
    layer(x)
    assert calls == ["reference"] and asked == [torch.device("cpu")]
