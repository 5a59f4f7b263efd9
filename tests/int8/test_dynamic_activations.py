"""Dynamic (per-token) activation quantization: every backend against exact integer math."""

from __future__ import annotations

import pytest
import torch

from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.backends import BACKENDS
from flux2_int8.int8.kernels import row_scale


def dynamic_layer(k: int, n: int, bias: bool = False, seed: int = 0) -> Int8Linear:
    generator = torch.Generator().manual_seed(seed)
    layer = Int8Linear(k, n, bias=bias, activations="dynamic")
    layer.weight.data = torch.randint(-127, 128, (n, k), generator=generator, dtype=torch.int8)
    layer.weight_scale.copy_(torch.rand(n, generator=generator) * 1e-2 + 1e-3)
    if bias:
        layer.bias.data = torch.randn(n, generator=generator)
    return layer


def per_token_reference(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """Each row's own scale (max |row| / 127), int64 products, float64 rescale.

    Scale and rounding are float32, as the layer's: in float64 an element that lands
    within an ulp of a .5 tie can round the other way and move the result by 1e-4.
    """
    amax = x.float().abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    x_int = torch.clamp(torch.round(x.float() / scale), -128, 127).long()
    y = (x_int @ layer.weight.long().t()).double() * scale.double() * layer.weight_scale.double()
    return y + layer.bias.double() if layer.bias is not None else y


def test_a_dynamic_layer_holds_no_input_scale():
    layer = dynamic_layer(32, 16)
    assert layer.input_scale is None and not layer.has_input_scale and layer.activations == "dynamic"
    assert "input_scale" not in layer.state_dict()


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("m, k, n", [(1, 64, 96), (33, 256, 128), (40, 24, 20)])
@pytest.mark.parametrize("bias", [False, True])
def test_every_backend_quantizes_each_token_with_its_own_scale(backend, m, k, n, bias):
    layer = dynamic_layer(k, n, bias)
    generator = torch.Generator().manual_seed(m * k + n)
    x = torch.randn(m, k, generator=generator) * torch.logspace(-2, 2, m)[:, None]  # tokens of very different ranges
    layer.backend = backend
    # Integer products are exact; float32 scales and rescale against float64 give ~1e-7.
    assert relative_error(layer(x), per_token_reference(layer, x)) < 1e-6


def test_an_all_zero_token_gives_the_bias_alone():
    layer = dynamic_layer(16, 8, bias=True)
    x = torch.zeros(2, 16)
    x[1] = torch.randn(16)
    y = layer(x)
    torch.testing.assert_close(y[0], layer.bias.data)
    assert torch.isfinite(y).all()


def test_dynamic_scale_is_the_row_amax_over_127():
    x = torch.tensor([[1.0, -2.54, 0.5], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(row_scale(x), torch.tensor([[2.54 / 127], [1.0]]))


def test_compiled_dynamic_layer_matches_eager_without_graph_breaks():
    layer = dynamic_layer(64, 48, bias=True)
    x = torch.randn(2, 12, 64)
    explanation = torch._dynamo.explain(layer)(x)
    assert explanation.graph_break_count == 0
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), layer(x), rtol=1e-6, atol=1e-6)
