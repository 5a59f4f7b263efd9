"""Item 1 of issue 14: no writer replaces one of its inputs or writes into a folder someone else filled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from reliability_helpers import TINY_GENERATE, TINY_QUANTIZE, copy_tiny_base, leftovers, run_cli, snapshot

from flux2_int8.outputs import MARKER, OutputError, claim_file, claim_folder, input_files, mark_folder


@pytest.fixture()
def base(tmp_path) -> Path:
    return copy_tiny_base(tmp_path / "base")


def test_quantize_diffusers_into_the_bases_own_transformer_folder_is_refused(base):
    before = snapshot(base)
    outcome = run_cli("quantize", "--base", base, "--format", "diffusers", "--out", base / "transformer", *TINY_QUANTIZE)
    outcome.assert_one_error_line(2, "transformer", "input")
    assert snapshot(base) == before


def test_quantize_diffusers_into_the_bases_folder_is_refused_even_with_overwrite(base):
    before = snapshot(base)
    run_cli("quantize", "--base", base, "--format", "diffusers", "--out", base / "transformer", "--overwrite", *TINY_QUANTIZE).assert_one_error_line(2, "input")
    assert snapshot(base) == before


def test_quantize_a_transformer_file_onto_itself_is_refused(base, tmp_path):
    checkpoint = shutil.copy(base / "transformer-bf16.safetensors", tmp_path / "x.safetensors")
    before = snapshot(Path(checkpoint))
    run_cli("quantize", "--base", base, "--transformer", checkpoint, "--out", checkpoint, *TINY_QUANTIZE).assert_one_error_line(2, "also an input")
    assert snapshot(Path(checkpoint)) == before


def test_quantize_onto_a_hard_link_of_its_input_is_refused(base, tmp_path):
    checkpoint = Path(shutil.copy(base / "transformer-bf16.safetensors", tmp_path / "x.safetensors"))
    alias = tmp_path / "alias.safetensors"
    alias.hardlink_to(checkpoint)
    run_cli("quantize", "--base", base, "--transformer", checkpoint, "--out", alias, *TINY_QUANTIZE).assert_one_error_line(2, "also an input")


def test_quantize_into_a_foreign_folder_needs_overwrite_and_then_keeps_the_other_files(base, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    run_cli("quantize", "--base", base, "--format", "diffusers", "--out", folder, *TINY_QUANTIZE).assert_one_error_line(2, "--overwrite")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert run_cli("quantize", "--base", base, "--format", "diffusers", "--out", folder, "--overwrite", *TINY_QUANTIZE).code == 0
    assert (folder / "notes.txt").read_text() == "keep me"
    assert json.loads((folder / "config.json").read_text())["quantization_config"]["quant_method"] == "flux2-int8"
    assert not leftovers(tmp_path)


def test_generate_over_its_own_reference_image_is_refused(base, tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(image)
    before = snapshot(image)
    run_cli("generate", "--base", base, "--prompt", "make it blue", "--image", image, "--out", image, *TINY_GENERATE).assert_one_error_line(2, "also an input")
    assert snapshot(image) == before


def test_generate_into_a_folder_of_someone_elses_files_needs_overwrite(base, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"not ours")
    run_cli("generate", "--base", base, "--prompt", "a cube", "--out", folder, *TINY_GENERATE).assert_one_error_line(2, "--overwrite")
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]


def test_generate_reuses_the_folder_it_made(base, tmp_path):
    folder = tmp_path / "outputs"
    assert run_cli("generate", "--base", base, "--prompt", "a cube", "--out", folder, *TINY_GENERATE).code == 0
    assert run_cli("generate", "--base", base, "--prompt", "a cube", "--seed", "1", "--out", folder, *TINY_GENERATE).code == 0
    assert (folder / MARKER).is_file() and len(list(folder.glob("*.png"))) == 2


def test_make_tiny_into_a_folder_with_the_users_model_index_is_refused(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"mine": true}')
    run_cli("make-tiny", folder).assert_one_error_line(2, "--overwrite")
    assert (folder / "model_index.json").read_text() == '{"mine": true}'
    assert [p.name for p in folder.iterdir()] == ["model_index.json"]


def test_make_tiny_with_overwrite_replaces_only_its_own_files(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("mine")
    assert run_cli("make-tiny", folder, "--overwrite").code == 0
    assert (folder / "README.md").read_text() == "mine"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "Flux2KleinPipeline"
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("command", [("make-tiny", "{out}"), ("eval", "--base", "{base}", "--candidate", "{base}/transformer-bf16.safetensors", "--out", "{out}", "--metrics", "psnr"),
                                     ("fetch-weights", "{out}"), ("bench", "--base", "tiny", "--out", "{out}"), ("demo", "--out", "{out}")])
def test_every_folder_writer_refuses_a_file_as_its_folder(base, tmp_path, command):
    target = tmp_path / "a-file"
    target.write_text("user data")
    outcome = run_cli(*(part.format(out=target, base=base) for part in command))
    outcome.assert_one_error_line(2, "is a file")
    assert target.read_text() == "user data"


def test_eval_refuses_an_out_folder_holding_its_candidate(base, tmp_path):
    folder = tmp_path / "evaluation"
    folder.mkdir()
    candidate = shutil.copy(base / "transformer-bf16.safetensors", folder / "q.safetensors")
    before = snapshot(folder)
    run_cli("eval", "--base", base, "--candidate", candidate, "--out", folder, "--metrics", "psnr").assert_one_error_line(2, "input")
    assert snapshot(folder) == before


def test_the_helper_rules(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "w.safetensors").write_bytes(b"x")
    inputs = input_files(data, tmp_path / "absent", None)
    assert inputs == [data / "w.safetensors"]
    with pytest.raises(OutputError, match="also an input"):
        claim_file(data / "w.safetensors", inputs)
    with pytest.raises(OutputError, match="holds"):
        claim_folder(tmp_path, inputs, overwrite=True)
    with pytest.raises(OutputError, match="non-empty"):
        claim_folder(data)
    fresh = mark_folder(tmp_path / "fresh")
    (fresh / "result.png").write_bytes(b"png")
    assert claim_folder(fresh) == fresh  # ours: its marker
    assert not (mark_folder(data) / MARKER).exists()  # someone else's folder is never marked ours


def test_converting_partiprompts_onto_its_own_tsv_is_refused(tmp_path):
    from flux2_int8.evaluate.suite import convert_parti_prompts

    tsv = tmp_path / "PartiPrompts.tsv"
    tsv.write_text("Prompt\tCategory\tChallenge\nA red cube\tObjects\tBasic\n")
    before = snapshot(tsv)
    with pytest.raises(OutputError, match="also an input"):
        convert_parti_prompts(tsv, tsv)
    assert snapshot(tsv) == before
    assert convert_parti_prompts(tsv, tmp_path / "suite.jsonl") == 1


def test_quantize_of_a_loaded_pipeline_does_not_write_into_its_folder(base):
    import torch
    from diffusers import Flux2KleinPipeline

    from flux2_int8 import quantize

    pipe = Flux2KleinPipeline.from_pretrained(base, dtype=torch.float32, local_files_only=True, use_safetensors=True)
    before = snapshot(base)
    with pytest.raises(OutputError, match="input"):
        quantize(pipe, base / "transformer", format="diffusers", samples=1, steps=1, resolution=64, progress=False)
    assert snapshot(base) == before


def test_converting_partiprompts_onto_an_existing_jsonl_needs_overwrite(tmp_path):
    from flux2_int8.evaluate.suite import convert_parti_prompts

    tsv, jsonl = tmp_path / "PartiPrompts.tsv", tmp_path / "suite.jsonl"
    tsv.write_text("Prompt\tCategory\tChallenge\nA red cube\tObjects\tBasic\nA blue ball\tObjects\tBasic\n")
    jsonl.write_text('{"id": "mine", "task": "t2i", "prompt": "a suite I wrote by hand"}\n')
    before = snapshot(jsonl)
    with pytest.raises(OutputError, match="exists and is not an output.*overwrite=True"):
        convert_parti_prompts(tsv, jsonl)
    assert snapshot(jsonl) == before
    assert convert_parti_prompts(tsv, jsonl, limit=1, overwrite=True) == 1
    assert '"parti-0001"' in jsonl.read_text() and "by hand" not in jsonl.read_text()
