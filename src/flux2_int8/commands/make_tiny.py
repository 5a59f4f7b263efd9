"""`flux2-int8 make-tiny DIR`: write the tiny random-weight klein pipeline."""

from __future__ import annotations

import argparse

from ..outputs import add_overwrite_flag
from .options import SEED, DeprecatedAlias, add_run_flags, print_json

# tiny.pipeline.MARKER_FILE, spelled here so the folder is checked before torch is imported (a test keeps them equal).
TINY_MARKER_FILE = "tiny.json"


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..outputs import claim_folder, staged_folder

    folder = claim_folder(args.directory, overwrite=args.overwrite, option="make-tiny", owned=lambda f: (f / TINY_MARKER_FILE).is_file())
    from ..tiny import make_tiny_pipeline
    with staged_folder(folder) as staging:  # built aside, so a failure or Ctrl-C leaves DIR as it was
        make_tiny_pipeline(staging, seed=args.seed, distilled=not args.undistilled)
    if args.json:
        print_json({"folder": str(Path(folder)), "seed": args.seed, "distilled": not args.undistilled})
    elif not args.quiet:
        print(f"wrote a tiny random-weight klein pipeline to {Path(folder)}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("make-tiny", help="write a tiny random-weight klein pipeline (for tests and demos)")
    parser.add_argument("directory")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--undistilled", action="store_true", help="an undistilled (base, CFG) pipeline instead of a distilled one")
    parser.add_argument("--base", dest="undistilled", nargs=0, action=DeprecatedAlias, new="--undistilled")
    add_run_flags(parser, local_files=False, threads=False)
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
