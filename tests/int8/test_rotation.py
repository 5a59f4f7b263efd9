"""ConvRot layers: the Hadamard matrices, every backend against float64 math, and the layer's
rotation surviving casts, state dicts, q/k/v fusion and LoRA fusing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from diffusers.models.transformers.transformer_flux2 import Flux2Attention

from flux2_int8.errors import Flux2Int8Error
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.backends import BACKENDS
from flux2_int8.int8.fusion import fuse_qkv_projections
from flux2_int8.int8.rotation import hadamard, rotate_weight
from flux2_int8.int8.weights import quantize_weight, weight_scale_per_channel


def regular_hadamard(group: int) -> np.ndarray:
    h4 = np.array([[1, 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]], dtype=np.float64)
    matrix = np.ones((1, 1))
    while matrix.shape[0] < group:
        matrix = np.kron(matrix, h4)
    return matrix / np.sqrt(group)


@pytest.mark.parametrize("group", [4, 16, 64, 256])
def test_powers_of_four_get_the_regular_hadamard(group):
    matrix = hadamard(group).double()
    np.testing.assert_allclose(matrix.numpy(), regular_hadamard(group), rtol=0, atol=1e-7)
    sums = matrix.sum(dim=1)
    assert torch.allclose(sums, sums[0].expand_as(sums))  # every row sums alike, unlike Sylvester's
    assert torch.allclose(matrix @ matrix.t(), torch.eye(group, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("group", [2, 8, 32, 128])
def test_other_powers_of_two_get_sylvester(group):
    np.testing.assert_allclose(hadamard(group).double().numpy(), scipy.linalg.hadamard(group) / np.sqrt(group), rtol=0, atol=1e-7)


@pytest.mark.parametrize("group", [0, 1, 3, 12, 48])
def test_impossible_group_sizes_are_refused(group):
    with pytest.raises(ValueError, match="power of 2"):
        Int8Linear(96, 8, rotation_group_size=group)


def test_a_group_size_must_divide_the_input():
    with pytest.raises(ValueError, match="64 does not divide 96"):
        Int8Linear(96, 8, rotation_group_size=64)


def rotated_layer(k: int, n: int, group: int, activations: str = "dynamic", bias: bool = False, pre_quant_scale: bool = False, seed: int = 0):
    """A ConvRot layer quantized from a float weight [N, K]; returns (layer, float weight)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator) * 0.05
    layer = Int8Linear(k, n, bias=bias, activations=activations, pre_quant_scale=pre_quant_scale, rotation_group_size=group)
    smooth = torch.rand(k, generator=generator) + 0.5 if pre_quant_scale else torch.ones(k)
    if pre_quant_scale:
        layer.pre_quant_scale.copy_(smooth)
    stored = rotate_weight(weight / smooth, group)
    layer.weight_scale.copy_(weight_scale_per_channel(stored))
    layer.weight.data = quantize_weight(stored, layer.weight_scale)
    if activations == "static":
        layer.input_scale.fill_(0.04)
    if bias:
        layer.bias.data = torch.randn(n, generator=generator)
    return layer, weight


def float64_reference(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """The layer's math in float64 with the test's own Hadamard (numpy): smooth, rotate, quantize, integer product."""
    group = layer.rotation_group_size
    x = x.double()
    if layer.pre_quant_scale is not None:
        x = x * layer.pre_quant_scale.double()
    rows, width = x.shape
    h = torch.from_numpy(regular_hadamard(group) if (group.bit_length() - 1) % 2 == 0 else scipy.linalg.hadamard(group) / np.sqrt(group))
    x = (x.reshape(rows, width // group, group) @ h.t()).reshape(rows, width)
    if layer.input_scale is not None:
        step = layer.input_scale.double()
    else:
        amax = x.abs().amax(dim=1, keepdim=True)
        step = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    y = (torch.clamp(torch.round(x / step), -128, 127).long() @ layer.weight.long().t()).double() * step * layer.weight_scale.double()
    return y + layer.bias.double() if layer.bias is not None else y


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("k, group, activations", [(512, 256, "dynamic"), (96, 4, "static"), (64, 32, "dynamic")])
def test_every_backend_rotates_before_quantizing(backend, k, group, activations):
    layer, _ = rotated_layer(k, 40, group, activations, bias=True, pre_quant_scale=True)
    layer.backend = backend
    x = torch.randn(24, k, generator=torch.Generator().manual_seed(k)) * torch.logspace(-1, 1, k)  # uneven channels
    # float32 rotation against float64: a tie within an ulp may round one step away (~1e-6).
    assert relative_error(layer(x), float64_reference(layer, x)) < 1e-5


def test_rotation_removes_a_channel_outlier_from_the_quantization_error():
    """What ConvRot is for: one channel 100x the rest ruins per-token steps, a rotation spreads it."""
    k, n = 256, 64
    plain, weight = rotated_layer(k, n, 256)
    x = torch.randn(64, k, generator=torch.Generator().manual_seed(3))
    x[:, 7] *= 100
    exact = x.double() @ weight.double().t()
    plain_layer = Int8Linear(k, n, activations="dynamic")
    plain_layer.weight_scale.copy_(weight_scale_per_channel(weight))
    plain_layer.weight.data = quantize_weight(weight, plain_layer.weight_scale)
    assert relative_error(plain(x), exact) * 3 < relative_error(plain_layer(x), exact)


def test_bf16_input_gives_bf16_output_and_the_rotation_stays_float32():
    layer, _ = rotated_layer(64, 16, 16)
    layer = layer.to(torch.bfloat16)
    assert layer.rotation.dtype == torch.float32 and layer.weight_scale.dtype == torch.float32
    assert layer(torch.randn(3, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert "rotation" in layer.state_dict() and "convrot=16" in repr(layer)


def test_state_dict_round_trip_keeps_the_rotation():
    layer, _ = rotated_layer(64, 16, 16)
    again = Int8Linear(64, 16, activations="dynamic", rotation_group_size=16, device="meta")
    again.load_state_dict(layer.state_dict(), assign=True)
    x = torch.randn(5, 64)
    assert torch.equal(again(x), layer(x))


def attention(group: int | None, groups: tuple[int | None, int | None, int | None] | None = None) -> Flux2Attention:
    torch.manual_seed(0)
    attn = Flux2Attention(query_dim=32, heads=2, dim_head=16, added_kv_proj_dim=32).eval()
    for index, name in enumerate(("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")):
        layer_group = groups[index % 3] if groups else group
        layer, _ = rotated_layer(32, 32, layer_group, seed=index) if layer_group else (None, None)
        if layer is None:
            layer = Int8Linear(32, 32, activations="dynamic")
            weight = getattr(attn, name).weight.detach()
            layer.weight_scale.copy_(weight_scale_per_channel(weight))
            layer.weight.data = quantize_weight(weight, layer.weight_scale)
        setattr(attn, name, layer)
    return attn


def test_qkv_fusion_keeps_the_rotation():
    attn = attention(16)
    x = torch.randn(2, 6, 32)
    separate = [getattr(attn, name)(x) for name in ("to_q", "to_k", "to_v")]
    fuse_qkv_projections(attn)
    assert attn.to_qkv.rotation_group_size == 16
    assert torch.equal(attn.to_qkv(x), torch.cat(separate, dim=-1))


def test_qkv_fusion_refuses_different_rotations():
    attn = attention(None, groups=(16, 16, None))
    with pytest.raises(Flux2Int8Error, match="ConvRot rotations differ"):
        fuse_qkv_projections(attn)
    assert hasattr(attn, "to_q")  # nothing changed
