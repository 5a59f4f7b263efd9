"""`flux2-int8 eval`: generate a prompt suite with a reference and candidate transformers, score, report.

Every option is checked, and every metric weight fetched or found, before a model loads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import limits
from ..outputs import add_overwrite_flag
from . import ray_options
from .options import ACTIVATIONS, ACTIVATIONS_HELP, DTYPES, GUIDANCE, STEPS, add_base, in_range, lora_spec, add_device, add_run_flags, add_size, apply_threads, device_or_default, print_json, resolve_size, silence_loading_bars


def run(args: argparse.Namespace) -> None:
    suite, metrics, shard = _check(args)  # every option and input, before torch and diffusers are imported
    from pathlib import Path

    from ..evaluate import MetricOptions, RunSettings, WeightsLocation, evaluate
    from ..evaluate.runner import default_loader
    from ..evaluate.tables import console_summary

    if args.quiet or args.json:
        silence_loading_bars()
    apply_threads(args, args.base)
    weights = WeightsLocation(Path(args.metrics_weights).expanduser() if args.metrics_weights else None)
    options = MetricOptions(frozenset(metrics), weights, args.clip_model, args.lpips_net, required=args.metrics is not None)
    sampling = RunSettings(args.base, width=args.width, height=args.height, dtype=args.dtype, steps=args.steps, guidance=args.guidance, activations=args.activations, loras=list(args.lora))
    ray_cluster = ray_options.connect(args)
    result = evaluate(
        args.base,
        args.candidate,
        args.out,
        reference=args.reference,
        suite=suite,
        options=options,
        sampling=sampling,
        device=device_or_default(args.device),
        shard=shard,
        merge=args.merge,
        loader=default_loader(args.local_files_only, args.activations, args.compile),
        fan_out=ray_options.eval_fan_out(ray_cluster, progress=not (args.quiet or args.json)),
        command=command_line(args),
        overwrite=args.overwrite,
        progress=not (args.quiet or args.json),
    )
    if result.skipped and not args.json:
        print(f"note: skipped {', '.join(sorted(result.skipped))} (their weights are not available here; `flux2-int8 fetch-weights DIR` fetches them, or name --metrics to require them)", file=sys.stderr)
    if args.json:
        print_json({"skipped": sorted(result.skipped), "out": str(result.out), "reports": {kind: str(path) for kind, path in result.reports.items()}, "summary": None if result.document is None else result.document["summary"]})
        return
    if result.merged is not None:
        merged = result.merged
        print(f"merged: {merged.copied} file(s) copied, {merged.present} already present, {merged.conflicts} present with other bytes (kept)")
    if args.quiet:
        return
    if result.document is None:
        print(f"shard {args.shard}: images written to {result.out}; score with a run without --shard (after --merge of every shard's folder)")
        return
    print(console_summary(result.document))
    for kind, path in result.reports.items():
        print(f"{kind}: {path}")


def _check(args: argparse.Namespace) -> tuple[Any, set[str], Any]:
    """Sizes, metric names, shard, suite and every checkpoint header, without torch: (suite, metrics, shard)."""
    from ..evaluate.layout import check_checkpoints, parse_model_spec, parse_shard
    from ..evaluate.suite import DEFAULT_SUITE, NANO_SUITE, load_suite
    from ..evaluate.weights import METRICS, parse_metrics
    from ..generate.requests import Sampling, check_sampling
    from ..nano import NANO_SIZE, is_nano_base

    args.width, args.height = resolve_size(args)
    nano = is_nano_base(args.base)  # nano (and nano-outliers): its held-out prompts at its native 128 px
    native = NANO_SIZE if nano else 1024
    args.width, args.height = args.width or native, args.height or native
    check_sampling(Sampling(args.steps, args.guidance, args.width, args.height))
    metrics = parse_metrics(args.metrics if args.metrics is not None else ",".join(METRICS))
    shard = parse_shard(args.shard) if args.shard else parse_shard("0/1")
    suite = load_suite(args.suite or (NANO_SUITE if nano else DEFAULT_SUITE), limit=args.limit)
    check_checkpoints([parse_model_spec(spec) for spec in (*args.candidate, args.reference)])
    return suite, metrics, shard


def command_line(args: argparse.Namespace) -> str:
    """`flux2-int8 eval` with every option spelled out (defaults too), so the report says how to reproduce it."""
    import shlex

    words = ["flux2-int8", "eval"]
    for name, value in vars(args).items():
        option = "--" + name.replace("_", "-")
        if name in ("run", "command") or value is None or value is False:
            continue
        if value is True:
            words.append(option)
        elif isinstance(value, list):
            words += [part for item in value for part in (option, str(item))]
        else:
            words += [option, str(value)]
    return shlex.join(words)


def register(commands: argparse._SubParsersAction) -> None:
    from ..evaluate.weights import DEFAULT_CLIP_MODEL, DEFAULT_LPIPS_NET, LPIPS_BACKBONES

    parser = commands.add_parser("eval", help="compare transformers (INT8, FP8, BF16) on a prompt suite: CLIP, LPIPS, PSNR, FID/KID, velocity error")
    add_base(parser)
    parser.add_argument("--reference", default="bf16", help="bf16 (the base's own transformer, default), or NAME=PATH / PATH of a transformer checkpoint")
    parser.add_argument("--candidate", action="append", required=True, metavar="NAME=PATH", help="a transformer checkpoint to evaluate (repeat for several; PATH alone is named after its file)")
    parser.add_argument("--suite", help="default (the shipped 48 cases; the default), nano (nano's 72 held-out prompts x 2 seeds; the default with --base nano), a JSONL suite, or a PartiPrompts .tsv file")
    parser.add_argument("--limit", type=in_range(limits.CASE_LIMIT), help="only the first N cases of each task")
    parser.add_argument("--metrics", help="comma-separated: clip,lpips,psnr,fid,kid,fidelity,accuracy, or all (default: all whose weights are available here, the others skipped with a note; named metrics are required); psnr, fidelity and accuracy (nano prompts) need no weights")
    parser.add_argument("--out", required=True, help="the evaluation folder: images are cached there, reports written there")
    parser.add_argument("--steps", type=STEPS, help="denoising steps (default: 4 for distilled models, 50 for base models)")
    parser.add_argument("--guidance", type=GUIDANCE, help="CFG scale for base models (default 4.0); distilled models ignore it")
    add_size(parser, "1024 as published; nano 128")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="compute dtype (default bfloat16)")
    parser.add_argument("--activations", choices=ACTIVATIONS, default="auto", help=ACTIVATIONS_HELP)
    parser.add_argument("--compile", choices=("off", "full", "regional", "on"), default="off", help="torch.compile each model's transformer: whole (full, also 'on') or each repeated block (regional); images stay the same up to float rounding (default off)")
    add_device(parser)
    parser.add_argument("--shard", metavar="I/N", help="generate only every N-th case from the I-th (0-based); no scoring")
    parser.add_argument("--merge", action="append", default=[], metavar="DIR", help="copy the images of another evaluation folder (a shard's --out) into --out first; repeatable, idempotent")
    parser.add_argument("--metrics-weights", metavar="DIR", help="read metric weights only from DIR (made by `flux2-int8 fetch-weights DIR`); never download")
    parser.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL, help=f"CLIP hub repository or local folder (default {DEFAULT_CLIP_MODEL})")
    parser.add_argument("--lpips-net", choices=tuple(LPIPS_BACKBONES), default=DEFAULT_LPIPS_NET, help=f"LPIPS backbone (default {DEFAULT_LPIPS_NET}, the lpips package's default)")
    parser.add_argument("--lora", type=lora_spec, action="append", default=[], metavar="PATH_OR_REPO[:SCALE]", help="a LoRA applied (unfused) to the reference and every candidate alike; repeatable; recorded in the folder's run.json")
    add_run_flags(parser)
    add_overwrite_flag(parser)
    ray_options.add_arguments(parser)
    parser.set_defaults(run=run)
