"""A built-in model's native size, sequence length, steps, prompts and threads are its defaults in the Python API too."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import Flux2KleinPipeline

from flux2_int8 import load_pipeline, quantize
from flux2_int8.formats.header import read_header
from flux2_int8.nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, NANO_STEPS, nano_folder

PROMPT = "two red circles on a blue background"


@pytest.fixture(scope="module")
def nano():
    pipe = load_pipeline("nano", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


class _Seen:
    """What the transformer saw per call: text tokens, torch threads."""

    def __init__(self, pipe):
        self.tokens: list[int] = []
        self.threads: list[int] = []
        self.handle = pipe.transformer.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.tokens.append(kwargs["encoder_hidden_states"].shape[1])
        self.threads.append(torch.get_num_threads())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_bare_call_on_nano_draws_at_its_size_tokens_and_steps(nano, two_threads):
    with _Seen(nano) as seen:
        image = nano(prompt=PROMPT).images[0]
    assert image.size == (NANO_SIZE, NANO_SIZE)
    assert seen.tokens == [NANO_MAX_SEQUENCE_LENGTH] * NANO_STEPS


def test_what_the_caller_passes_wins(nano, two_threads):
    with _Seen(nano) as seen:
        image = nano(None, PROMPT, 64, 96, 2, max_sequence_length=48).images[0]  # image, prompt, height, width, steps: positional
    assert image.size == (96, 64)
    assert seen.tokens == [48, 48]


def test_an_edit_keeps_the_reference_size(nano, two_threads):
    reference = nano(prompt=PROMPT, height=64, width=64).images[0]
    assert nano(prompt=PROMPT, image=[reference]).images[0].size == (64, 64)


def test_nano_runs_each_call_on_one_thread_and_restores_the_callers_count(nano, two_threads):
    with _Seen(nano) as seen:
        nano(prompt=PROMPT, num_inference_steps=1)
    assert seen.threads == [1]
    assert torch.get_num_threads() == 2


def test_threads_asked_for_are_used_and_omp_num_threads_is_honoured(two_threads, monkeypatch):
    pipe = load_pipeline("nano", device="cpu", threads=2)
    with _Seen(pipe) as seen:
        pipe(prompt=PROMPT, num_inference_steps=1)
    assert seen.threads == [2]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    fitted = load_pipeline("nano", device="cpu")
    with _Seen(fitted) as seen:
        fitted(prompt=PROMPT, num_inference_steps=1)
    assert seen.threads == [2]


def test_the_pipeline_is_still_diffusers_and_saves_as_diffusers(nano, tmp_path):
    assert isinstance(nano, Flux2KleinPipeline)
    nano.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "model_index.json").read_text())["_class_name"] == "Flux2KleinPipeline"
    again = Flux2KleinPipeline.from_pretrained(tmp_path / "saved")
    assert again.transformer.config.num_layers == nano.transformer.config.num_layers


def test_a_klein_size_pipeline_keeps_diffusers_defaults(tiny_base):
    # tiny is small (one thread) but not nano: no size, token or step defaults of ours.
    pipe = load_pipeline(tiny_base, device="cpu")
    assert pipe.default_sample_size == 128
    assert getattr(pipe, "_flux2_int8_call_defaults") == {}


def _recipe(path) -> dict:
    return json.loads(read_header(path).metadata["quantization_recipe"])


@pytest.mark.parametrize("base", ["name", "folder", "pipeline"])
def test_python_quantize_calibrates_nano_at_its_size_on_its_prompts(base, nano, tmp_path):
    given = {"name": "nano", "folder": nano_folder(), "pipeline": nano}[base]
    result = quantize(given, tmp_path / "nano-int8.safetensors", samples=2, steps=1, device="cpu", progress=False)
    recipe = _recipe(result.path)
    assert recipe["resolution"] == NANO_SIZE
    assert recipe["prompts"]["source"] == "builtin:nano"


def test_generate_prompts_with_one_edit_line_draws_the_text_lines_at_nanos_size(tmp_path):
    from cli_helpers import run_cli
    from PIL import Image

    reference = tmp_path / "ref.png"
    Image.new("RGB", (64, 64), "blue").save(reference)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": PROMPT}) + "\n" + json.dumps({"prompt": PROMPT, "images": [str(reference)]}) + "\n")
    code, _, err = run_cli("generate", "--base", "nano", "--prompts", str(prompts), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet")
    assert code == 0, err
    sizes = sorted(Image.open(path).size for path in (tmp_path / "out").glob("*.png"))
    assert sizes == [(64, 64), (NANO_SIZE, NANO_SIZE)]
