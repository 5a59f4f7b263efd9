"""LoRA on a ConvRot layer: the unfused branch reads the unrotated input; fusing merges in the rotated basis."""

from __future__ import annotations

import numpy as np
import torch
from peft import LoraConfig, inject_adapter_in_model

from flux2_int8 import Int8Linear
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.int8.weights import quantize_weight, weight_scale_per_channel
from flux2_int8.lora import register_peft_layers


def sylvester_rotated(matrix: torch.Tensor, group: int) -> torch.Tensor:
    """[R, K] float64 -> each group of G columns times the Sylvester Hadamard / sqrt(G) (the test's own)."""
    import scipy.linalg

    h = torch.from_numpy(scipy.linalg.hadamard(group) / np.sqrt(group))
    rows, width = matrix.shape
    return (matrix.double().reshape(rows, width // group, group) @ h.t()).reshape(rows, width)


def test_lora_on_a_rotated_layer_unfused_and_fused():
    register_peft_layers()
    generator = torch.Generator().manual_seed(0)
    k, n, group = 64, 48, 32  # 32: a Sylvester group
    weight = torch.randn(n, k, generator=generator, dtype=torch.float64) * 0.1
    layer = Int8Linear(k, n, activations="dynamic", rotation_group_size=group)
    stored = sylvester_rotated(weight, group)
    layer.weight_scale.copy_(weight_scale_per_channel(stored))
    layer.weight.data = quantize_weight(stored, layer.weight_scale)
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["0"]), torch.nn.Sequential(layer))
    wrapped = model[0]
    with torch.no_grad():
        wrapped.lora_B["default"].weight.normal_(generator=generator)
    a, b = wrapped.lora_A["default"].weight.detach().double(), wrapped.lora_B["default"].weight.detach().double()
    x = torch.randn(16, k, generator=generator)
    exact = x.double() @ (weight + 2.0 * (b @ a)).t()
    torch.set_grad_enabled(False)
    unfused = wrapped(x)
    assert relative_error(unfused, exact) < 2e-2  # INT8 error of the base; the branch is float
    wrapped.merge()
    assert layer.rotation_group_size == group
    merged = wrapped._original_tensors["weight"].double() * wrapped._original_tensors["weight_scale"].double()[:, None]
    merged = merged + sylvester_rotated(2.0 * (b @ a), group)
    expected_scale = weight_scale_per_channel(merged)
    assert torch.allclose(layer.weight_scale, expected_scale.float(), rtol=1e-6)
    assert (layer.weight.int() - quantize_weight(merged, expected_scale).int()).abs().max() <= 1
    assert relative_error(wrapped(x), exact) < 2e-2
    wrapped.unmerge()
    assert torch.equal(wrapped(x), unfused)
