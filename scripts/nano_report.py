#!/usr/bin/env python
"""Measure nano's held-out accuracy and draw the figures of docs/nano.md.

    python scripts/nano_report.py --log nano-train.jsonl --out docs/nano

prints the BF16 accuracy over the 72 held-out prompts x 2 seeds and writes it to
accuracy.json, grid.png (held-out prompts, seed 0; a red frame marks a picture the
scorer failed) and loss.svg (the training loss curves from the training logs). INT8
accuracy comes from `flux2-int8 eval --base nano --metrics accuracy,...` (docs/nano.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from flux2_int8.generate import load_pipeline
from flux2_int8.nano.accuracy import Drawn, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for grid.png and loss.svg")
    parser.add_argument("--log", action="append", default=[], help="a training log (JSON lines) to draw loss.svg from; repeat for a run and its --resume runs, in order")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rates, drawn = measure(load_pipeline("nano", device="cpu"))
    print("bf16", json.dumps({key: round(value, 4) for key, value in rates.items()}), f"({len(drawn)} pictures)", flush=True)
    write_grid([item for item in drawn if item.seed == 0], out / "grid.png")
    (out / "accuracy.json").write_text(json.dumps({"bf16": rates, "pictures": len(drawn)}, indent=2) + "\n")
    if args.log:
        write_loss_svg([Path(log) for log in args.log], out / "loss.svg")
    return 0


def write_grid(drawn: list[Drawn], path: Path, columns: int = 12) -> None:
    """All pictures in a grid at native size; a red frame marks a missed background, colour or count."""
    size, pad = 128, 4
    rows = (len(drawn) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (size + pad) + pad, rows * (size + pad) + pad), (255, 255, 255))
    pen = ImageDraw.Draw(grid)
    for index, item in enumerate(drawn):
        left, top = pad + (index % columns) * (size + pad), pad + (index // columns) * (size + pad)
        grid.paste(Image.fromarray(item.image), (left, top))
        if not (item.hits["background"] and item.hits["colour"] and item.hits["count"]):
            pen.rectangle((left - 2, top - 2, left + size + 1, top + size + 1), outline=(255, 0, 0), width=2)
    grid.save(path)


def write_loss_svg(logs: list[Path], path: Path, width: int = 640, height: int = 240) -> None:
    """The VAE and transformer losses against step, log scale, as a small hand-written SVG.

    A resumed run counts its steps from 0 again; its points follow the previous log's last step.
    """
    panels = []
    for index, phase in enumerate(("vae", "transformer")):
        points: list[tuple[float, float]] = []
        for log in logs:
            offset = points[-1][0] if points else 0
            records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            points += [(offset + r["step"], r["loss"]) for r in records if r.get("phase") == phase]
        if not points:
            continue
        steps, losses = np.array(points, dtype=float).T
        decades = np.log10(losses)
        x0 = index * width / 2 + 40
        w, h = width / 2 - 60, height - 50
        xs = x0 + w * steps / steps.max()
        ys = 20 + h * (decades.max() - decades) / max(decades.max() - decades.min(), 1e-9)
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        panels.append(
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>'
            f'<rect x="{x0}" y="20" width="{w}" height="{h}" fill="none" stroke="#999"/>'
            f'<text x="{x0}" y="14" font-size="12">{phase} loss (log scale): {losses[0]:.3g} at step {int(steps[0])} to {losses[-1]:.3g} at step {int(steps[-1])}</text>'
            f'<text x="{x0}" y="{height - 12}" font-size="11">step (0 to {int(steps.max())})</text>'
        )
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">{"".join(panels)}</svg>\n')


if __name__ == "__main__":
    sys.exit(main())
