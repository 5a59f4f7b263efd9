"""Foreign files are named from their headers, by inspect and by the loader's refusal.

Each layout is written as its tool names keys and dtypes: real-size layouts as sparse
header-only files, layouts whose ComfyUI markers must be read as small real files.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import Flux2Transformer2DModel
from safetensors.torch import save_file
from torch import nn

from flux2_int8 import load_transformer
from flux2_int8.cli import main
from flux2_int8.errors import UnsupportedFormatError
from flux2_int8.formats.foreign import recognise
from flux2_int8.formats.header import read_header
from flux2_int8.formats.inspect import describe
from flux2_int8.formats.keys import diffusers_to_bfl
from flux2_int8.testing.checkpoints import int8_state, meta_int8_state, write_bfl, write_sparse_header
from flux2_int8.variants import KLEIN_4B, KLEIN_9B


def meta_model(config):
    with torch.device("meta"):
        return Flux2Transformer2DModel.from_config(config)


def empty(shape, dtype=torch.bfloat16):
    return torch.empty(shape, dtype=dtype, device="meta")


def marker(document) -> torch.Tensor:
    """A ComfyUI `comfy_quant` marker, encoded as convert_to_quant and ComfyUI write it."""
    return torch.tensor(list(json.dumps(document).encode("utf-8")), dtype=torch.uint8)


def kind_of(path):
    found = recognise([read_header(path)])
    return found.kind if found else None


def refused_by_loader(path, *fragments):
    with pytest.raises(UnsupportedFormatError) as caught:
        load_transformer(path)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    return str(caught.value)


def inspect_refuses(path, capsys, *fragments):
    """inspect describes the file, then exits 2 with the loader's one-line error."""
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("Error: ") and captured.err.count("\n") == 1
    for fragment in fragments:
        assert fragment in captured.out, captured.out
    return captured.err


# ---- LoRA files, each family as its trainer names keys --------------------------------------


def block_linears(architecture) -> dict[str, tuple[int, int]]:
    """diffusers module -> (out, in) of every linear inside the blocks."""
    model = meta_model(architecture.transformer_config())
    return {name: (m.out_features, m.in_features) for name, m in model.named_modules() if isinstance(m, nn.Linear) and "blocks." in name}


def bfl_block_linears(architecture) -> dict[str, tuple[int, int]]:
    """BFL module -> (out, in) as stored (fused q/k/v) of every linear inside the blocks."""
    state = diffusers_to_bfl(meta_int8_state(meta_model(architecture.transformer_config())))
    return {k.rsplit(".", 1)[0]: tuple(v.shape) for k, v in state.items() if k.endswith(".weight") and v.dim() == 2 and "blocks." in k}


