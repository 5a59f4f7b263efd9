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


# ---- inspect tells the truth: the loader's structural validation, on the header ------------

QKV = "double_blocks.0.img_attn.qkv"


@pytest.fixture(scope="module")
def tiny_bfl(tiny_model, tiny_amax):
    from flux2_int8.testing.checkpoints import int8_state

    return diffusers_to_bfl(int8_state(tiny_model, tiny_amax))


def _defects(good):
    """Files the loader refuses for their structure, as convert tools and hand edits produce them."""
    return {
        "no weight_scale": {k: v for k, v in good.items() if k != f"{QKV}.weight_scale"},
        "weight_scale of the wrong shape": dict(good, **{f"{QKV}.weight_scale": torch.ones(7)}),
        "float weight carrying scales": dict(good, **{"img_in.weight_scale": torch.ones(32)}),
        "input_scale of the wrong shape": dict(good, **{f"{QKV}.input_scale": torch.ones(3)}),
        "integer scale": dict(good, **{f"{QKV}.input_scale": torch.tensor(3, dtype=torch.int32)}),
        "scale without weight": {k: v for k, v in good.items() if k != "double_blocks.1.img_mlp.2.weight"},
    }


@pytest.mark.parametrize("defect", list(_defects({})))
def test_inspect_exits_2_with_the_loaders_error(tmp_path, tiny_bfl, capsys, defect):
    from safetensors.torch import save_file

    from flux2_int8 import load_transformer
    from flux2_int8.errors import CheckpointError

    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in _defects(tiny_bfl)[defect].items()}, str(path))
    with pytest.raises(CheckpointError) as caught:
        load_transformer(path)
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"Error: {caught.value}\n"
    assert "tensor '" in captured.err


def test_check_values_reads_the_scales(tmp_path, tiny_bfl, capsys):
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file(tiny_bfl, str(good))
    assert main(["inspect", str(good), "--check-values"]) == 0
    scales = sum(k.endswith(("weight_scale", "input_scale")) for k in tiny_bfl)
    assert f"{scales} scales read, all finite and > 0" in capsys.readouterr().out
    for value, word in ((0.0, "zero"), (float("nan"), "NaN"), (-1.0, "negative"), (float("inf"), "infinite")):
        bad = tmp_path / f"bad-{word}.safetensors"
        save_file(dict(tiny_bfl, **{f"{QKV}.input_scale": torch.tensor(value)}), str(bad))
        assert main(["inspect", str(bad)]) == 0  # the header alone cannot see values
        capsys.readouterr()
        assert main(["inspect", str(bad), "--check-values"]) == 2
        error = capsys.readouterr().err
        assert f"tensor '{QKV}.input_scale'" in error and word in error, error


def test_inspect_imports_no_model_stack_and_beats_importing_diffusers(tmp_path, tiny_bfl):
    """Run in subprocesses: the modules inspect imports, and its time next to `import diffusers`."""
    import subprocess
    import sys
    import time

    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file(tiny_bfl, str(path))
    code = (
        "import sys\nfrom flux2_int8.cli import main\n"
        f"assert main(['inspect', {str(path)!r}]) == 0\n"
        "print('imported:', ','.join(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )

    def seconds(*argv: str) -> tuple[float, str]:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True)
        return time.perf_counter() - start, result.stdout

    inspect_seconds, output = seconds("-c", code)
    assert output.splitlines()[-1] == "imported: "  # none of torch, diffusers, transformers
    diffusers_seconds, _ = seconds("-c", "import diffusers")
    # Importing diffusers pulls in torch (seconds); inspect reads a header (milliseconds).
    assert inspect_seconds < 0.5 * diffusers_seconds, (inspect_seconds, diffusers_seconds)
