"""`flux2-int8 generate`: text-to-image, editing (one --image) and composition (several).

Every input is checked before the model loads; the model loads once for a whole
prompts file.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..outputs import add_overwrite_flag
from . import ray_options
from .options import ACTIVATIONS, ACTIVATIONS_HELP, DTYPES, GUIDANCE, NUM_IMAGES, SEED, STEPS, add_base, lora_spec, add_device, add_run_flags, add_size, apply_threads, device_or_default, print_json, resolve_size, silence_loading_bars

if TYPE_CHECKING:
    from ..generate.jobs import Job
    from ..generate.requests import Request

# `--compile` alone, the flag's old spelling (a switch for a whole-model compile).
BARE_COMPILE = "bare"


def _compile_choice(value: str) -> str:
    """The --compile value, `on` for the deprecated bare flag (with a note on stderr)."""
    if value != BARE_COMPILE:
        return value
    print("note: --compile without a value is deprecated: write --compile full (what it does) or --compile regional (compiles much faster)", file=sys.stderr)
    return "on"


def run(args: argparse.Namespace) -> None:
    jobs = _check(args)  # every input, before torch and diffusers are imported
    if args.quiet or args.json:
        silence_loading_bars()
    ray_cluster = ray_options.connect(args)
    if ray_cluster is not None:
        from ..generate import writing_images

        with writing_images(args.out):
            return ray_options.generate(ray_cluster, args, jobs)

    import torch

    from ..generate import load_pipeline, resolve_sampling, run_jobs, writing_images

    apply_threads(args, args.base)
    with _load_notes(args):  # the loader's notes for this load only (a process may run more commands, as tests do)
        pipeline = load_pipeline(
            args.base,
            transformer=args.transformer,
            text_encoder=args.text_encoder,
            device=device_or_default(args.device),
            dtype=getattr(torch, args.dtype),
            compile=args.compile,
            offload=args.offload,
            local_files_only=args.local_files_only,
            activations=args.activations,
            loras=args.lora,
            fuse_loras=args.fuse_lora,
            gpu_memory=args.gpu_memory,
            plan_resolution=max(args.width or 0, args.height or 0) or None,
            threads=args.threads,
        )
    if args.guidance is not None and pipeline.config.is_distilled and not args.quiet:
        print("note: this is a distilled model; it ignores --guidance", file=sys.stderr)
    steps, guidance = resolve_sampling(pipeline, args.steps, args.guidance)
    # Unsized, each request takes the pipeline's default: the model's native size (nano: 128)
    # for text-to-image, the first reference's size for an edit (see generate/builtin.py).
    with writing_images(args.out):
        done = run_jobs(pipeline, jobs, steps, guidance, args.width, args.height, base=str(args.base), checkpoint=args.transformer, text_encoder=args.text_encoder, progress=not (args.quiet or args.json), loras=args.lora, fused_loras=args.fuse_lora)
    total = sum(item.seconds for item in done)
    if args.json:
        print_json({"images": [{"path": str(item.job.path), "prompt": item.job.request.prompt, "seed": item.job.seed, "width": item.size[0], "height": item.size[1], "seconds": item.seconds} for item in done], "steps": steps, "guidance": guidance})
    elif not args.quiet:
        print(f"{len(done)} image(s) in {total:.2f} s, {total / len(done):.2f} s per image ({steps} steps)")


class _NotesHandler(logging.Handler):
    """The loader's notes as `note: ...` lines on whatever stderr is now (not the one at install time)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def _load_notes(args: argparse.Namespace) -> Iterator[None]:
    """Print the loader's notes (the text-encoder cut, the INT8 cache, what `--offload auto` chose) on stderr while loading."""
    logger = logging.getLogger("flux2_int8")
    if args.quiet or args.json:
        yield
        return
    handler, level = _NotesHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _check(args: argparse.Namespace) -> list[Job]:
    """Parse and check every input (sizes, prompts, reference images, outputs) without torch; the planned jobs."""
    from ..errors import Flux2Int8Error
    from ..generate.jobs import plan_jobs
    from ..generate.output import check_writable
    from ..generate.requests import Sampling, check_request, check_sampling
    from ..lora.spec import lora_paths
    from ..outputs import input_files

    args.compile = _compile_choice(args.compile)  # before any path reads it (local or --ray)
    args.width, args.height = resolve_size(args)
    if args.fuse_lora and not args.lora:
        raise Flux2Int8Error("--fuse-lora goes with --lora PATH (it merges the LoRAs given there); add a --lora or drop --fuse-lora")
    requests = _requests(args)
    check_sampling(Sampling(args.steps, args.guidance, args.width, args.height, args.num_images))
    for request in requests:
        check_request(request)
    _check_local_checkpoints(args)
    jobs = plan_jobs(requests, args.num_images, args.out)
    inputs = input_files(args.base, args.transformer, args.text_encoder, args.prompts, *lora_paths(args.lora), *(image for request in requests for image in request.images))
    check_writable(args.out, [job.path for job in jobs], inputs, args.overwrite)
    if args.lora and args.ray is not None:
        raise Flux2Int8Error("--lora does not go with --ray yet (the workers load the pipeline without it); run without --ray")
    return jobs


