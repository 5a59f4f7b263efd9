"""`flux2-int8 make-tiny DIR`: write the tiny random-weight klein pipeline."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> None:
    from ..tiny import make_tiny_pipeline

    folder = make_tiny_pipeline(args.directory, seed=args.seed, distilled=not args.base)
    print(f"wrote a tiny random-weight klein pipeline to {folder}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("make-tiny", help="write a tiny random-weight klein pipeline (for tests and demos)")
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", action="store_true", help="an undistilled (base, CFG) pipeline instead of a distilled one")
    parser.set_defaults(run=run)
