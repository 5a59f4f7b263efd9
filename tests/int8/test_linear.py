"""Int8Linear backends agree with each other and with plain integer math."""

from __future__ import annotations

import pytest
import torch

from flux2_int8.int8 import Int8Linear, quantize_activation, set_int8_backend
from flux2_int8.int8.backends import BACKENDS, pick_backend
from flux2_int8.evaluate.metrics import relative_error


def make_layer(k: int, n: int, bias: bool = False, seed: int = 0) -> Int8Linear:
    generator = torch.Generator().manual_seed(seed)
    layer = Int8Linear(k, n, bias=bias)
    layer.weight.data = torch.randint(-127, 128, (n, k), generator=generator, dtype=torch.int8)
    layer.weight_scale.copy_(torch.rand(n, generator=generator) * 1e-2 + 1e-3)
    layer.input_scale.fill_(0.02)
    if bias:
        layer.bias.data = torch.randn(n, generator=generator)
    return layer


def integer_reference(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """Exact int64 products, then the rescale in float64."""
    x_int = quantize_activation(x, layer.input_scale).long()
    accumulator = x_int @ layer.weight.long().t()
    y = accumulator.double() * (layer.input_scale.double() * layer.weight_scale.double())
    return y + layer.bias.double() if layer.bias is not None else y


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("m, k, n", [(1, 64, 96), (33, 256, 128), (40, 24, 20)])
@pytest.mark.parametrize("bias", [False, True])
def test_every_backend_matches_exact_integer_math(backend, m, k, n, bias):
    layer = make_layer(k, n, bias)
    x = torch.randn(m, k) * 1.5
    layer.backend = backend
    assert relative_error(layer(x), integer_reference(layer, x)) < 1e-6


def test_emulation_is_bit_exact_while_the_accumulator_fits_float32():
    layer = make_layer(64, 32)  # |acc| <= 64 * 127 * 127 < 2**24
    x = torch.randn(20, 64)
    layer.backend = "emulated"
    expected = (quantize_activation(x, layer.input_scale).long() @ layer.weight.long().t()).float()
    got = (layer(x) / (layer.input_scale * layer.weight_scale))
    torch.testing.assert_close(got.round(), expected, rtol=0, atol=0)


def test_activation_quantization_rounds_half_to_even_and_saturates():
    scale = torch.tensor(0.5)
    x = torch.tensor([[0.25, 0.75, -0.25, 1000.0, -1000.0, 63.4]])
    assert quantize_activation(x, scale).tolist() == [[0, 2, 0, 127, -128, 127]]


def test_leading_dimensions_and_output_dtype_follow_the_input():
    layer = make_layer(32, 16)
    x = torch.randn(2, 5, 32, dtype=torch.bfloat16)
    y = layer(x)
    assert y.shape == (2, 5, 16) and y.dtype == torch.bfloat16


def test_auto_picks_int_mm_on_cuda_with_legal_shapes_and_onednn_on_vnni_cpus(monkeypatch):
    from flux2_int8.int8 import backends

    monkeypatch.setattr(backends, "TRITON_IN_AUTO", False)  # the default: Triton is opt-in
    monkeypatch.setattr(backends, "CPU_HAS_VNNI", False)
    assert pick_backend(torch.device("cpu"), 3072, 3072) == "emulated"
    monkeypatch.setattr(backends, "CPU_HAS_VNNI", True)
    monkeypatch.setattr(backends, "_PROBE", [(True, True)])
    assert pick_backend(torch.device("cpu"), 3072, 3070) == "onednn"
    assert pick_backend(torch.device("cpu"), 64, 576) == "emulated"  # nano-sized: overhead-bound, and exact emulated
    assert pick_backend(torch.device("cpu"), 1024, 64) == "onednn"  # small, but K * 128 * 128 reaches 2**24
    assert pick_backend(torch.device("cpu"), 512, 1024) == "onednn"  # exact emulated, but past the small-layer size
    monkeypatch.setattr(backends, "_PROBE", [(False, False)])  # oneDNN has no int8 kernel for this CPU
    assert pick_backend(torch.device("cpu"), 3072, 3070) == "int_mm"
    monkeypatch.setattr(backends, "ONEDNN_INSTALLED", False)
    assert pick_backend(torch.device("cpu"), 3072, 3070) == "int_mm"
    assert pick_backend(torch.device("cuda"), 3072, 3072) == "int_mm"  # any M: M <= 16 is padded to 17 rows
    assert pick_backend(torch.device("cuda"), 3072, 3070) == "emulated"


def test_set_int8_backend_rejects_unknown_names_with_the_package_error():
    from flux2_int8.errors import Flux2Int8Error

    with pytest.raises(ValueError, match="unknown INT8 backend") as caught:
        set_int8_backend(torch.nn.Sequential(make_layer(8, 8)), "fast")
    assert isinstance(caught.value, Flux2Int8Error)


def test_compiled_layer_matches_eager():
    layer = make_layer(64, 48, bias=True)
    x = torch.randn(24, 64)
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(x), layer(x), rtol=1e-6, atol=1e-6)
