"""Static and dynamic activations: ComfyUI INT8 files, placeholder scales, the `activations` choice.

The reference is independent of the package's key table and kernels: diffusers' own BFL
converter renames the dequantized float64 weights, and a pre-hook rounds each quantized
linear's input to its per-token (or static) grid.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import Flux2Transformer2DModel
from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers
from safetensors.torch import load_file
from torch import nn

from flux2_int8 import Int8Linear, load_transformer
from flux2_int8.errors import ConfigError
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.formats.keys import BFL_PREFIXES
from flux2_int8.quantization.export import quantized_linears
from flux2_int8.quantization.recipe import Recipe
from flux2_int8.testing.checkpoints import int8_state, write_bfl, write_comfy_int8

PREFIX = BFL_PREFIXES[0]


def dynamic_step(x: torch.Tensor) -> torch.Tensor:
    """Per-token scale, float64: max |x| over the features of each token / 127."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    return torch.where(amax > 0, amax / 127, torch.ones_like(amax))


def reference_from_file(model: nn.Module, path, static_steps: dict[str, float] | None = None) -> nn.Module:
    """float64 model from the file's tensors: int8 x weight_scale, named by diffusers' converter."""
    stored = {key.removeprefix(PREFIX): value for key, value in load_file(str(path)).items() if not key.endswith(".comfy_quant")}
    floats = {}
    for key, value in stored.items():
        module, _, param = key.rpartition(".")
        if param in ("weight_scale", "input_scale"):
            continue
        if value.dtype == torch.int8:
            value = value.double() * stored[f"{module}.weight_scale"].double().reshape(-1, 1)
        floats[key] = value.double()
    reference = Flux2Transformer2DModel.from_config(model.config).double().eval()
    reference.load_state_dict(convert_flux2_transformer_checkpoint_to_diffusers(floats))
    for name in quantized_linears(model, Recipe()):
        step = None if static_steps is None else static_steps[name]
        reference.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, step=step: (torch.clamp(torch.round(args[0] / (dynamic_step(args[0]) if step is None else step)), -128, 127) * (dynamic_step(args[0]) if step is None else step),)
        )
    return reference


def run(model: nn.Module, inputs: dict, dtype: torch.dtype) -> torch.Tensor:
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        return model(**cast, return_dict=False)[0]


@pytest.mark.parametrize("per_row", [True, False], ids=["row", "tensor"])
@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["bfl", "comfy-prefix"])
def test_comfy_int8_file_loads_and_matches_dynamic_per_token_reference(tmp_path, tiny_model, tiny_inputs, per_row, prefix):
    path = write_comfy_int8(tmp_path / "comfy.safetensors", tiny_model, per_row=per_row, prefix=prefix)
    loaded = load_transformer(path, dtype=torch.float32)
    layers = [m for m in loaded.modules() if isinstance(m, Int8Linear)]
    assert layers and all(layer.activations == "dynamic" and layer.input_scale is None for layer in layers)
    expected = run(reference_from_file(tiny_model, path), tiny_inputs, torch.float64)
    # float32 activations and rescale against float64: ~1e-6 per layer; 1e-4 leaves room on any CPU.
    assert relative_error(run(loaded, tiny_inputs, torch.float32), expected) < 1e-4


def test_dynamic_differs_from_static_by_quantization_noise_only(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    path = write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax))
    static = run(load_transformer(path, dtype=torch.float32), tiny_inputs, torch.float32)
    forced = load_transformer(path, dtype=torch.float32, activations="dynamic")
    assert all(m.activations == "dynamic" for m in forced.modules() if isinstance(m, Int8Linear))
    dynamic = run(forced, tiny_inputs, torch.float32)
    floating = run(tiny_model, tiny_inputs, torch.float32)
    assert not torch.equal(static, dynamic)
    assert relative_error(dynamic, floating) < 0.05 and relative_error(static, floating) < 0.05


def test_placeholder_input_scales_warn_and_run_dynamic_unless_static_is_forced(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    state = int8_state(tiny_model, tiny_amax)
    state = {k: torch.ones_like(v) if k.endswith(".input_scale") else v for k, v in state.items()}
    path = write_bfl(tmp_path / "placeholder.safetensors", state)
    with pytest.warns(UserWarning, match=r"placeholder.safetensors: every int8 input_scale is 1.0"):
        auto = load_transformer(path, dtype=torch.float32)
    dynamic = load_transformer(path, dtype=torch.float32, activations="dynamic")
    torch.testing.assert_close(run(auto, tiny_inputs, torch.float32), run(dynamic, tiny_inputs, torch.float32), rtol=0, atol=0)
    static = load_transformer(path, dtype=torch.float32, activations="static")
    assert all(float(m.input_scale) == 1.0 for m in static.modules() if isinstance(m, Int8Linear))
    steps = dict.fromkeys(quantized_linears(tiny_model, Recipe()), 1.0)
    expected = run(reference_from_file(tiny_model, path, steps), tiny_inputs, torch.float64)
    assert relative_error(run(static, tiny_inputs, torch.float32), expected) < 1e-4


def test_calibrated_file_stays_static_without_a_warning(tmp_path, tiny_model, tiny_amax, recwarn):
    loaded = load_transformer(write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax)))
    assert all(m.activations == "static" for m in loaded.modules() if isinstance(m, Int8Linear))
    assert not [w for w in recwarn if "placeholder" in str(w.message)]


def test_unknown_activation_mode_is_refused(tmp_path, tiny_model, tiny_amax):
    with pytest.raises(ConfigError, match="activations must be one of auto, static, dynamic"):
        load_transformer(write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax)), activations="per-token")
