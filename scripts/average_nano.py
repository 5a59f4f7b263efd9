#!/usr/bin/env python
"""Average the transformers of nano runs resumed from one start (a model soup; see docs/nano.md).

    python scripts/average_nano.py --out nano-soup nano-run12 nano-run13

`--out` gets the first folder's pipeline with the element-wise mean of all the folders' transformers.
"""

from __future__ import annotations

import argparse
import sys

from flux2_int8.errors import Flux2Int8Error
from flux2_int8.nano.soup import average_transformers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the averaged pipeline to")
    parser.add_argument("folders", nargs="+", help="pipeline folders scripts/train_nano.py wrote, all of one architecture")
    args = parser.parse_args(argv)
    try:
        print(average_transformers(args.folders, args.out))
    except Flux2Int8Error as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
