"""inspect and config inference on real 4B/9B layouts, written as sparse header-only files."""

from __future__ import annotations

import json
import resource

import pytest
import torch
from diffusers import Flux2Transformer2DModel

from flux2_int8.cli import main
from flux2_int8.formats.checkpoint import open_checkpoint
from flux2_int8.formats.inspect import describe
from flux2_int8.formats.keys import diffusers_to_bfl
from flux2_int8.formats.config import infer_config
from flux2_int8.quantization.recipe import Recipe
from flux2_int8.testing.checkpoints import meta_int8_state, write_sparse_header
from flux2_int8.variants import KLEIN_4B, KLEIN_9B


def meta_model(architecture):
    with torch.device("meta"):
        return Flux2Transformer2DModel.from_config(architecture.transformer_config())


@pytest.fixture(scope="module", params=[KLEIN_4B, KLEIN_9B], ids=lambda a: a.name)
def real_int8_file(request, tmp_path_factory):
    architecture = request.param
    state = diffusers_to_bfl(meta_int8_state(meta_model(architecture)))
    tensors = {f"model.diffusion_model.{k}": v for k, v in state.items()}
    path = tmp_path_factory.mktemp(architecture.name) / "int8.safetensors"
    return architecture, write_sparse_header(path, tensors, {"format": "bfl-int8", "note": "sparse test file"})


def test_inspect_reads_real_layouts_from_the_header_only(real_int8_file):
    architecture, path = real_int8_file
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = describe(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert summary["format"] == "bfl-int8"
    assert summary["variant"].startswith(architecture.name)
    blocks = 8 * architecture.num_layers + 2 * architecture.num_single_layers  # as stored: fused q/k/v
    assert summary["linears"] == {"int8": blocks, "fp8": 0, "float": 9, "total": blocks + 9}
    assert summary["scale_shapes"] == {"weight_scale": {"[N, 1]": blocks}, "input_scale": {"[]": blocks}}
    assert summary["metadata"]["note"] == "sparse test file"
    assert summary["size_bytes"] > 3.5e9 and grown_mib < 50


def test_config_inference_finds_the_published_architecture(real_int8_file):
    architecture, path = real_int8_file
    inferred = infer_config(open_checkpoint(path))
    expected = architecture.transformer_config()
    for key in ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim", "in_channels", "mlp_ratio", "timestep_guidance_channels", "guidance_embeds"):
        assert inferred[key] == expected[key], key
    assert tuple(inferred["axes_dims_rope"]) == (32, 32, 32, 32)


def test_fp8_and_modelopt_layouts_are_recognised(tmp_path):
    model = meta_model(KLEIN_4B)
    fp8 = write_sparse_header(tmp_path / "fp8.safetensors", diffusers_to_bfl(meta_int8_state(model, weight_dtype=torch.float8_e4m3fn)), {"_quantization_metadata": "{}"})
    summary = describe(fp8)
    assert summary["format"] == "bfl-fp8" and summary["linears"]["fp8"] == 80
    assert summary["scale_shapes"]["weight_scale"] == {"[]": 80}
    folder = tmp_path / "modelopt"
    folder.mkdir()
    state = meta_int8_state(model, Recipe(quantize_modulation=True))
    write_sparse_header(folder / "diffusion_pytorch_model.safetensors", state)
    config = {**KLEIN_4B.transformer_config(), "quantization_config": {"quant_method": "modelopt", "quant_algo": "W8A8_SQ_PER_CHANNEL"}}
    (folder / "config.json").write_text(json.dumps(config))
    summary = describe(folder)
    assert summary["format"] == "modelopt-int8" and summary["layout"] == "diffusers"
    assert summary["linears"]["int8"] == 103 and summary["linears"]["float"] == 6


def test_cli_inspect_text_and_json(real_int8_file, capsys):
    architecture, path = real_int8_file
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "bfl-int8" in text and architecture.name in text and "sparse test file" in text
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "bfl-int8"


def test_cli_bad_file_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 3)
    assert main(["inspect", str(tmp_path / "bad.safetensors")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("Error: ") and captured.err.count("\n") == 1 and "Traceback" not in captured.err
