"""The memory plan against the loaded models (to the byte), `offload="auto"` choosing as it says, group offload."""

from __future__ import annotations

import logging

import pytest
import torch

from flux2_int8 import load_pipeline, plan_memory
from flux2_int8.generate.placement import choose_offload, enable_group_offload
from flux2_int8.loading.text_encoder_cut import module_bytes
from flux2_int8.planning import PLACEMENTS


def _loaded_bytes(pipeline) -> dict[str, int]:
    return {name: module_bytes(getattr(pipeline, name)) for name in ("transformer", "text_encoder", "vae")}


def _planned_bytes(plan) -> dict[str, int]:
    return {component.name: component.weight_bytes for component in plan.components}


def test_plan_equals_the_loaded_tiny_pipeline_to_the_byte(tiny_base, bf16_pipeline, int8_checkpoint, int8_text_encoder, tmp_path, monkeypatch):
    assert _planned_bytes(plan_memory(tiny_base, resolution=64)) == _loaded_bytes(bf16_pipeline)
    both = load_pipeline(tiny_base, transformer=int8_checkpoint, text_encoder=int8_text_encoder, device="cpu")
    assert _planned_bytes(plan_memory(tiny_base, int8_checkpoint, int8_text_encoder, resolution=64)) == _loaded_bytes(both)
    monkeypatch.setenv("FLUX2_INT8_CACHE", str(tmp_path))
    at_load = load_pipeline(tiny_base, text_encoder="int8", device="cpu", dtype=torch.float32)
    assert _planned_bytes(plan_memory(tiny_base, text_encoder="int8", dtype="float32", resolution=64)) == _loaded_bytes(at_load)


def test_plan_equals_the_loaded_nano_pipeline_to_the_byte():
    from flux2_int8.nano import nano_folder

    pipeline = load_pipeline("nano", device="cpu")
    assert _planned_bytes(plan_memory(nano_folder(), resolution=128)) == _loaded_bytes(pipeline)


@pytest.fixture(scope="module", params=["klein-4b", "klein-9b"])
def header_only(request, tmp_path_factory):
    from flux2_int8.bench.header_only import write_header_only_int8_transformer, write_header_only_pipeline

    folder = tmp_path_factory.mktemp(request.param)
    return request.param, write_header_only_pipeline(folder / "pipeline", request.param), write_header_only_int8_transformer(folder / "int8.safetensors", request.param)


