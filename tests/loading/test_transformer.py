"""load_transformer: every INT8 layout matches an independent float64 fake-quant reference."""

from __future__ import annotations

import pytest
import torch
from diffusers import Flux2Transformer2DModel
from torch import nn

from flux2_int8 import Fp8Linear, Int8Linear, load_transformer
from flux2_int8.errors import ConfigError
from flux2_int8.quantization.export import fp8_state_dict
from flux2_int8.testing.checkpoints import int8_state, write_bfl, write_modelopt
from flux2_int8.evaluate.metrics import relative_error


def fake_quant_reference(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A float64 copy of `model` computing W8A8 by dequantizing, written without the package's kernels.

    Weights are int8 x weight_scale; each quantized linear's input is rounded to its
    input_scale grid by a pre-hook. Built from the diffusers-named state dict that was
    written, so it checks the file's key layout and the loader's conversion too.
    """
    reference = Flux2Transformer2DModel.from_config(model.config).double().eval()
    float_state = {}
    for key, tensor in state.items():
        module, _, param = key.rpartition(".")
        if param in ("weight_scale", "input_scale"):
            continue
        if tensor.dtype in (torch.int8, torch.float8_e4m3fn):
            tensor = tensor.double() * state[f"{module}.weight_scale"].double().reshape(-1, 1)
        float_state[key] = tensor.double()
    reference.load_state_dict(float_state)
    for key, scale in state.items():
        if key.endswith(".input_scale"):
            step = float(scale)
            reference.get_submodule(key.rsplit(".", 1)[0]).register_forward_pre_hook(
                lambda _m, args, step=step: (torch.clamp(torch.round(args[0] / step), -128, 127) * step,)
            )
    return reference


def run(model: nn.Module, inputs: dict, dtype: torch.dtype) -> torch.Tensor:
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        return model(**cast, return_dict=False)[0]


@pytest.mark.parametrize("weight_scale", ["[N]", "[N,1]", "0-d", "[1]"])
@pytest.mark.parametrize("input_scale", ["0-d", "[1]"])
def test_bfl_int8_matches_float64_reference(tmp_path, tiny_model, tiny_inputs, tiny_amax, weight_scale, input_scale):
    state = int8_state(tiny_model, tiny_amax, weight_scale, input_scale)
    path = write_bfl(tmp_path / "int8.safetensors", state)
    loaded = load_transformer(path, dtype=torch.float32)
    expected = run(fake_quant_reference(tiny_model, state), tiny_inputs, torch.float64)
    assert relative_error(run(loaded, tiny_inputs, torch.float32), expected) < 1e-4


def test_comfyui_prefix_and_modelopt_folder_load_the_same_model(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    state = int8_state(tiny_model, tiny_amax, "[N]", "0-d")
    expected = run(fake_quant_reference(tiny_model, state), tiny_inputs, torch.float64)
    prefixed = load_transformer(write_bfl(tmp_path / "c.safetensors", state, prefix="model.diffusion_model."), dtype=torch.float32)
    modelopt = load_transformer(write_modelopt(tmp_path / "modelopt", state, dict(tiny_model.config)), dtype=torch.float32)
    assert relative_error(run(prefixed, tiny_inputs, torch.float32), expected) < 1e-4
    assert relative_error(run(modelopt, tiny_inputs, torch.float32), expected) < 1e-4


def test_modelopt_pre_quant_scale_multiplies_input_before_quantizing(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    state = int8_state(tiny_model, tiny_amax, "[N]", "0-d")
    name = "single_transformer_blocks.0.attn.to_out"
    smooth = torch.linspace(0.5, 2.0, state[f"{name}.weight"].shape[1])
    state[f"{name}.pre_quant_scale"] = smooth
    loaded = load_transformer(write_modelopt(tmp_path / "m", state, dict(tiny_model.config)), dtype=torch.float32)
    layer = loaded.get_submodule(name)
    x = torch.randn(3, layer.in_features)
    plain = Int8Linear(layer.in_features, layer.out_features)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "pre_quant_scale"})
    torch.testing.assert_close(layer(x), plain(x * smooth))


def test_int8_layers_keep_int8_weights_and_float32_scales_under_to(tmp_path, tiny_model, tiny_amax):
    state = int8_state(tiny_model, tiny_amax)
    loaded = load_transformer(write_bfl(tmp_path / "q.safetensors", state), dtype=torch.bfloat16)
    layers = [m for m in loaded.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == sum(1 for k, v in state.items() if v.dtype == torch.int8)
    loaded.to(torch.float16)
    for layer in layers:
        assert layer.weight.dtype == torch.int8
        assert layer.weight_scale.dtype == torch.float32 and layer.input_scale.dtype == torch.float32
    assert loaded.x_embedder.weight.dtype == torch.float16  # kept layers follow the cast
    assert not any(t.is_meta for t in loaded.state_dict().values())


def test_scales_keep_their_exact_float32_values_through_a_cast(tmp_path, tiny_model, tiny_amax):
    state = int8_state(tiny_model, tiny_amax, "[N]")
    loaded = load_transformer(write_bfl(tmp_path / "q.safetensors", state)).to(torch.bfloat16)
    torch.testing.assert_close(loaded.transformer_blocks[0].ff.linear_in.weight_scale, state["transformer_blocks.0.ff.linear_in.weight_scale"], rtol=0, atol=0)


def test_bf16_file_loads_to_the_original_weights(tmp_path, tiny_model, tiny_inputs):
    from flux2_int8.tiny import write_bf16_checkpoint

    path = write_bf16_checkpoint(tiny_model, tmp_path / "bf16.safetensors")
    loaded = load_transformer(path, dtype=torch.float32)
    assert not any(isinstance(m, (Int8Linear, Fp8Linear)) for m in loaded.modules())
    for key, tensor in tiny_model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], tensor.to(torch.bfloat16).float(), rtol=0, atol=0, msg=key)


def test_fp8_file_loads_and_stays_close_to_float(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    path = write_bfl(tmp_path / "fp8.safetensors", fp8_state_dict(tiny_model, tiny_amax), metadata={"_quantization_metadata": "{}"})
    loaded = load_transformer(path, dtype=torch.float32)
    assert any(isinstance(m, Fp8Linear) for m in loaded.modules())
    assert relative_error(run(loaded, tiny_inputs, torch.float32), run(tiny_model, tiny_inputs, torch.float32)) < 0.1


def test_int8_output_stays_close_to_float(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    loaded = load_transformer(write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax)), dtype=torch.float32)
    assert relative_error(run(loaded, tiny_inputs, torch.float32), run(tiny_model, tiny_inputs, torch.float32)) < 0.05


def test_config_by_variant_name_that_does_not_fit_is_refused(tmp_path, tiny_model, tiny_amax):
    path = write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax))
    with pytest.raises(ConfigError, match="do not fit the config from klein-4b"):
        load_transformer(path, config="klein-4b")


def test_config_from_dict_and_folder(tmp_path, tiny_model, tiny_amax):
    import json

    path = write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(dict(tiny_model.config), default=list))
    assert load_transformer(path, config=dict(tiny_model.config)).config.num_layers == tiny_model.config.num_layers
    assert load_transformer(path, config=tmp_path / "cfg").config.num_single_layers == tiny_model.config.num_single_layers


def test_torch_dtype_is_diffusers_spelling_of_dtype(tmp_path, tiny_model, tiny_amax):
    path = write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax))
    assert load_transformer(path, torch_dtype=torch.float32).x_embedder.weight.dtype == torch.float32
    assert load_transformer(path).x_embedder.weight.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="disagree"):
        load_transformer(path, dtype=torch.float16, torch_dtype=torch.float32)
    with pytest.raises(ConfigError, match="floating torch.dtype"):
        load_transformer(path, dtype=torch.int8)


def test_a_hub_file_is_fetched_through_the_cache_as_load_pipeline_takes_it(tmp_path, tiny_model, tiny_amax, monkeypatch):
    from flux2_int8.loading import hub

    path = write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax))
    asked = {}

    def hf_hub_download(repo_id, filename, **kwargs):  # type: ignore[no-untyped-def]
        asked.update(kwargs, repo_id=repo_id, filename=filename)
        return str(path)

    monkeypatch.setattr(hub, "hf_hub_download", hf_hub_download)
    loaded = load_transformer("someone/klein-int8/q.safetensors", local_files_only=True, token="hf_x")
    assert asked == {"repo_id": "someone/klein-int8", "filename": "q.safetensors", "local_files_only": True, "token": "hf_x"}
    assert any(isinstance(m, Int8Linear) for m in loaded.modules())
