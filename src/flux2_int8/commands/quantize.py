"""`flux2-int8 quantize --base B --out O`: calibrate a BF16 pipeline and write its INT8 W8A8 checkpoint."""

from __future__ import annotations

import argparse
import json

from .. import limits
from ..errors import ConfigError
from ..outputs import add_overwrite_flag
from .options import ACTIVATIONS, DTYPES, SEED, STEPS, add_base, in_range, add_device, add_run_flags, add_size, apply_threads, device_or_default, resolve_size, silence_loading_bars
from . import ray_options


def run(args: argparse.Namespace) -> None:
    _check(args)  # every option, before torch and diffusers are imported
    import torch

    from ..quantization import quantize

    if args.quiet:
        silence_loading_bars()
    apply_threads(args, args.base)
    ray_cluster = ray_options.connect(args)
    result = quantize(
        args.base,
        args.out,
        transformer=args.transformer,
        samples=args.samples,
        steps=args.steps,
        resolution=args.width,  # None: the model's native size (nano 128, else 1024)
        seed=args.seed,
        prompts=args.prompts,
        calibration=args.calibration,
        smoothquant=args.smoothquant,
        quantize_modulation=args.quantize_modulation,
        keep=args.keep,
        text_encoder=args.text_encoder,
        format=args.format,
        device=device_or_default(args.device) if ray_cluster is None else "cpu",  # with --ray: the workers calibrate, this copy only exports
        dtype=getattr(torch, args.dtype),
        offload=args.offload if ray_cluster is None else "none",
        progress=not args.quiet,
        overwrite=args.overwrite,
        activations=args.activations,
        rotation=args.rotation,
        local_files_only=args.local_files_only,
        calibrator=ray_options.calibrator(ray_cluster, args),
    )
    statistics = result.statistics
    if args.json:
        summary = {"path": str(result.path), "text_encoder_path": str(result.text_encoder_path) if result.text_encoder_path else None, "kept": list(result.kept), "statistics": statistics.to_dict()}
        print(json.dumps(summary, indent=2))
        return
    if args.quiet:
        return
    print(f"wrote {result.path}: {len(result.quantized)} linears int8, {len(result.kept)} kept in float")
    if result.text_encoder_path:
        print(f"wrote {result.text_encoder_path}: {len(statistics.text_encoder_input_range)} text encoder linears int8")
    if not statistics.samples:
        print("activations dynamic: no input_scale written, so no calibration run (activations are scaled per token at run time)")
        return
    print(
        f"calibrated on {len(statistics.samples)} samples, {statistics.steps} of {statistics.total_steps} steps, "
        f"{statistics.transformer_calls} transformer calls, {statistics.reference_images} reference images, {statistics.seconds:.1f} s"
    )


def _rotation_spec(text: str) -> str:
    """`--rotation` checked at parse time, before torch is imported (the API checks it again)."""
    kind, _, group = text.strip().lower().partition(":")
    if text.strip().lower() in ("off", "convrot") or (kind == "convrot" and group.isdigit() and int(group) >= 2 and not int(group) & (int(group) - 1)):
        return text
    raise argparse.ArgumentTypeError(f"'{text}': expected off, convrot (group size 256) or convrot:G with G a power of 2, e.g. convrot:64")


def _check(args: argparse.Namespace) -> None:
    """Every option that needs no model and no torch (sizes, prompts, recipe, output paths)."""
    from ..quantization.plan import plan_run

    width, height = resolve_size(args)
    if width != height:
        raise ConfigError(f"--width {width} --height {height}: calibration runs square images; give one size (--resolution N)")
    args.width = width
    plan_run(args.base, args.out, args.transformer, width, args.prompts, args.calibration, args.smoothquant, args.quantize_modulation, args.keep, args.text_encoder, args.format, args.seed, args.activations, args.overwrite, args.rotation)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("quantize", help="calibrate a BF16 klein pipeline and write an INT8 W8A8 checkpoint", description=__doc__)
    add_base(parser)
    parser.add_argument("--out", required=True, help="output .safetensors file (or folder with --format diffusers)")
    parser.add_argument("--transformer", help="a BF16 transformer checkpoint (e.g. a fine-tune, BFL single file) replacing the base's")
    parser.add_argument("--samples", type=in_range(limits.SAMPLES), default=256, help="calibration samples drawn from the prompt set (default 256)")
    parser.add_argument("--steps", type=STEPS, help="denoising steps visited per sample (default all: 4 distilled, 50 base)")
    add_size(parser, "1024; nano 128; square: width and height must agree")
    parser.add_argument("--seed", type=SEED, default=0, help="draws the samples and seeds their noise (default 0)")
    parser.add_argument("--prompts", help="JSONL prompt set, or nano (default: the shipped 768 prompts; nano's training prompts for --base nano); see docs/quantize.md")
    parser.add_argument("--calibration", help="activation range: auto (default: percentile:99.99 for the transformer's static scales; max with --smoothquant, --rotation and for the text encoder), max, or percentile:P; not with --activations dynamic, which calibrates nothing")
    parser.add_argument("--smoothquant", type=in_range(limits.SMOOTHQUANT_ALPHA), metavar="ALPHA", help="experimental: SmoothQuant folded into the weights, alpha in (0, 1]")
    parser.add_argument("--quantize-modulation", action=argparse.BooleanOptionalAction, default=False, help="also quantize the modulation linears (default: keep them BF16)")
    parser.add_argument("--keep", action="append", default=[], metavar="PATTERN", help="keep matching linears in BF16 (fnmatch, diffusers or BFL names; repeatable)")
    parser.add_argument("--text-encoder", action="store_true", help="also quantize the Qwen3 text encoder, written to <out stem>-text-encoder.safetensors")
    parser.add_argument("--activations", choices=ACTIVATIONS, default="auto", help="auto or static: calibrate and write each linear's input_scale, which auto then loads (default auto); dynamic: write none, activations are quantized per token at run time (no calibration run unless --smoothquant or --text-encoder)")
    parser.add_argument("--rotation", type=_rotation_spec, default="off", metavar="off|convrot|convrot:G", help="ConvRot: rotate each linear's weights (and at run time its input) by a group-wise Hadamard matrix of G = 256 (convrot) or G (a power of 2); layers whose input width G does not divide stay plain (default off)")
    parser.add_argument("--format", choices=("bfl", "comfy", "diffusers"), default="bfl", help="bfl: one file with official key names (default); comfy: the same with ComfyUI's INT8 markers (loads in ComfyUI); diffusers: a transformer folder")
    add_device(parser)
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="calibration compute dtype (default bfloat16)")
    parser.add_argument("--offload", choices=("none", "model"), default="none", help="model: diffusers' CPU offload, for GPUs too small for the whole pipeline")
    add_overwrite_flag(parser)
    add_run_flags(parser)
    ray_options.add_arguments(parser)
    parser.set_defaults(run=run)
