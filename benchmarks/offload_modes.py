"""Seconds per image and peak GPU memory for each placement (all on the GPU, model, group, sequential offload), beside the plan.

    python benchmarks/offload_modes.py --device cuda [--variant klein-9b --resolution 1024 --steps 4 --time-budget 150 --json offload.json]
    python benchmarks/offload_modes.py --variant tiny --device cpu --resolution 64     # the dry run: 'none' and 'group' (onload on the CPU)

A klein pipeline with random weights: the INT8 W8A8 transformer (static activations), the
Qwen3 text encoder cut to the layers the pipeline reads (BF16), the VAE. Each placement
runs one warm-up image and one timed image (4 steps at 1024 px by default) and records the
peak of `torch.cuda.max_memory_allocated` beside the memory plan's peak for that placement
(`flux2_int8.plan_memory` on header-only files of the same shapes), which is how the plan's
activation estimate is checked. Modes run fastest first; a mode that would not finish in
what is left of `--time-budget` (judged from the previous one) is skipped and listed. With
`--json` writes schema flux2-int8-offload/1 (`scripts/bench_gpu.sh proof`, section offload).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
from torch import nn

from flux2_int8.bench.random_weights import qwen3_config_for, random_text_encoder, random_transformer, random_vae
from flux2_int8.bench.report import environment
from flux2_int8.generate.placement import place
from flux2_int8.outputs import write_text_atomic
from flux2_int8.variants import KLEIN_SCHEDULER_CONFIG, get_variant

SCHEMA = "flux2-int8-offload/1"
MODES = ("none", "model", "group", "sequential")
CUT_DEPTH = 27  # the pipeline reads hidden states up to layer 27 (planning.text_encoder)


def build_pipeline(variant: str, device: torch.device) -> tuple[Flux2KleinPipeline, Any]:
    """Random components made on `device` (fast), then moved to the CPU, where offload starts from."""
    from transformers import AutoTokenizer

    from flux2_int8.tiny import TINY_TEXT_ENCODER_CONFIG, TINY_TRANSFORMER_CONFIG, tiny_pipeline_cache
    from transformers import Qwen3Config

    if variant == "tiny":
        transformer_config: Any = dict(TINY_TRANSFORMER_CONFIG)
        encoder_config = Qwen3Config(**TINY_TEXT_ENCODER_CONFIG)
        vae_config: dict[str, Any] | None = json.loads((tiny_pipeline_cache() / "vae" / "config.json").read_text())
        vae_config = {k: v for k, v in vae_config.items() if not k.startswith("_")}
    else:
        transformer_config = get_variant(variant).architecture
        encoder_config = qwen3_config_for(transformer_config)
        vae_config = None
    encoder_config.num_hidden_layers = CUT_DEPTH
    encoder_config.layer_types = encoder_config.layer_types[:CUT_DEPTH]
    encoder = random_text_encoder(encoder_config, device).model  # headless, as load_pipeline cuts it
    encoder.norm = nn.Identity()
    components = {
        "transformer": random_transformer(transformer_config, "int8", device),
        "text_encoder": encoder,
        "vae": random_vae(device, config=vae_config),
        "scheduler": FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER_CONFIG),
        "tokenizer": AutoTokenizer.from_pretrained(tiny_pipeline_cache() / "tokenizer"),
    }
    pipe = Flux2KleinPipeline(**components, is_distilled=True)
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe, transformer_config


def planned_peaks(variant: str, resolution: int) -> dict[str, int]:
    """The plan's peaks for the same shapes, from header-only files."""
    if variant == "tiny":
        return {}
    from flux2_int8 import plan_memory
    from flux2_int8.bench.header_only import write_header_only_int8_transformer, write_header_only_pipeline

    with tempfile.TemporaryDirectory() as folder:
        pipeline = write_header_only_pipeline(Path(folder) / "pipeline", variant)
        int8 = write_header_only_int8_transformer(Path(folder) / "int8.safetensors", variant)
        return dict(plan_memory(pipeline, int8, "bf16", resolution).peaks)


def remove_offload_hooks(pipe: Flux2KleinPipeline) -> None:
    """Undo model / sequential (accelerate hooks) and group offload (diffusers hooks), weights back on the CPU."""
    from diffusers.hooks import HookRegistry

    pipe.remove_all_hooks()
    for component in (pipe.transformer, pipe.text_encoder, pipe.vae):
        registry = HookRegistry.check_if_exists_or_initialize(component)
        for name in ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading"):
            registry.remove_hook(name, recurse=True)
        component.to("cpu")


def run_mode(pipe: Flux2KleinPipeline, mode: str, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    place(pipe, device, mode)
    kwargs = dict(prompt="A red cube on a blue table", height=args.resolution, width=args.resolution, num_inference_steps=args.steps, guidance_scale=1.0, output_type="pil")
    pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0))  # warm-up: first-call allocation, stream set-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"mode": mode, "seconds_per_image": seconds, "peak_allocated_bytes": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="klein-9b", help="klein-4b, klein-9b or tiny (default klein-9b)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--time-budget", type=float, default=150.0, help="seconds for the whole run, building included (default 150)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    pipe, _ = build_pipeline(args.variant, device)
    plan = planned_peaks(args.variant, args.resolution)
    results, skipped, last = [], [], 0.0
    for mode in args.modes.split(","):
        left = args.time_budget - (time.perf_counter() - started)
        if device.type != "cuda" and mode in ("model", "sequential"):
            skipped.append({"mode": mode, "why": "needs CUDA"})
            continue
        if left < 2.5 * last:
            skipped.append({"mode": mode, "why": f"{left:.0f} s left, the previous mode took {last:.0f} s"})
            continue
        mode_start = time.perf_counter()
        try:
            result = run_mode(pipe, mode, device, args)
        except (RuntimeError, ValueError) as error:  # an out-of-memory or a diffusers refusal: recorded, the rest still run
            result = {"mode": mode, "error": str(error).splitlines()[0][:300]}
        result["planned_peak_bytes"] = plan.get(mode)
        results.append(result)
        print(json.dumps(result), flush=True)
        last = time.perf_counter() - mode_start
        remove_offload_hooks(pipe)
    report = {"schema": SCHEMA, "variant": args.variant, "resolution": args.resolution, "steps": args.steps, "results": results, "skipped": skipped, "environment": environment(device)}
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
