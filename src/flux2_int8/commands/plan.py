"""`flux2-int8 plan`: what a klein pipeline will hold on the GPU, and which placement fits, from headers alone.

Reads safetensors headers (local files, or the hub by range requests) and configs;
imports no torch, downloads no weights.
"""

from __future__ import annotations

import argparse

from .. import limits
from .options import BUILT_IN_BASES, DTYPES, add_base, add_run_flags, add_size, in_range, print_json, resolve_size

TEXT_ENCODER_HELP = "bf16 (the base's, default), int8 (the base's, quantized at load) or an INT8 text encoder file; always cut to the layers the pipeline reads"


def run(args: argparse.Namespace) -> None:
    from ..planning import format_plan, parse_memory, plan_memory

    width, height = resolve_size(args)
    memory = parse_memory(args.gpu_memory) if args.gpu_memory is not None else None  # a bad size fails before any header is read
    base, native, tokens = _base(args.base)
    plan = plan_memory(base, args.transformer, args.text_encoder, (height or width or native, width or height or native), args.batch, memory, args.dtype, tokens, token=None)
    if args.json:
        print_json(plan.to_dict())
    elif not args.quiet:
        print(format_plan(plan))


def _base(spec: str) -> tuple[str, int, int]:
    """(base for the planner, native side, prompt tokens): a built-in name becomes its folder (built on first use)."""
    if spec.strip().lower() not in BUILT_IN_BASES:
        return spec, 1024, 512
    from ..generate.hub import BUILT_IN_BASES as FOLDERS
    from ..nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE

    folder = FOLDERS[spec.strip().lower()]()
    return (str(folder), NANO_SIZE, NANO_MAX_SEQUENCE_LENGTH) if spec.strip().lower() == "nano" else (str(folder), 1024, 512)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plan", help="plan GPU memory from headers: each component's bytes, activation peaks, which placement fits", description=__doc__)
    add_base(parser)
    parser.add_argument("--transformer", help="the transformer checkpoint to load: a local file or folder, or a hub file owner/repo/file.safetensors (its header by range requests; default: the base's own)")
    parser.add_argument("--text-encoder", default="bf16", help=TEXT_ENCODER_HELP)
    add_size(parser, "1024; nano 128")
    parser.add_argument("--batch", type=in_range(limits.BATCH), default=1, help="images per pipeline call (default 1)")
    parser.add_argument("--gpu-memory", metavar="SIZE", help="the card's memory, e.g. 24GB, 16GB, 12GB (GB = GiB, as cards are sold): say which placement to use")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="compute dtype of activations and float layers (default bfloat16)")
    add_run_flags(parser, local_files=False, threads=False)
    parser.set_defaults(run=run)
