"""INT8 text encoders against the BF16 one: made at load time (`text_encoder="int8"`) vs calibrated (`quantize --text-encoder`).

    python benchmarks/text_encoder_int8.py [--base tiny|nano] [--prompts 4] [--json out.json]

For each: load seconds (at load: the first load quantizes and caches, the second reads the
cache), the prompt embeddings' relative error against the BF16 encoder's, and the PSNR of
images drawn with the same seeds (the transformer stays BF16, so only the encoder
differs). Prompts are nano's grammar (the tiny model takes any text). The cache goes to a
temporary folder, so the first load really quantizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from flux2_int8 import load_pipeline, quantize
from flux2_int8.demo import psnr
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.generate import generate_image, sampling_defaults
from flux2_int8.nano.grammar import all_scenes
from flux2_int8.outputs import write_text_atomic


def _prompts(count: int) -> list[str]:
    scenes = all_scenes()
    return [scenes[i * len(scenes) // count].prompt for i in range(count)]


def _timed_load(base: str, **kwargs):
    start = time.perf_counter()
    pipe = load_pipeline(base, device="cpu", **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe, time.perf_counter() - start


def _compare(pipe, reference, prompts: list[str]) -> dict[str, float]:
    defaults = sampling_defaults(reference)
    size = defaults.size or 64
    errors, psnrs = [], []
    for seed, prompt in enumerate(prompts):
        with torch.no_grad():
            mine, _ = pipe.encode_prompt(prompt=prompt, device="cpu", max_sequence_length=defaults.max_sequence_length)
            theirs, _ = reference.encode_prompt(prompt=prompt, device="cpu", max_sequence_length=defaults.max_sequence_length)
        errors.append(relative_error(mine.float(), theirs.float()))
        psnrs.append(psnr(generate_image(pipe, prompt, [], seed, defaults.steps, 1.0, size, size), generate_image(reference, prompt, [], seed, defaults.steps, 1.0, size, size)))
    return {"embedding_relative_error": statistics.mean(errors), "psnr_db_mean": statistics.mean(psnrs), "psnr_db_min": min(psnrs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="nano", choices=("tiny", "nano"))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    prompts = _prompts(args.prompts)
    reference, bf16_seconds = _timed_load(args.base)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["FLUX2_INT8_CACHE"] = folder
        at_load, first_seconds = _timed_load(args.base, text_encoder="int8")
        at_load, cached_seconds = _timed_load(args.base, text_encoder="int8")
        calibrated_file = quantize(args.base, Path(folder) / "calibrated.safetensors", samples=8, resolution=sampling_defaults(reference).size or 64, text_encoder=True, device="cpu", progress=False).text_encoder_path
        calibrated, calibrated_seconds = _timed_load(args.base, text_encoder=calibrated_file)
        report = {
            "base": args.base,
            "prompts": prompts,
            "load_seconds": {"bf16": bf16_seconds, "int8_at_load_first": first_seconds, "int8_at_load_cached": cached_seconds, "int8_calibrated_file": calibrated_seconds},
            "int8_at_load": _compare(at_load, reference, prompts),
            "int8_calibrated": _compare(calibrated, reference, prompts),
        }
    print(json.dumps(report, indent=2))
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
