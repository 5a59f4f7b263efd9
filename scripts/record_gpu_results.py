#!/usr/bin/env python3
"""Render a GPU run's bench JSON files into the "Measured" section of docs/benchmarks.md.

    python3 scripts/record_gpu_results.py OUT_DIR [--doc docs/benchmarks.md] [--call "bash scripts/bench_gpu.sh proof"]

OUT_DIR is the folder `bash scripts/bench_gpu.sh proof` wrote (check.json, micro.json, 9b.json, ...,
and the convrot report inside log.txt), or the one `bash scripts/bench_gpu.sh offload` wrote
(offload.json). Only the text between the measured:begin and measured:end markers (proof) or
the offload:begin and offload:end markers (placements) changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="the folder of one bench_gpu.sh run")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="the document to update (default: docs/benchmarks.md)")
    parser.add_argument("--call", help="the device call that produced OUT_DIR, as the section should show it (default: bash scripts/bench_gpu.sh proof, or ... offload for placement reports)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))  # this checkout's package, installed or not
    from flux2_int8.bench.record import record_measured
    from flux2_int8.errors import Flux2Int8Error

    try:
        record_measured(args.doc, args.out_dir, args.call)
    except (Flux2Int8Error, OSError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(f"recorded {args.out_dir} into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
