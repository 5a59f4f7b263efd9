"""`flux2-int8 quantize` on the tiny pipeline: the file, its header, and what it loads as."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import Flux2Transformer2DModel
from quantize_helpers import quantize_json, transformer_output
from safetensors import safe_open

from flux2_int8 import load_transformer, set_int8_backend
from flux2_int8.formats.inspect import describe
from flux2_int8.evaluate.metrics import relative_error

# The default recipe keeps embedders, the final layer and the modulation linears, in BFL names.
KEPT_BFL = {
    "img_in", "txt_in", "time_in.in_layer", "time_in.out_layer", "final_layer.adaLN_modulation.1", "final_layer.linear",
    "double_stream_modulation_img.lin", "double_stream_modulation_txt.lin", "single_stream_modulation.lin",
}
MODULATION_BFL = {"double_stream_modulation_img.lin", "double_stream_modulation_txt.lin", "single_stream_modulation.lin"}


def stored_weight_dtypes(path: Path) -> dict[str, torch.dtype]:
    with safe_open(str(path), framework="pt") as handle:
        return {key[: -len(".weight")]: handle.get_slice(key).get_dtype() for key in handle.keys() if key.endswith(".weight") and len(handle.get_slice(key).get_shape()) == 2}


def test_writes_bfl_int8_with_exactly_the_intended_layers_kept_and_the_recipe_in_the_header(default_run):
    summary = describe(default_run["path"])
    assert summary["format"] == "bfl-int8"
    dtypes = stored_weight_dtypes(Path(default_run["path"]))
    assert {name for name, dtype in dtypes.items() if dtype != "I8"} == KEPT_BFL
    assert all(dtype == "BF16" for name, dtype in dtypes.items() if name in KEPT_BFL)
    assert summary["linears"] == {"int8": len(dtypes) - len(KEPT_BFL), "fp8": 0, "float": len(KEPT_BFL), "total": len(dtypes)}
    assert summary["scale_shapes"]["input_scale"] == {"[]": summary["linears"]["int8"]}
    metadata = summary["metadata"]
    assert metadata["format"] == "flux2-int8/w8a8"
    assert metadata["flux2_int8_version"] == __import__("flux2_int8").__version__
    recipe = json.loads(metadata["quantization_recipe"])
    assert (recipe["samples"], recipe["steps"], recipe["schedule_steps"], recipe["method"]) == (3, 2, 4, "percentile:99.99")  # the default: docs/quantize.md's table
    assert recipe["tasks"] == {"t2i": 1, "edit": 1, "composition": 1}
    assert set(recipe["kept_layers"]) == KEPT_BFL
    assert recipe["quantize_modulation"] is False and recipe["smoothquant"] is None
    assert recipe["prompts"]["source"] == "builtin:calibration_prompts.jsonl"


def test_scales_in_the_file_are_the_recorded_ranges_over_127(default_run):
    ranges = default_run["statistics"]["input_range"]
    with safe_open(default_run["path"], framework="pt") as handle:
        proj = handle.get_tensor("double_blocks.1.img_attn.proj.input_scale")
        qkv = handle.get_tensor("double_blocks.0.txt_attn.qkv.input_scale")
    assert proj.dtype == torch.float32 and proj.dim() == 0
    assert float(proj) == float(torch.tensor(ranges["transformer_blocks.1.attn.to_out.0"] / 127, dtype=torch.float32))
    shared = {ranges[f"transformer_blocks.0.attn.add_{p}_proj"] for p in "qkv"}  # q, k, v share one range
    assert len(shared) == 1 and float(qkv) == float(torch.tensor(shared.pop() / 127, dtype=torch.float32))
    amax = default_run["statistics"]["input_amax"]["transformer_blocks.1.attn.to_out.0"]
    assert 0 < ranges["transformer_blocks.1.attn.to_out.0"] <= amax  # the default percentile clips at or below the max


def fake_quant_reference(float_model: Flux2Transformer2DModel, ranges: dict[str, float], quantized: set[str]) -> Flux2Transformer2DModel:
    """The model calibration saw, W8A8 by fake quantization in float64 (written here, not with the package's code).

    Quantized weights: per-row symmetric round(W / s) * s with s = max|row| / 127 (float32,
    as stored), the product taken in float64 where int8 x float32 is exact; their inputs
    rounded to the float32 step range / 127 and clamped to [-128, 127] steps.
    Kept layers: the BF16 values the file stores.
    """
    reference = Flux2Transformer2DModel.from_config(float_model.config).double().eval()
    state = {}
    for key, tensor in float_model.state_dict().items():
        module = key.rsplit(".", 1)[0]
        if module in quantized and key.endswith(".weight"):
            step = tensor.abs().amax(dim=1, keepdim=True) / 127
            state[key] = torch.round(tensor / step).clamp(-127, 127).double() * step.double()
        else:
            state[key] = tensor.to(torch.bfloat16).double()
    reference.load_state_dict(state)
    for name in quantized:
        step = float(torch.tensor(ranges[name] / 127, dtype=torch.float32))
        reference.get_submodule(name).register_forward_pre_hook(lambda _m, args, step=step: (torch.clamp(torch.round(args[0] / step), -128, 127) * step,))
    return reference


def test_loading_the_file_reproduces_the_fake_quant_model_seen_at_calibration(default_run, float_transformer, pipeline_inputs):
    statistics = default_run["statistics"]
    reference = fake_quant_reference(float_transformer, statistics["input_range"], set(statistics["input_range"]))
    loaded = load_transformer(default_run["path"], dtype=torch.float64)
    set_int8_backend(loaded, "reference")  # the file's math in float64; each backend's exactness is tests/int8's
    error = relative_error(transformer_output(loaded, pipeline_inputs), transformer_output(reference, pipeline_inputs))
    # Both sides are the same float64 arithmetic (one exact int8 x float32 product per weight,
    # the same float32 division per activation); only BLAS summation order may differ, ~1e-16.
    # The bound must stay far below one flipped activation step: a round() that lands on the
    # other side of a .5 moves that input by a whole step, and a few hundred such flips cost
    # ~1e-4. Rounding the reference's weights in float32 did exactly that (857 of 905,216
    # steps flipped, 1.26e-4 on an AVX512-VNNI Xeon); with float64 GEMMs a flip needs an
    # activation within ~1e-16 of a tie, so on any CPU the error is ~1e-15 or a real bug.
    assert error < 1e-12, error


def test_quantized_transformer_stays_close_to_bf16_with_and_without_modulation(default_run, modulation_run, float_transformer, pipeline_inputs):
    expected = transformer_output(float_transformer, pipeline_inputs)
    errors = {}
    for label, run in (("modulation BF16", default_run), ("modulation INT8", modulation_run)):
        errors[label] = relative_error(transformer_output(load_transformer(run["path"], dtype=torch.float32), pipeline_inputs), expected)
    print(f"relative error of the tiny transformer vs float: {errors}")
    assert all(error < 0.03 for error in errors.values()), errors
    dtypes = stored_weight_dtypes(Path(modulation_run["path"]))
    assert all(dtypes[name] == "I8" for name in MODULATION_BFL)
    assert set(json.loads(describe(modulation_run["path"])["metadata"]["quantization_recipe"])["kept_layers"]) == KEPT_BFL - MODULATION_BFL


def test_diffusers_format_writes_a_folder_that_loads_as_the_bfl_file_does(tmp_path, default_run, pipeline_inputs):
    report = quantize_json(tmp_path / "transformer", "--format", "diffusers")
    folder = Path(report["path"])
    assert describe(folder)["format"] == "diffusers-int8"
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "flux2-int8"
    with safe_open(str(folder / "diffusion_pytorch_model.safetensors"), framework="pt") as handle:
        shared = {float(handle.get_tensor(f"transformer_blocks.1.attn.to_{p}.input_scale")) for p in "qkv"}
    assert len(shared) == 1  # q, k, v unified in the file itself
    from_folder = transformer_output(load_transformer(folder, dtype=torch.float32), pipeline_inputs)
    from_file = transformer_output(load_transformer(default_run["path"], dtype=torch.float32), pipeline_inputs)
    torch.testing.assert_close(from_folder, from_file, rtol=0, atol=0)

    again = quantize_json(folder, "--format", "diffusers", "--seed", "1")  # replaces its own earlier export
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    with safe_open(str(folder / "diffusion_pytorch_model.safetensors"), framework="pt") as handle:
        scale = float(handle.get_tensor("transformer_blocks.0.ff.linear_out.input_scale"))
    assert scale == float(torch.tensor(again["statistics"]["input_range"]["transformer_blocks.0.ff.linear_out"] / 127, dtype=torch.float32))
    assert again["statistics"]["samples"] != report["statistics"]["samples"]


def test_dynamic_activations_write_no_input_scale_skip_calibration_and_load_dynamic(tmp_path, default_run):
    from flux2_int8 import Int8Linear

    run = quantize_json(tmp_path / "dynamic.safetensors", "--activations", "dynamic")
    with safe_open(run["path"], framework="pt") as handle:
        keys = set(handle.keys())
        recipe = json.loads(handle.metadata()["quantization_recipe"])
    assert not any(key.endswith(".input_scale") for key in keys)
    assert run["statistics"]["samples"] == [] and "dynamic" in recipe["activations"]
    # The weights are those of the static run: only the activation scales differ.
    with safe_open(default_run["path"], framework="pt") as static, safe_open(run["path"], framework="pt") as dynamic:
        for key in ("double_blocks.0.img_attn.qkv.weight", "single_blocks.1.linear2.weight_scale"):
            torch.testing.assert_close(dynamic.get_tensor(key), static.get_tensor(key), rtol=0, atol=0)
    layers = [m for m in load_transformer(run["path"]).modules() if isinstance(m, Int8Linear)]
    assert layers and all(layer.activations == "dynamic" for layer in layers)


def test_a_pipeline_loaded_in_memory_quantizes_to_the_same_file(tmp_path, default_run, float_pipeline):
    from safetensors.torch import load_file

    from flux2_int8 import quantize

    result = quantize(float_pipeline, tmp_path / "in-memory.safetensors", samples=3, steps=2, resolution=64, progress=False)
    ours, theirs = load_file(str(result.path)), load_file(default_run["path"])
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)


def test_an_already_quantized_pipeline_is_refused(tmp_path, default_run, tiny_base):
    import pytest

    from flux2_int8 import load_pipeline, quantize
    from flux2_int8.errors import Flux2Int8Error

    pipe = load_pipeline(tiny_base, transformer=default_run["path"], device="cpu")
    with pytest.raises(Flux2Int8Error, match="already quantized"):
        quantize(pipe, tmp_path / "again.safetensors", samples=3, steps=2, resolution=64, progress=False)
    assert not (tmp_path / "again.safetensors").exists()
