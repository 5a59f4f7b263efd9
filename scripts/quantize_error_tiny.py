"""Relative error of the quantized tiny transformer against float, per recipe option (CPU, ~1 minute).

    python scripts/quantize_error_tiny.py [--samples 24] [--steps 4]

Calibrates the tiny random-weight klein pipeline with each option (default recipe,
modulation quantized, percentile:99.99, SmoothQuant 0.5), then compares the loaded INT8
transformer with the float one on held-out inputs: the transformer inputs of 6 t2i
generations (4 steps, 64x64) whose prompts are drawn with another seed. Random weights
have no outlier channels, so this checks the options work, not how they rank on real
weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from diffusers import Flux2KleinPipeline

import flux2_int8
from flux2_int8.quantization.prompts import draw_samples, load_prompts
from flux2_int8.tiny import tiny_pipeline_cache
from flux2_int8.evaluate.metrics import relative_error

OPTIONS = {
    "default (modulation BF16)": {},
    "modulation INT8": {"quantize_modulation": True},
    "percentile:99.99": {"calibration": "percentile:99.99"},
    "smoothquant 0.5": {"smoothquant": 0.5},
}


def held_out_inputs(pipe: Flux2KleinPipeline) -> list[dict]:
    prompts = load_prompts()
    held = [r for r in draw_samples(prompts, 30, seed=123) if r.task == "t2i"][:6]
    captured: list[dict] = []
    hook = pipe.transformer.register_forward_pre_hook(lambda _m, _a, kwargs: captured.append(dict(kwargs)), with_kwargs=True)
    for index, record in enumerate(held):
        pipe(prompt=record.prompt, height=64, width=64, num_inference_steps=4, guidance_scale=1.0, generator=torch.Generator().manual_seed(index), output_type="latent")
    hook.remove()
    return captured


def outputs(model: torch.nn.Module, inputs: list[dict]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(**kwargs)[0] for kwargs in inputs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = tiny_pipeline_cache()
    pipe = Flux2KleinPipeline.from_pretrained(base, dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    inputs = held_out_inputs(pipe)
    expected = outputs(pipe.transformer, inputs)
    with tempfile.TemporaryDirectory() as folder:
        for label, options in OPTIONS.items():
            result = flux2_int8.quantize(base, Path(folder) / "q.safetensors", samples=args.samples, steps=args.steps, resolution=64, device="cpu", dtype=torch.float32, progress=False, **options)
            error = relative_error(outputs(flux2_int8.load_transformer(result.path, dtype=torch.float32), inputs), expected)
            print(f"{label:28s} relative error {100 * error:.3f} %")


if __name__ == "__main__":
    main()
