"""`flux2-int8 fetch-weights DIR`: download the metric networks' weights into one folder, on a machine with internet.

Copy DIR to an offline machine and pass `flux2-int8 eval --metrics-weights DIR`.
"""

from __future__ import annotations

import argparse
import shutil

from ..errors import Flux2Int8Error
from ..outputs import add_overwrite_flag
from .options import add_run_flags, print_json, silence_loading_bars


def run(args: argparse.Namespace) -> None:
    from ..evaluate.weights import METRIC_LABELS, WeightsLocation, parse_metrics, resolve_available
    from ..outputs import claim_folder, mark_folder

    metrics = parse_metrics(args.metrics) - {"psnr", "fidelity", "accuracy"}
    folder = claim_folder(args.dir, overwrite=args.overwrite, option="fetch-weights")
    created = not folder.exists()
    if args.quiet or args.json:
        silence_loading_bars()
    try:
        resolved, problems = resolve_available(metrics, WeightsLocation(mark_folder(folder)), args.clip_model, args.lpips_net, download=True)
        if problems:
            listed = "; ".join(f"{METRIC_LABELS[metric]} {problem}" for metric, problem in problems.items())
            left = f"{folder} was removed" if created else f"{folder} keeps what it held"
            raise Flux2Int8Error(f"could not download the metric weights ({listed}). Is this machine online? The hub (huggingface.co) and download.pytorch.org must be reachable; {left}")
    except BaseException:
        if created:  # nothing of a failed fetch is left behind in a folder it made
            shutil.rmtree(folder, ignore_errors=True)
        raise
    location = WeightsLocation(folder)
    found = {label: str(path) for label, path in (("CLIP", resolved.clip), ("LPIPS backbone", resolved.lpips), ("InceptionV3", resolved.inception)) if path is not None}
    if args.json:
        print_json({"folder": str(location.root), "weights": found})
        return
    if not args.quiet:
        for label, path in found.items():
            print(f"{label}: {path}")
        print(f"use with: flux2-int8 eval --metrics-weights {location.root} ...")


def register(commands: argparse._SubParsersAction) -> None:
    from ..evaluate.weights import DEFAULT_CLIP_MODEL, DEFAULT_LPIPS_NET, LPIPS_BACKBONES

    parser = commands.add_parser("fetch-weights", help="download the CLIP, LPIPS and Inception weights that `eval` needs into DIR")
    parser.add_argument("dir", help="the weights folder (created)")
    parser.add_argument("--metrics", default="clip,lpips,fid", help="which metrics' weights (default clip,lpips,fid; kid uses fid's)")
    parser.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL, help=f"CLIP hub repository (default {DEFAULT_CLIP_MODEL})")
    parser.add_argument("--lpips-net", choices=tuple(LPIPS_BACKBONES), default=DEFAULT_LPIPS_NET, help=f"LPIPS backbone (default {DEFAULT_LPIPS_NET})")
    add_run_flags(parser, local_files=False, threads=False)
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
