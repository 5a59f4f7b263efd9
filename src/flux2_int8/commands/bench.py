"""`flux2-int8 bench`: speed and memory of BF16 vs INT8 (vs FP8), eager vs compiled,
per INT8 backend and with or without fused q/k/v.

Writes `bench-<variant>.json` and `bench-<variant>.md` into --out and prints the
Markdown. See docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..outputs import add_overwrite_flag
from ..variants import VARIANTS

VARIANT_CHOICES = (*VARIANTS, "tiny")
_SWITCH = {"off": False, "on": True}
# Spelled out here so --help imports no torch; run() checks them against backends.BACKENDS.
INT8_BACKEND_NAMES = "auto, int_mm, emulated, reference, triton, triton_prequant"
# The tiny model runs on CPU in CI: at 1024x1024 its VAE decode alone takes seconds there.
DEFAULT_RESOLUTION, TINY_DEFAULT_RESOLUTION = 1024, 128


def _parse_list(value: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    from ..errors import ConfigError

    items = tuple(dict.fromkeys(item.strip().lower() for item in value.split(",") if item.strip()))
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise ConfigError(f"{option} '{value}': expected a comma-separated list of {', '.join(allowed)}")
    return items


def _command_line(args: argparse.Namespace) -> str:
    """The invocation with every option spelled out, so a report says exactly how to reproduce it."""
    words = ["flux2-int8", "bench", "--variant", args.variant, "--formats", args.formats, "--resolution", str(args.resolution)]
    words += ["--int8-backends", args.int8_backends, "--fuse-qkv", args.fuse_qkv]
    words += ["--batch", str(args.batch), "--compile", args.compile, "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--device", args.device]
    words += [] if args.steps is None else ["--steps", str(args.steps)]
    words += [flag for flag, on in (("--random-weights", args.random_weights), ("--full-pipeline", args.full_pipeline), ("--microbench", args.microbench), ("--microbench-only", args.microbench_only)) if on]
    words += [] if args.transformer is None else ["--transformer", args.transformer]
    return shlex.join([*words, "--out", args.out])


def _check_out(args: argparse.Namespace) -> Path:
    from ..outputs import claim_folder, input_files, mark_folder

    return mark_folder(claim_folder(args.out, input_files(args.transformer), args.overwrite))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> None:
    import diffusers
    import torch
    import transformers

    from ..bench import BenchSettings, build_document, environment, format_markdown, run_benchmark, write_report
    from ..bench.microbench import run_variant_microbench
    from ..bench.pipeline_bench import INT8_BACKENDS, check_settings
    from ..bench.random_weights import FORMATS

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.resolution is None:
        args.resolution = TINY_DEFAULT_RESOLUTION if args.variant == "tiny" else DEFAULT_RESOLUTION
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    settings = BenchSettings(
        variant=args.variant,
        formats=_parse_list(args.formats, FORMATS, "--formats"),
        compile_modes=tuple(_SWITCH[mode] for mode in _parse_list(args.compile, tuple(_SWITCH), "--compile")),
        int8_backends=_parse_list(args.int8_backends, INT8_BACKENDS, "--int8-backends"),
        fuse_qkv_modes=tuple(_SWITCH[mode] for mode in _parse_list(args.fuse_qkv, tuple(_SWITCH), "--fuse-qkv")),
        resolution=args.resolution,
        steps=args.steps,
        batch=args.batch,
        repeats=args.repeats,
        warmup=args.warmup,
        random_weights=args.random_weights,
        full_pipeline=args.full_pipeline,
        transformer_path=args.transformer,
        device=args.device,
    )
    check_settings(settings)
    out = _check_out(args)
    result = None if args.microbench_only else run_benchmark(settings, _progress)
    micro = run_variant_microbench(settings, _progress) if args.microbench or args.microbench_only else None
    document = build_document(result, micro, environment(settings.device), _command_line(args), settings.variant)
    json_path, md_path = write_report(out, document)
    print(format_markdown(document))
    print(f"wrote {json_path} and {md_path}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="measure speed and memory: BF16 vs INT8 (vs FP8), eager vs compiled")
    parser.add_argument("--variant", required=True, choices=VARIANT_CHOICES, help="klein model size, or 'tiny' (the cached tiny pipeline; CPU smoke test)")
    parser.add_argument("--random-weights", action="store_true", help="build the full-size transformer with random weights on the device (no download)")
    parser.add_argument("--full-pipeline", action="store_true", help="also build a random Qwen3 text encoder and VAE, and time whole images")
    parser.add_argument("--transformer", metavar="PATH", help="time this checkpoint (its own format) instead of random weights")
    parser.add_argument("--formats", default="bf16,int8", help="comma-separated: bf16, int8, fp8 (default: bf16,int8)")
    parser.add_argument("--resolution", type=int, default=None, help=f"image side in pixels, a multiple of 16 (default: {DEFAULT_RESOLUTION}; {TINY_DEFAULT_RESOLUTION} for tiny)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the variant's, 4 for distilled)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default: 1)")
    parser.add_argument("--int8-backends", default="auto", metavar="LIST", help=f"comma-separated Int8Linear backends; every int8 run is repeated per backend, one report row each: {INT8_BACKEND_NAMES} (default: auto)")
    parser.add_argument("--fuse-qkv", nargs="?", const="on", default="off", metavar="off|on|off,on", help="fuse each attention's q/k/v (bf16 and int8) into one GEMM before timing; the flag alone means on, off,on times both (default: off)")
    parser.add_argument("--compile", default="off,on", help="off, on, or off,on: eager and/or torch.compile(fullgraph=True) (default: off,on)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default: 1)")
    parser.add_argument("--microbench", action="store_true", help="also time Int8Linear vs BF16 nn.Linear on every klein linear shape")
    parser.add_argument("--microbench-only", action="store_true", help="run only the linear-layer microbenchmark")
    parser.add_argument("--device", default="auto", help="torch device, or auto: cuda if available, else cpu (default: auto)")
    parser.add_argument("--out", required=True, help="folder for bench-<variant>.json and bench-<variant>.md")
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
