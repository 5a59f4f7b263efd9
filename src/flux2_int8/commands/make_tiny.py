"""`flux2-int8 make-tiny DIR`: write the tiny random-weight klein pipeline."""

from __future__ import annotations

import argparse

from ..outputs import add_overwrite_flag


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..outputs import claim_folder, staged_folder
    from ..tiny import make_tiny_pipeline
    from ..tiny.pipeline import MARKER_FILE

    folder = claim_folder(args.directory, overwrite=args.overwrite, option="make-tiny", owned=lambda f: (f / MARKER_FILE).is_file())
    with staged_folder(folder) as staging:  # built aside, so a failure or Ctrl-C leaves DIR as it was
        make_tiny_pipeline(staging, seed=args.seed, distilled=not args.base)
    print(f"wrote a tiny random-weight klein pipeline to {Path(folder)}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("make-tiny", help="write a tiny random-weight klein pipeline (for tests and demos)")
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", action="store_true", help="an undistilled (base, CFG) pipeline instead of a distilled one")
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
