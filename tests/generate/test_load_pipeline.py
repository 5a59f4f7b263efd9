"""load_pipeline: bases (folder, hub cache, variant), checkpoints, shape checks, devices, offline errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel

from flux2_int8 import Int8Linear, load_pipeline
from flux2_int8.errors import ConfigError, Flux2Int8Error
from flux2_int8.generate import sampling_defaults
from flux2_int8.tiny import BFL_CHECKPOINT_FILE, tiny_pipeline_cache

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay files out as huggingface_hub's cache does (refs/main -> snapshots/<commit>/...)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    for name, source in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return snapshot


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_int8_checkpoint_replaces_the_transformer_without_loading_the_base_one(tiny_base, int8_checkpoint, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the base's BF16 transformer must not be loaded when a checkpoint is given")

    monkeypatch.setattr(Flux2Transformer2DModel, "from_pretrained", refuse)
    pipeline = load_pipeline(tiny_base, transformer=int8_checkpoint, device="cpu")
    assert isinstance(pipeline, Flux2KleinPipeline)  # a small model: diffusers' class with its defaults (generate/builtin.py)
    layers = [m for m in pipeline.transformer.modules() if isinstance(m, Int8Linear)]
    assert layers and all(layer.weight.dtype == torch.int8 for layer in layers)
    assert pipeline.text_encoder.dtype == torch.bfloat16 and pipeline.transformer.dtype == torch.bfloat16


def test_bf16_single_file_and_base_transformer_give_the_same_weights(tiny_base, bf16_pipeline):
    from_file = load_pipeline(tiny_base, transformer=tiny_base / BFL_CHECKPOINT_FILE, device="cpu")
    expected = bf16_pipeline.transformer.state_dict()
    for key, tensor in from_file.transformer.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=0)


def test_is_distilled_and_defaults_come_from_the_base():
    distilled = load_pipeline(tiny_pipeline_cache(distilled=True), device="cpu", dtype=torch.float32)
    base = load_pipeline(tiny_pipeline_cache(distilled=False), device="cpu", dtype=torch.float32)
    assert distilled.config.is_distilled and not base.config.is_distilled
    assert (sampling_defaults(distilled).steps, sampling_defaults(distilled).guidance) == (4, 1.0)
    assert (sampling_defaults(base).steps, sampling_defaults(base).guidance) == (50, 4.0)


def test_hub_repository_and_hub_file_resolve_from_the_cache(tiny_base, int8_checkpoint, empty_hub_cache, monkeypatch):
    pipeline_files = {p.name: p for p in tiny_base.iterdir() if p.name not in ("transformer", BFL_CHECKPOINT_FILE)}
    pipeline_files["transformer/config.json"] = tiny_base / "transformer" / "config.json"  # no weights, as a download with a checkpoint
    fake_hub_cache(empty_hub_cache, "someone/tiny-klein", pipeline_files)
    fake_hub_cache(empty_hub_cache, "someone/tiny-klein-int8", {"int8.safetensors": int8_checkpoint})
    monkeypatch.setattr(Flux2Transformer2DModel, "from_pretrained", None)  # would fail if called
    pipeline = load_pipeline("someone/tiny-klein", transformer="someone/tiny-klein-int8/int8.safetensors", device="cpu", local_files_only=True)
    assert any(isinstance(m, Int8Linear) for m in pipeline.transformer.modules())
    assert pipeline.config.is_distilled


def test_variant_not_cached_offline_says_what_is_missing_and_how_to_get_it(empty_hub_cache):
    with pytest.raises(Flux2Int8Error) as error:
        load_pipeline("klein-4b", device="cpu", local_files_only=True)
    message = str(error.value)
    assert "black-forest-labs/FLUX.2-klein-4B" in message and "hf download black-forest-labs/FLUX.2-klein-4B" in message
    assert str(empty_hub_cache) in message and "local pipeline folder" in message


def test_hub_checkpoint_not_cached_offline_names_the_file(tiny_base, empty_hub_cache):
    with pytest.raises(Flux2Int8Error, match=r"hf download vistralis/FLUX.2-klein-9b-INT8-transformer flux-2-klein-9b-int8.safetensors"):
        load_pipeline(tiny_base, transformer="vistralis/FLUX.2-klein-9b-INT8-transformer/flux-2-klein-9b-int8.safetensors", local_files_only=True)


@pytest.mark.parametrize(
    "error_class, expected",
    [
        (huggingface_hub.errors.GatedRepoError, "gated.*hf auth login"),
        (huggingface_hub.errors.RepositoryNotFoundError, "no repository 'owner/repo'"),
    ],
)
def test_gated_and_missing_repositories_get_their_own_message(error_class, expected, monkeypatch):
    def fail(*args, **kwargs):
        raise error_class("from the hub", response=SimpleNamespace(headers={}, request=None))

    monkeypatch.setattr("flux2_int8.generate.hub.snapshot_download", fail)
    with pytest.raises(Flux2Int8Error, match=expected):
        load_pipeline("owner/repo", device="cpu")


def test_9b_weights_with_a_4b_base_are_refused_before_any_download(sparse_9b_checkpoint, empty_hub_cache):
    with pytest.raises(ConfigError, match=r"9B-size transformer.*'klein-4b' needs a 4B-size transformer"):
        load_pipeline("klein-4b", transformer=sparse_9b_checkpoint, device="cpu", local_files_only=True)


def test_checkpoint_that_does_not_fit_a_folder_base_is_refused_before_loading(tiny_base, sparse_9b_checkpoint, monkeypatch):
    monkeypatch.setattr("flux2_int8.generate.pipeline.load_transformer", None)  # never reached
    with pytest.raises(ConfigError, match=r"9B-size transformer .* needs a transformer of 2 double \+ 2 single blocks"):
        load_pipeline(tiny_base, transformer=sparse_9b_checkpoint, device="cpu")


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"offload": "model"}, "offload 'model'.*CUDA"),
        ({"offload": "sequential"}, "offload 'sequential'.*CUDA"),
        ({"offload": "disk"}, "unknown offload mode 'disk'"),
        ({"device": "tpu9"}, "invalid device 'tpu9'"),
    ],
)
def test_device_and_offload_mistakes(tiny_base, kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        load_pipeline(tiny_base, **{"device": "cpu", **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_refused(tiny_base):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_pipeline(tiny_base, device="cuda")


@pytest.mark.parametrize(("choice", "whole", "blocks"), [("full", True, False), ("on", True, False), ("regional", False, True), ("off", False, False)])
def test_compile_choice_compiles_the_whole_transformer_or_its_blocks(tiny_base, choice, whole, blocks):
    transformer = load_pipeline(tiny_base, device="cpu", compile=choice).transformer
    # nn.Module.compile: the module is compiled on its first call.
    assert (transformer._compiled_call_impl is not None) == whole
    assert {block._compiled_call_impl is not None for block in [*transformer.transformer_blocks, *transformer.single_transformer_blocks]} == {blocks}


def test_compile_true_still_works_with_a_warning(tiny_base):
    with pytest.warns(FutureWarning, match="compile='full'"):
        pipeline = load_pipeline(tiny_base, device="cpu", compile=True)
    assert pipeline.transformer._compiled_call_impl is not None


def test_unknown_compile_choice_is_refused_before_loading():
    with pytest.raises(ConfigError, match="compile mode 'fast': expected one of off, full, regional"):
        load_pipeline("no/such/folder", compile="fast")


@pytest.mark.parametrize("base", ["no/such/folder", "klein-7b", "not a repo"])
def test_unknown_base_is_refused(base):
    with pytest.raises(ConfigError, match="neither a variant"):
        load_pipeline(base, device="cpu")


def test_folder_that_is_not_a_klein_pipeline_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no model_index.json"):
        load_pipeline(tmp_path, device="cpu")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ConfigError, match="'FluxPipeline' pipeline; expected Flux2KleinPipeline"):
        load_pipeline(tmp_path, device="cpu")


def test_missing_local_checkpoint_is_refused(tiny_base, tmp_path):
    with pytest.raises(Flux2Int8Error, match="no such file"):
        load_pipeline(tiny_base, transformer=tmp_path / "nope.safetensors", device="cpu")


def test_int8_text_encoder_replaces_the_base_one(tiny_base, int8_checkpoint, int8_text_encoder, bf16_pipeline, monkeypatch):
    from transformers import Qwen3ForCausalLM

    from flux2_int8.demo import psnr
    from flux2_int8.generate import generate_image

    monkeypatch.setattr(Qwen3ForCausalLM, "from_pretrained", None)  # the base's text encoder is never loaded
    pipeline = load_pipeline(tiny_base, transformer=int8_checkpoint, text_encoder=int8_text_encoder, device="cpu")
    pipeline.set_progress_bar_config(disable=True)
    assert any(isinstance(m, Int8Linear) for m in pipeline.text_encoder.modules())
    both_int8 = generate_image(pipeline, "A red cube", [], 0, 2, 1.0, 64, 64)
    bf16 = generate_image(bf16_pipeline, "A red cube", [], 0, 2, 1.0, 64, 64)
    assert 40.0 < psnr(both_int8, bf16) < float("inf")  # measured 44.5-46.4 dB over 5 seeds and 3 tasks


def test_text_encoder_of_another_size_is_refused_before_any_download(int8_text_encoder, empty_hub_cache, tmp_path):
    from safetensors.torch import load_file, save_file

    from flux2_int8.formats.header import read_header
    from flux2_int8.loading.text_encoder import CONFIG_METADATA

    metadata = dict(read_header(int8_text_encoder).metadata)
    metadata[CONFIG_METADATA] = json.dumps({**json.loads(metadata[CONFIG_METADATA]), "hidden_size": 4096})
    relabelled = tmp_path / "qwen3-8b-int8.safetensors"
    save_file(load_file(int8_text_encoder), relabelled, metadata=metadata)
    with pytest.raises(ConfigError, match="hidden size 4096, but the base 'klein-4b' needs hidden size 2560"):
        load_pipeline("klein-4b", text_encoder=relabelled, device="cpu", local_files_only=True)


def test_distilled_pipelines_do_not_warn_about_the_guidance_diffusers_chose(tiny_base, caplog):
    import logging

    pipeline = load_pipeline(tiny_base, device="cpu", dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    with caplog.at_level(logging.WARNING):
        pipeline(prompt="a cube", num_inference_steps=1, height=64, width=64, output_type="latent")
        logging.getLogger("diffusers.pipelines.flux2.pipeline_flux2_klein").warning("another message passes")
    messages = [record.getMessage() for record in caplog.records]
    assert not any("is ignored for step-wise distilled models" in m for m in messages)
    assert "another message passes" in messages


def test_diffusers_spellings_torch_dtype_and_device_map(tiny_base):
    pipeline = load_pipeline(tiny_base, torch_dtype=torch.float32, device_map="cpu")
    assert pipeline.transformer.dtype == torch.float32 and pipeline.text_encoder.dtype == torch.float32
    assert pipeline.transformer.device.type == "cpu"
    with pytest.raises(ConfigError, match="device_map"):
        load_pipeline(tiny_base, torch_dtype=torch.float32, device_map="no-such-map")


def test_revision_and_token_reach_the_hub(monkeypatch, empty_hub_cache):
    from flux2_int8.generate import hub

    asked: dict = {}

    def snapshot_download(repo_id, **kwargs):  # type: ignore[no-untyped-def]
        asked.update(kwargs, repo_id=repo_id)
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    with pytest.raises(Flux2Int8Error, match="not .*in the Hugging Face cache"):
        load_pipeline("someone/klein-finetune", device="cpu", revision="v1.0", token="hf_secret")
    assert asked["repo_id"] == "someone/klein-finetune" and asked["revision"] == "v1.0" and asked["token"] == "hf_secret"
