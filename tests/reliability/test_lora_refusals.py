"""Issue 23, classes 2 and 4 for LoRA / LoKr: a broken file or scale is one `Error:` line naming it, never a
traceback from inside PEFT and never an all-black picture with exit 0.

The files are written here in ai-toolkit's (BFL) and kohya's layouts on two layers of the
tiny transformer (hidden 32, MLP 96), each with one defect. Every case runs
`generate` on the tiny base and asserts exit 2, one `Error:` line naming the file (and
the tensor where one is at fault), and that no picture was written.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from reliability_helpers import TINY_GENERATE, run_cli
from safetensors.torch import save_file

# BFL module -> (in_features, out_features) on the tiny transformer
MODULES = {"double_blocks.0.img_attn.proj": (32, 32), "single_blocks.0.linear2": (128, 32)}


@pytest.fixture(scope="module")
def tiny_base():
    from flux2_int8.tiny import tiny_pipeline_cache

    return tiny_pipeline_cache()


def lora_tensors(rank: int = 4, a_rank: int | None = None, extra_dim: bool = False, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for module, (fan_in, fan_out) in MODULES.items():
        a = torch.randn(rank if a_rank is None else a_rank, fan_in, generator=generator) * 0.01
        b = torch.randn(fan_out, rank, generator=generator) * 0.01
        if extra_dim:
            a = a[:, :, None]
        tensors[f"diffusion_model.{module}.lora_A.weight"] = a.to(dtype).contiguous()
        tensors[f"diffusion_model.{module}.lora_B.weight"] = b.to(dtype).contiguous()
    return tensors


def kohya_tensors(alpha: float) -> dict[str, torch.Tensor]:
    tensors = {}
    for key, value in lora_tensors().items():
        module = "lora_unet_" + key.removeprefix("diffusion_model.").rsplit(".lora_", 1)[0].replace(".", "_")
        tensors[f"{module}.lora_down.weight" if ".lora_A." in key else f"{module}.lora_up.weight"] = value
        tensors[f"{module}.alpha"] = torch.tensor(alpha)
    return tensors


# BFL module -> (w1, w2) shapes of LyCORIS' near-square split: 32 = 4 x 8, 128 = 8 x 16
LOKR_SHAPES = {"double_blocks.0.img_attn.proj": ((4, 4), (8, 8)), "single_blocks.0.linear2": ((4, 8), (8, 16))}


def lokr_tensors(swap: bool = False, w2_ranks: tuple[int, int] | None = None, w1_shape: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """An ai-toolkit LoKr (full w1, w2, the 1e10 placeholder alpha) on two layers; `swap` exchanges w1 and w2.

    One swapped layer alone is a valid LoKr of another split (PEFT's decompose_factor 8);
    two swapped layers match no single factor, which PEFT needs.
    """
    tensors = {}
    for module, (w1_shape_default, w2_shape) in LOKR_SHAPES.items():
        prefix = f"diffusion_model.{module}"
        w1, w2 = torch.randn(*(w1_shape or w1_shape_default)) * 0.1, torch.randn(*w2_shape) * 0.01
        if swap:
            w1, w2 = w2, w1
        tensors[f"{prefix}.lokr_w1"], tensors[f"{prefix}.alpha"] = w1, torch.tensor(1e10)
        if w2_ranks is None:
            tensors[f"{prefix}.lokr_w2"] = w2
        else:  # LyCORIS halves, of disagreeing ranks
            tensors[f"{prefix}.lokr_w2_a"], tensors[f"{prefix}.lokr_w2_b"] = torch.randn(w2.shape[0], w2_ranks[0]), torch.randn(w2_ranks[1], w2.shape[1])
            tensors[f"{prefix}.alpha"] = torch.tensor(1.0)
    return tensors


def poisoned(value: float) -> dict[str, torch.Tensor]:
    tensors = lora_tensors()
    key = next(iter(tensors))
    tensors[key][0, 0] = value
    return tensors


CASES = {
    "A and B of different rank": (lambda: lora_tensors(rank=4, a_rank=3), "ranks"),
    "rank 0": (lambda: lora_tensors(rank=0), "rank of 0"),
    "a 3-D factor": (lambda: lora_tensors(extra_dim=True), "3-D"),
    "int8 factors": (lambda: lora_tensors(dtype=torch.int8), "floating point"),
    "float8 factors": (lambda: lora_tensors(dtype=torch.float8_e4m3fn), "floating point"),
    "a NaN value": (lambda: poisoned(math.nan), "NaN"),
    "an infinite value": (lambda: poisoned(math.inf), "infinite"),
    "a huge value": (lambda: poisoned(1e30), "once its alpha is applied"),
    "kohya alpha NaN": (lambda: kohya_tensors(math.nan), "NaN"),
    "kohya alpha 1e30": (lambda: kohya_tensors(1e30), "alpha 1e+30"),
    "kohya alpha 0": (lambda: kohya_tensors(0.0), "alpha 0"),
    "LoKr w1 and w2 swapped": (lambda: lokr_tensors(swap=True), "swapped"),
    "LoKr halves of different rank": (lambda: lokr_tensors(w2_ranks=(2, 3)), "ranks differ"),
    "LoKr factors that do not make the layer": (lambda: lokr_tensors(w1_shape=(2, 4)), "does not fit"),
    "LoKr with a NaN": (lambda: {**lokr_tensors(), "diffusion_model.single_blocks.0.linear2.lokr_w2": torch.full((8, 16), math.nan)}, "NaN"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_broken_lora_file_is_one_line_naming_it(tmp_path, tiny_base, case):
    make, words = CASES[case]
    lora = tmp_path / "broken.safetensors"
    save_file(make(), str(lora))
    out = tmp_path / "out.png"
    outcome = run_cli("generate", "--base", tiny_base, *TINY_GENERATE, "--prompt", "a cube", "--lora", lora, "--out", out)
    outcome.assert_one_error_line(2, str(lora), words)
    assert not out.exists()


def test_a_good_file_of_the_same_making_loads(tmp_path, tiny_base):
    """The builders above make loadable files when nothing is broken: the refusals are about the defects."""
    for name, tensors in (("lora", lora_tensors()), ("kohya", kohya_tensors(4.0)), ("lokr", lokr_tensors())):
        lora = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(lora))
        out = tmp_path / f"{name}.png"
        outcome = run_cli("generate", "--base", tiny_base, *TINY_GENERATE, "--prompt", "a cube", "--lora", f"{lora}:0.5", "--out", out, "--quiet")
        assert outcome.code == 0, outcome.stderr
        assert out.is_file()


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "1e999", "1_0", "1e9", "-101", "NaN", "1e5"])
def test_a_scale_that_is_not_a_sane_finite_number_is_refused_before_loading(tmp_path, scale):
    lora = tmp_path / "l.safetensors"
    save_file(lora_tensors(), str(lora))
    # no such base: a refusal that names the scale came before anything loaded
    outcome = run_cli("generate", "--base", tmp_path / "no-base", "--prompt", "a cube", "--lora", f"{lora}:{scale}", "--out", tmp_path / "o.png")
    outcome.assert_one_error_line(2, "--lora", repr(scale), "from -100 to 100")


def test_the_api_refuses_a_nan_scale(tiny_base, tmp_path):
    from flux2_int8 import Flux2Int8Error, load_pipeline
    from flux2_int8.lora import load_loras

    lora = tmp_path / "l.safetensors"
    save_file(lora_tensors(), str(lora))
    pipeline = load_pipeline(tiny_base, device="cpu", dtype=torch.float32)
    with pytest.raises(Flux2Int8Error, match="scale nan"):
        load_loras(pipeline, [lora], [math.nan])
    assert not getattr(pipeline.transformer, "peft_config", None)


def test_fuse_lora_without_lora_is_a_usage_error(tmp_path, tiny_base):
    run_cli("generate", "--base", tiny_base, "--prompt", "a cube", "--fuse-lora", "--out", tmp_path / "o.png").assert_one_error_line(2, "--fuse-lora", "--lora")


def test_eval_refuses_a_nan_scale_too(tmp_path, tiny_base):
    lora = tmp_path / "l.safetensors"
    save_file(lora_tensors(), str(lora))
    out = tmp_path / "eval"
    run_cli("eval", "--base", tiny_base, "--candidate", tmp_path / "c.safetensors", "--lora", f"{lora}:nan", "--metrics", "psnr", "--out", out).assert_one_error_line(2, "--lora", "'nan'")
    assert not (out / "run.json").exists()


def test_a_written_picture_is_never_non_finite(tmp_path):
    """The last check before a PNG is written: a NaN image is refused with the prompt and seed."""
    from flux2_int8.generate.output import check_finite_image

    check_finite_image(torch.zeros(3, 8, 8), "a cube", 3)
    bad = torch.zeros(3, 8, 8)
    bad[0, 1, 1] = math.nan
    with pytest.raises(Exception, match="seed 3") as raised:
        check_finite_image(bad, "a cube", 3)
    assert "a cube" in str(raised.value)


def test_generate_refuses_to_write_a_nan_picture(tmp_path, tiny_base, monkeypatch):
    """Through the real pipeline: the VAE output is made NaN (as an overflowing float16 run or a broken LoRA
    makes it); generate says which prompt and seed, exits 2, and writes no black PNG."""
    from diffusers.pipelines.flux2 import pipeline_flux2_klein

    processor = pipeline_flux2_klein.Flux2ImageProcessor
    real = processor.postprocess

    def postprocess(self, image, *args, **kwargs):  # the decoded tensor, NaN, whatever output type is asked for
        return real(self, torch.full_like(image, math.nan), *args, **kwargs)

    monkeypatch.setattr(processor, "postprocess", postprocess)
    out = tmp_path / "out"
    outcome = run_cli("generate", "--base", tiny_base, *TINY_GENERATE, "--prompt", "a cube", "--seed", "7", "--out", out)
    outcome.assert_one_error_line(2, "'a cube'", "seed 7", "non-finite")
    assert not out.exists() or not list(out.rglob("*.png"))
