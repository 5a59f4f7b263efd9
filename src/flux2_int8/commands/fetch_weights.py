"""`flux2-int8 fetch-weights DIR`: download the metric networks' weights into one folder, on a machine with internet.

Copy DIR to an offline machine and pass `flux2-int8 eval --metrics-weights DIR`.
"""

from __future__ import annotations

import argparse

from ..outputs import add_overwrite_flag
from .options import add_run_flags, print_json


def run(args: argparse.Namespace) -> None:
    from ..evaluate import WeightsLocation, parse_metrics, resolve_weights
    from ..outputs import claim_folder, mark_folder

    metrics = parse_metrics(args.metrics) - {"psnr", "fidelity"}
    location = WeightsLocation(mark_folder(claim_folder(args.dir, overwrite=args.overwrite, option="fetch-weights")))
    resolved = resolve_weights(metrics, location, args.clip_model, args.lpips_net, download=True)
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
