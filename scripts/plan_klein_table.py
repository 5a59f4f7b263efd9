"""The card table of docs/generate.md: `flux2-int8 plan` run on header-only klein 4B / 9B pipelines.

    python scripts/plan_klein_table.py [--resolutions 1024,1536]

Writes real-size pipelines whose files are headers only (no data: nothing is downloaded
or allocated) with an INT8 W8A8 transformer in the published layout, runs
`flux2-int8 plan --base DIR --transformer FILE --text-encoder bf16|int8 --resolution R
--gpu-memory G --json` for each row and card, and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from flux2_int8.bench.header_only import write_header_only_int8_transformer, write_header_only_pipeline

CARDS = ("24GB", "16GB", "12GB")
GIB = 1 << 30


def plan(folder: Path, transformer: Path, text_encoder: str, resolution: int, card: str) -> dict:
    command = [sys.executable, "-m", "flux2_int8.cli", "plan", "--base", str(folder), "--transformer", str(transformer), "--text-encoder", text_encoder, "--resolution", str(resolution), "--gpu-memory", card, "--json"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", default="1024,1536")
    args = parser.parse_args()
    print("| klein | text encoder | px | weights GiB | all on GPU | model | group | sequential | 24 GB | 16 GB | 12 GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for variant in ("klein-4b", "klein-9b"):
            folder = write_header_only_pipeline(Path(root) / variant, variant)
            transformer = write_header_only_int8_transformer(Path(root) / f"{variant}-int8.safetensors", variant)
            for text_encoder in ("bf16", "int8"):
                for resolution in (int(r) for r in args.resolutions.split(",")):
                    plans = [plan(folder, transformer, text_encoder, resolution, card) for card in CARDS]
                    peaks = plans[0]["peaks"]
                    cells = [f"{peaks[p] / GIB:.1f}" for p in ("none", "model", "group", "sequential")]
                    choices = [p["choice"] or "does not fit" for p in plans]
                    print(f"| {variant[6:].upper()} INT8 | {text_encoder.upper()} (cut) | {resolution} | {plans[0]['weight_bytes'] / GIB:.2f} | " + " | ".join(cells) + " | " + " | ".join(choices) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