def test_plan_equals_meta_built_klein_models_to_the_byte(header_only):
    """Real sizes: the INT8 transformer, the cut BF16 / INT8 Qwen3, the VAE, each built on meta as the loaders build them."""
    from diffusers import AutoencoderKLFlux2
    from torch import nn
    from transformers import AutoConfig

    from flux2_int8.formats.checkpoint import open_checkpoint
    from flux2_int8.int8.linear import Int8Linear
    from flux2_int8.loading.skeleton import build_empty_model, swap_quantized_linears
    from flux2_int8.loading.text_encoder_cut import cut_for, empty_cut_encoder, full_encoder_bytes
    from flux2_int8.variants import get_variant

    variant, folder, int8_file = header_only
    checkpoint = open_checkpoint(int8_file)
    transformer = build_empty_model(get_variant(variant).architecture.transformer_config())
    swap_quantized_linears(transformer, checkpoint, static=set(checkpoint.linear_kinds))
    transformer.to(torch.bfloat16)  # float layers in the compute dtype; int8 weights and float32 scales stay
    config = AutoConfig.from_pretrained(folder / "text_encoder")
    bf16_encoder = empty_cut_encoder(config, cut_for(config), torch.bfloat16)
    int8_encoder = empty_cut_encoder(config, cut_for(config), torch.bfloat16)
    for name, module in list(int8_encoder.named_modules()):
        if isinstance(module, nn.Linear):
            parent, _, child = name.rpartition(".")
            setattr(int8_encoder.get_submodule(parent), child, Int8Linear(module.in_features, module.out_features, device="meta", activations="dynamic"))
    with torch.device("meta"):
        vae = AutoencoderKLFlux2()
    for tensor in [*vae.parameters(), *vae.buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(torch.bfloat16)  # as from_pretrained(dtype=bf16) holds it (the tiny test checks that)
    plan = plan_memory(folder, int8_file, "bf16")
    assert _planned_bytes(plan) == {"transformer": module_bytes(transformer), "text_encoder": module_bytes(bf16_encoder), "vae": module_bytes(vae)}
    assert plan_memory(folder, int8_file, "int8").component("text_encoder").weight_bytes == module_bytes(int8_encoder)
    saved = full_encoder_bytes(config, torch.bfloat16) - module_bytes(bf16_encoder)  # layers 28-36, final norm, LM head
    assert len(bf16_encoder.layers) == 27 and f"27 of 36 layers the pipeline reads, no final norm, no LM head: {saved:,} bytes not loaded" in plan.notes[0]


def test_auto_takes_the_fastest_placement_the_plan_fits(header_only):
    _, folder, int8_file = header_only
    plan = plan_memory(folder, int8_file, "int8")
    for placement in PLACEMENTS:
        memory = plan.peaks[placement]
        mode, chosen, why = choose_offload(folder, int8_file, "int8", torch.bfloat16, torch.device("cpu"), gpu_memory=memory)
        assert mode == chosen.choice == plan.fits(memory)[0]
        assert all(plan.peaks[faster] > memory for faster in PLACEMENTS[: PLACEMENTS.index(mode)])
        assert f"'{mode}' needs" in why
    mode, _, why = choose_offload(folder, int8_file, "int8", torch.bfloat16, torch.device("cpu"), gpu_memory=min(plan.peaks.values()) - 1)
    assert mode == "sequential" and "nothing fits" in why
    assert choose_offload(folder, int8_file, "int8", torch.bfloat16, torch.device("cpu"))[0] == "none"  # no GPU, no figure: stay


def test_load_pipeline_offload_auto_places_as_the_plan_says(tiny_base, monkeypatch, caplog):
    import flux2_int8.generate.pipeline as pipeline_module

    placed = []
    monkeypatch.setattr(pipeline_module, "place", lambda pipeline, device, offload: placed.append(offload))
    plan = plan_memory(tiny_base, resolution=1024)
    for placement in ("none", "model"):
        with caplog.at_level(logging.INFO, logger="flux2_int8"):
            pipe = load_pipeline(tiny_base, device="cpu", offload="auto", gpu_memory=plan.peaks[placement])
        assert placed[-1] == pipe.flux2_int8_placement["offload"] == plan.fits(plan.peaks[placement])[0]
        assert any(m.startswith(f"offload auto: {placed[-1]}") for m in (r.getMessage() for r in caplog.records))


def test_group_offload_runs_int8_with_fused_qkv_and_a_lora(tiny_base, int8_checkpoint):
    """diffusers' group offload (block level; onload on the CPU, as diffusers allows testing it) gives the same image."""
    from peft import LoraConfig

    from flux2_int8 import fuse_qkv_projections
    from flux2_int8.generate import generate_image

    pipe = load_pipeline(tiny_base, transformer=int8_checkpoint, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert fuse_qkv_projections(pipe.transformer) > 0
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_out.0", "linear_in"], init_lora_weights=False))
    before = generate_image(pipe, "A red cube", [], 0, 2, 1.0, 64, 64)
    enable_group_offload(pipe, torch.device("cpu"))
    after = generate_image(pipe, "A red cube", [], 0, 2, 1.0, 64, 64)
    from flux2_int8.demo import psnr

    assert psnr(before, after) == float("inf")
    hooked = [m for m in pipe.transformer.modules() if getattr(m, "_diffusers_hook", None) is not None]
    assert hooked