def lora_files(architecture, rank=16) -> dict[str, dict[str, torch.Tensor]]:
    diffusers = block_linears(architecture)
    bfl = bfl_block_linears(architecture)
    peft = {}
    for module, (out, inp) in diffusers.items():
        peft[f"transformer.{module}.lora_A.weight"] = empty((rank, inp))
        peft[f"transformer.{module}.lora_B.weight"] = empty((out, rank))
    kohya, ai_toolkit, lokr = {}, {}, {}
    for module, (out, inp) in bfl.items():
        stem = "lora_unet_" + module.replace(".", "_")
        kohya[f"{stem}.lora_down.weight"] = empty((rank, inp))
        kohya[f"{stem}.lora_up.weight"] = empty((out, rank))
        kohya[f"{stem}.alpha"] = empty(())
        ai_toolkit[f"diffusion_model.{module}.lora_A.weight"] = empty((rank, inp))
        ai_toolkit[f"diffusion_model.{module}.lora_B.weight"] = empty((out, rank))
        lokr[f"diffusion_model.{module}.lokr_w1"] = empty((4, 4))
        lokr[f"diffusion_model.{module}.lokr_w2"] = empty((out // 4, inp // 4))
    return {"peft": peft, "kohya": kohya, "ai-toolkit": ai_toolkit, "lokr": lokr}


@pytest.mark.parametrize("architecture", [KLEIN_4B, KLEIN_9B], ids=lambda a: a.name)
@pytest.mark.parametrize(
    "family, format_words, rank",
    [("peft", "diffusers/PEFT", 16), ("kohya", "kohya", 16), ("ai-toolkit", "ai-toolkit", 16), ("lokr", "LoKr", None)],
)
def test_lora_files_are_named_with_format_rank_layers_and_size(tmp_path, capsys, architecture, family, format_words, rank):
    tensors = lora_files(architecture)[family]
    path = write_sparse_header(tmp_path / f"{family}.safetensors", tensors, {"ss_network_dim": "16"} if family == "kohya" else None)
    layers = len(block_linears(architecture) if family == "peft" else bfl_block_linears(architecture))
    summary = describe(path)
    assert summary["format"] == "lora" and summary["loadable"] is False
    assert format_words in summary["lora"]["format"]
    assert summary["lora"]["rank"] == rank and summary["lora"]["layers"] == layers
    assert summary["lora"]["fits"] == f"fits {architecture.name}"
    refused_by_loader(path, "LoRA adapter", f"{layers} layers", architecture.name, "load_lora_weights")
    inspect_refuses(path, capsys, "format:       lora", "what to do:")


def test_a_lora_for_another_model_fits_no_klein_size(tmp_path):
    tensors = {f"lora_unet_double_blocks_{i}_img_attn_qkv.lora_down.weight": empty((8, 3072)) for i in range(19)}
    found = recognise([read_header(write_sparse_header(tmp_path / "flux1-lora.safetensors", tensors))])
    assert found.lora.fits == "fits no klein size (hidden width 3072, 19 double / 0 single blocks)"


# ---- quantized layouts flux2-int8 does not run ----------------------------------------------


def test_bfl_comfyui_nvfp4_file(tmp_path, capsys):
    """NVFP4 as ComfyUI / BFL write it: uint8 [N, K/2], float8 block scales, weight_scale_2, markers."""
    model = meta_model(KLEIN_4B.transformer_config())
    tensors = {}
    for key, tensor in diffusers_to_bfl(meta_int8_state(model)).items():
        module, _, param = key.rpartition(".")
        if param == "weight" and tensor.dtype == torch.int8:
            rows, columns = tensor.shape
            tensors[key] = empty((rows, columns // 2), torch.uint8)
            tensors[f"{module}.weight_scale"] = empty((rows, columns // 16), torch.float8_e4m3fn)
            tensors[f"{module}.weight_scale_2"] = empty((), torch.float32)
            tensors[f"{module}.input_scale"] = empty((), torch.float32)
        elif param not in ("weight_scale", "input_scale"):
            tensors[key] = tensor
    layers = {k.rsplit(".", 1)[0]: {"format": "nvfp4", "group_size": 16} for k in tensors if k.endswith(".weight_scale_2")}
    metadata = {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})}
    path = write_sparse_header(tmp_path / "flux-2-klein-4b-nvfp4.safetensors", tensors, metadata)
    assert kind_of(path) == "nvfp4"
    refused_by_loader(path, "NVFP4", "Blackwell")
    inspect_refuses(path, capsys, "nvfp4")
    without_metadata = write_sparse_header(tmp_path / "nvfp4-plain.safetensors", tensors)
    assert kind_of(without_metadata) == "nvfp4"


def test_modelopt_nvfp4_diffusers_folder(tmp_path):
    model = meta_model(KLEIN_4B.transformer_config())
    tensors = {}
    for key, tensor in meta_int8_state(model).items():
        module, _, param = key.rpartition(".")
        if param == "weight" and tensor.dtype == torch.int8:
            rows, columns = tensor.shape
            tensors.update({key: empty((rows, columns // 2), torch.uint8), f"{module}.weight_scale": empty((rows, columns // 16), torch.float8_e4m3fn)})
            tensors.update({f"{module}.weight_scale_2": empty((), torch.float32), f"{module}.input_scale": empty((), torch.float32)})
        elif param not in ("weight_scale", "input_scale"):
            tensors[key] = tensor
    folder = tmp_path / "nvfp4"
    folder.mkdir()
    write_sparse_header(folder / "diffusion_pytorch_model.safetensors", tensors)
    config = {**KLEIN_4B.transformer_config(), "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}
    (folder / "config.json").write_text(json.dumps(config))
    assert "diffusers/ModelOpt NVFP4" in refused_by_loader(folder, "NVFP4")


def test_block_wise_int8_is_named_with_its_tile(tmp_path, capsys):
    """convert_to_quant's int8_blockwise without markers: 2-D tile scales, a placeholder input_scale."""
    model = meta_model(KLEIN_4B.transformer_config())
    tensors = {}
    for key, tensor in diffusers_to_bfl(meta_int8_state(model)).items():
        module, _, param = key.rpartition(".")
        if param == "weight_scale":
            rows, columns = tensors[f"{module}.weight"].shape
            tensors[key] = empty((rows // 128, columns // 128), torch.float32)
        else:
            tensors[key] = tensor
    path = write_sparse_header(tmp_path / "blockwise.safetensors", tensors)
    assert kind_of(path) == "int8-blockwise"
    refused_by_loader(path, "block-wise INT8", "tiles of 128")
    inspect_refuses(path, capsys, "int8-blockwise")


@pytest.fixture(scope="module")
def tiny_bfl(tiny_model, tiny_amax) -> dict[str, torch.Tensor]:
    return diffusers_to_bfl(int8_state(tiny_model, tiny_amax))


QKV = "double_blocks.0.img_attn.qkv"


@pytest.mark.parametrize(
    "layout, kind",
    [
        ({"format": "int8_blockwise", "group_size": 128}, "int8-blockwise"),
        ({"format": "mxfp8", "group_size": 32}, "mxfp8"),
        ({"format": "convrot_w4a4", "convrot": True, "convrot_groupsize": 16}, "convrot"),  # ConvRot INT8 loads: tests/loading/test_convrot.py
    ],
)
def test_comfyui_markers_name_the_layout(tmp_path, tiny_bfl, layout, kind):
    path = tmp_path / "marked.safetensors"
    save_file(dict(tiny_bfl, **{f"{QKV}.comfy_quant": marker(layout)}), str(path))
    assert kind_of(path) == kind
    refused_by_loader(path)


def test_int8_fast_markers_saying_no_rotation_load(tmp_path, tiny_bfl):
    """ComfyUI-INT8-Fast writes `"convrot": false` on plain layers: that is not a rotation."""
    path = tmp_path / "int8-fast.safetensors"
    save_file(dict(tiny_bfl, **{f"{QKV}.comfy_quant": marker({"format": "int8_tensorwise", "convrot": False, "per_row": True})}), str(path))
    assert kind_of(path) is None
    assert load_transformer(path).transformer_blocks[0].attn.to_q.weight.dtype == torch.int8


def test_torchao_export(tmp_path, capsys):
    tensors = {
        "transformer_blocks.0.attn.to_q.weight:qdata": torch.zeros(8, 8, dtype=torch.int8),
        "transformer_blocks.0.attn.to_q.weight:scale": torch.ones(8, 1),
        "x_embedder.weight:_data": torch.zeros(8, 8),
    }
    metadata = {
        "tensor_names": json.dumps(["transformer_blocks.0.attn.to_q.weight", "x_embedder.weight"]),
        "transformer_blocks.0.attn.to_q.weight": json.dumps({"_type": "Int8Tensor", "_data": {"block_size": [1, 8]}}),
        "x_embedder.weight": json.dumps({"_type": "Tensor"}),
    }
    path = tmp_path / "torchao.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    assert kind_of(path) == "torchao"
    refused_by_loader(path, "torchao", "TorchAoConfig")
    inspect_refuses(path, capsys, "torchao")


# ---- other model families -------------------------------------------------------------------


def flux1_bfl_header(hidden=3072, doubles=19, singles=38) -> dict[str, torch.Tensor]:
    """FLUX.1 [dev] as BFL names it: per-block modulation, vector_in, guidance_in, 64 latent channels."""
    mlp = 4 * hidden
    tensors = {"img_in.weight": empty((hidden, 64)), "txt_in.weight": empty((hidden, 4096)), "vector_in.in_layer.weight": empty((hidden, 768))}
    tensors |= {"time_in.in_layer.weight": empty((hidden, 256)), "guidance_in.in_layer.weight": empty((hidden, 256))}
    for i in range(doubles):
        for stream in ("img", "txt"):
            tensors[f"double_blocks.{i}.{stream}_mod.lin.weight"] = empty((6 * hidden, hidden))
            tensors[f"double_blocks.{i}.{stream}_attn.qkv.weight"] = empty((3 * hidden, hidden))
            tensors[f"double_blocks.{i}.{stream}_attn.proj.weight"] = empty((hidden, hidden))
            tensors[f"double_blocks.{i}.{stream}_mlp.0.weight"] = empty((mlp, hidden))
            tensors[f"double_blocks.{i}.{stream}_mlp.2.weight"] = empty((hidden, mlp))
    for i in range(singles):
        tensors[f"single_blocks.{i}.linear1.weight"] = empty((3 * hidden + mlp, hidden))
        tensors[f"single_blocks.{i}.linear2.weight"] = empty((hidden, hidden + mlp))
        tensors[f"single_blocks.{i}.modulation.lin.weight"] = empty((3 * hidden, hidden))
    tensors["final_layer.linear.weight"] = empty((64, hidden))
    return tensors


def test_flux1_files_are_named(tmp_path, capsys):
    bfl = write_sparse_header(tmp_path / "flux1-dev.safetensors", {f"model.diffusion_model.{k}": v for k, v in flux1_bfl_header().items()})
    assert "FLUX.1 transformer (hidden 3072, 19 double / 38 single blocks)" in refused_by_loader(bfl)
    inspect_refuses(bfl, capsys, "flux1")
    diffusers_names = {
        "x_embedder.weight": empty((3072, 64)),
        "time_text_embed.timestep_embedder.linear_1.weight": empty((3072, 256)),
        "transformer_blocks.0.norm1.linear.weight": empty((18432, 3072)),
        "single_transformer_blocks.0.proj_mlp.weight": empty((12288, 3072)),
    }
    assert kind_of(write_sparse_header(tmp_path / "flux1-diffusers.safetensors", diffusers_names)) == "flux1"


def test_flux2_dev_loads_structurally_and_is_named(tmp_path, capsys):
    dev = {**KLEIN_4B.transformer_config(), "num_layers": 8, "num_single_layers": 48, "num_attention_heads": 48, "joint_attention_dim": 15360, "guidance_embeds": True}
    path = write_sparse_header(tmp_path / "flux2-dev.safetensors", diffusers_to_bfl(meta_int8_state(meta_model(dev))))
    summary = describe(path)
    assert summary["loadable"] is True and summary["format"] == "bfl-int8"
    assert "FLUX.2 [dev]" in summary["variant"] and "klein" in summary["note"]
    assert main(["inspect", str(path)]) == 0
    assert "FLUX.2 [dev]" in capsys.readouterr().out