def _check_local_checkpoints(args: argparse.Namespace) -> None:
    """Validate the headers of local checkpoint files here, before the output is claimed: under
    `--ray` only the workers load them, and a bad file must not leave a claimed folder behind."""
    from ..formats.checkpoint import open_checkpoint
    from ..formats.header import read_header

    if args.transformer is not None and Path(args.transformer).expanduser().is_file():
        open_checkpoint(Path(args.transformer).expanduser())
    if args.text_encoder not in (None, "bf16", "int8") and Path(args.text_encoder).expanduser().is_file():
        read_header(Path(args.text_encoder).expanduser())


def _requests(args: argparse.Namespace) -> list[Request]:
    from ..generate.requests import Request, RequestError, read_prompts_file

    if args.prompts is None:
        return [Request(args.prompt, tuple(Path(p).expanduser() for p in args.image), args.seed)]
    if args.image:
        raise RequestError("--image goes with --prompt; in a prompts file give each line its images (JSONL: {\"prompt\": ..., \"images\": [...]})")
    return read_prompts_file(args.prompts, default_seed=args.seed)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="generate images: text-to-image, editing (one --image), composition (several)")
    add_base(parser)
    parser.add_argument("--transformer", help="INT8/BF16/FP8 transformer checkpoint: a path, or a hub file owner/repo/file.safetensors (default: the base's own BF16 transformer)")
    parser.add_argument("--text-encoder", help="bf16 (the base's, default), int8 (the base's, quantized at load time and cached), or an INT8 text encoder file from `flux2-int8 quantize --text-encoder` (path or hub file); always cut to the layers the pipeline reads")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the prompt")
    source.add_argument("--prompts", metavar="FILE", help="a batch: one prompt per line, or JSONL lines {\"prompt\", \"images\", \"seed\"}")
    parser.add_argument("--image", action="append", default=[], metavar="REF", help="a reference image (repeat for a composition, at most 4)")
    parser.add_argument("--steps", type=STEPS, help="denoising steps (default: 4 for distilled models, 50 for base models)")
    parser.add_argument("--guidance", type=GUIDANCE, help="CFG scale for base models (default 4.0); distilled models ignore it")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the first image; image k of a prompt uses seed + k (default 0)")
    add_size(parser, "the first reference's size, else the model's native size: 1024, nano 128")
    parser.add_argument("--num-images", type=NUM_IMAGES, default=1, help="images per prompt (default 1)")
    parser.add_argument("--out", default="outputs", help="a folder (created), or a .png path for a single image (default: outputs)")
    add_device(parser)
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="compute dtype of activations and float layers (default bfloat16)")
    parser.add_argument("--activations", choices=ACTIVATIONS, default="auto", help=ACTIVATIONS_HELP)
    parser.add_argument("--offload", choices=("none", "model", "group", "sequential", "auto"), default="none", help="diffusers CPU offload, CUDA only: model, group (block level, CUDA streams), sequential; auto: the fastest that fits the GPU by `flux2-int8 plan` (default none)")
    parser.add_argument("--gpu-memory", metavar="SIZE", help="with --offload auto: plan for this much GPU memory (e.g. 16GB) instead of the GPU's free memory")
    parser.add_argument(
        "--compile",
        nargs="?",
        const=BARE_COMPILE,
        default="off",
        metavar="off|full|regional|on",
        help="torch.compile the transformer: whole (full; also 'on'), or each repeated block once (regional, much faster to compile); the first image compiles (default off)",
    )
    parser.add_argument("--lora", type=lora_spec, action="append", default=[], metavar="PATH_OR_REPO[:SCALE]", help="a LoRA (diffusers/PEFT, kohya, ai-toolkit/BFL, LoKr): file, folder, hub repo or owner/repo/file.safetensors, optional :SCALE (default 1.0); repeat for several")
    parser.add_argument("--fuse-lora", action="store_true", help="merge the LoRAs into the weights (INT8: re-quantized per channel) for plain INT8 speed, instead of running them beside the INT8 layers")
    add_run_flags(parser)
    add_overwrite_flag(parser)
    ray_options.add_arguments(parser)
    parser.set_defaults(run=run)
