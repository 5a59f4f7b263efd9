#!/usr/bin/env python
"""Average the transformers of nano runs resumed from one start (a model soup; see docs/nano.md).

    python scripts/average_nano.py --out nano-soup nano-run12 nano-run13

`--out` gets the first folder's pipeline with the element-wise mean of all the folders' transformers.
It follows the CLI's output rules (docs/reliability.md): never one of the inputs, never a folder
someone else filled unless --overwrite; mistakes, Ctrl-C and SIGTERM are one `Error:` line.
"""

from __future__ import annotations

import argparse
import sys

from flux2_int8.cli import UsageParser, run_guarded
from flux2_int8.outputs import add_overwrite_flag


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(prog="average_nano.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the averaged pipeline to")
    parser.add_argument("folders", nargs="+", help="pipeline folders scripts/train_nano.py wrote, all of one architecture")
    add_overwrite_flag(parser)
    args = parser.parse_args(argv)

    def average() -> None:
        from flux2_int8.nano.soup import average_transformers

        print(average_transformers(args.folders, args.out, overwrite=args.overwrite))

    return run_guarded(average)


if __name__ == "__main__":
    sys.exit(main())
