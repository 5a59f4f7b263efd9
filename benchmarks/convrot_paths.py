"""What ConvRot's rotation costs on each INT8 path: rotated vs plain layer, side by side in one run.

    python benchmarks/convrot_paths.py --device cuda [--m 4608 --group 256 --rounds 15 --time-budget 60 --json convrot.json]
    python benchmarks/convrot_paths.py --device cpu --m 64 --shapes 256x256 --rounds 2       # the dry run

Per klein-9B block linear shape (K, N), dynamic activations (one scale per token, as ConvRot
files run), bf16 x [M, K], every path twice, plain and rotated (G = 256 by default):

- `int_mm eager`: `Int8Linear` on the `int_mm` backend; the rotated layer multiplies x by
  blockdiag(H_G) with a separate torch GEMM (`rotation.rotate`) before quantizing;
- `triton in-tile`: the op `flux2_int8::w8a8_linear` (the fused kernel) with dynamic scales;
  rotated, the scales come from `flux2_int8::rotated_row_scale` (x read once, rotated in
  registers) and the GEMM rotates each x tile in registers before quantizing it (`rotation=`);
- `triton prequant`: the same kernel on an int8 x quantized beforehand; rotated, by one pass
  (`flux2_int8::rotate_quantize`: read x, rotate and quantize in registers, write int8), so
  the rotation runs once per element instead of once per N tile;
- `int_mm compiled`: the `int_mm eager` layers under `torch.compile` (Inductor fuses the
  quantization, and what it can of the rotation, around the GEMMs).

Every path is checked against the rotated eager layer before it is timed (relative error of
the output; bf16 rounding is ~1e-3). Rounds alternate all paths, so load hits all alike; each
time is the median of the rounds with the min-max of the per-round ratios to plain `int_mm
eager`. Shapes run in order while `--time-budget` lasts (judged from the previous shape); the
JSON (schema flux2-int8-convrot/1) is rewritten after every shape, so a hard stop keeps what
finished. Off CUDA the Triton paths run the op's CPU emulation (the dry run checks the plumbing).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flux2_int8.bench.report import environment
from flux2_int8.bench.timing import time_calls
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.kernels import quantize_activation, row_scale
from flux2_int8.outputs import write_text_atomic

SCHEMA = "flux2-int8-convrot/1"
# klein-9B block linears (K, N), most frequent first: attention out / q, k, v; MLP in; MLP out;
# single blocks' linear1 and linear2; fused q/k/v.
KLEIN_9B_SHAPES = ((4096, 4096), (4096, 24576), (12288, 4096), (4096, 36864), (16384, 4096), (4096, 12288))
PATHS = ("int_mm eager", "triton in-tile", "triton prequant", "int_mm compiled")
CHECK_TOLERANCE = 1e-2  # relative error of a path's output against the rotated eager layer: bf16 output rounding is ~1e-3


def random_layer(k: int, n: int, group: int | None, device: torch.device, backend: str) -> Int8Linear:
    generator = torch.Generator().manual_seed(k + n)
    layer = Int8Linear(k, n, activations="dynamic", rotation_group_size=group).to(device)
    layer.weight.data = torch.randint(-127, 128, (n, k), generator=generator, dtype=torch.int8).to(device)
    layer.weight_scale.copy_(torch.rand(n, generator=generator) * 1e-3 + 1e-4)
    layer.backend = backend
    return layer


def triton_call(layer: Int8Linear, prequantize: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer's math through the Triton ops: x quantized (and rotated) in the GEMM's load, or by a pre-pass."""

    def call(x: torch.Tensor) -> torch.Tensor:
        from flux2_int8.int8 import triton_rotation, triton_w8a8  # needs triton: a failure is this path's error

        rotation = layer.rotation
        scales = row_scale(x) if rotation is None else triton_rotation.rotated_row_scale(x, rotation)
        if not prequantize:
            return triton_w8a8.w8a8_linear(x, layer.weight, layer.weight_scale, scales, None, x.dtype, rotation)
        quantized = quantize_activation(x, scales) if rotation is None else triton_w8a8.rotate_quantize(x, rotation, scales)
        return triton_w8a8.w8a8_linear(quantized, layer.weight, layer.weight_scale, scales, None, x.dtype)

    return call


def shape_paths(k: int, n: int, group: int, device: torch.device, with_compiled: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """'PATH, plain' and 'PATH, convrot' callables for one shape."""
    backend = "int_mm" if device.type == "cuda" else "auto"
    layers = {"plain": random_layer(k, n, None, device, backend), "convrot": random_layer(k, n, group, device, backend)}
    paths: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for kind, layer in layers.items():
        paths[f"int_mm eager, {kind}"] = layer
        paths[f"triton in-tile, {kind}"] = triton_call(layer, prequantize=False)
        paths[f"triton prequant, {kind}"] = triton_call(layer, prequantize=True)
    if with_compiled:
        torch._dynamo.reset()  # one compile per layer; the recompile limit must not fall back to eager
        for kind, layer in layers.items():
            paths[f"int_mm compiled, {kind}"] = torch.compile(layer, fullgraph=True)
    return paths


def measure_shape(k: int, n: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One shape: check every path, then time them in alternating rounds."""
    x = torch.randn(args.m, k, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=torch.bfloat16)
    paths = shape_paths(k, n, args.group, device, not args.no_compile)
    row: dict[str, Any] = {"k": k, "n": n, "m": args.m, "group": args.group, "paths": {}, "errors": {}}
    with torch.no_grad():
        reference = paths["int_mm eager, convrot"](x).float()
        plain_reference = paths["int_mm eager, plain"](x).float()
        for name, path in list(paths.items()):
            try:
                error = relative_error(path(x).float(), reference if name.endswith("convrot") else plain_reference)
            except Exception as failure:  # a path that cannot run here is reported, the others still timed
                row["errors"][name] = f"{type(failure).__name__}: {str(failure).splitlines()[0][:200]}"
                del paths[name]
                continue
            row["paths"][name] = {"check_relative_error": error}
            if not error < CHECK_TOLERANCE:
                row["errors"][name] = f"output differs from the rotated eager layer: relative error {error:.2e}"
                del paths[name]
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                samples[name].append(time_calls(lambda path=path: path(x), device, repeats=args.calls, warmup=0).median_s)
    baseline = samples.get("int_mm eager, plain")
    for name, values in samples.items():
        entry = row["paths"][name]
        entry["median_s"] = statistics.median(values)
        if baseline:
            ratios = sorted(v / b for v, b in zip(values, baseline))
            entry.update(ratio=statistics.median(ratios), ratio_min=ratios[0], ratio_max=ratios[-1])
    return row


def rotation_costs(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per path: geometric mean over the shapes of convrot time / plain time (the rotation's cost)."""
    costs: dict[str, float] = {}
    for path in PATHS:
        ratios = [row["paths"][f"{path}, convrot"]["median_s"] / row["paths"][f"{path}, plain"]["median_s"] for row in rows if f"{path}, convrot" in row["paths"] and f"{path}, plain" in row["paths"] and "median_s" in row["paths"][f"{path}, convrot"] and "median_s" in row["paths"][f"{path}, plain"]]
        if ratios:
            costs[path] = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return costs


def parse_shapes(text: str | None) -> tuple[tuple[int, int], ...]:
    if not text:
        return KLEIN_9B_SHAPES
    try:
        return tuple((int(k), int(n)) for k, n in (item.split("x") for item in text.split(",")))
    except ValueError:
        raise SystemExit(f"--shapes: expected KxN[,KxN...], e.g. 4096x4096, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--m", type=int, default=4608, help="tokens (rows of x); 4608 = 1024x1024 image + 512 text")
    parser.add_argument("--group", type=int, default=256, help="ConvRot group size G (default 256)")
    parser.add_argument("--shapes", help="KxN[,KxN...] (default: the klein-9B block linears)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    parser.add_argument("--calls", type=int, default=3, help="calls per path per round, their median taken (default 3)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled paths")
    parser.add_argument("--time-budget", type=float, default=60.0, help="seconds for the whole run (default 60)")
    parser.add_argument("--json", type=Path, help="write the figures here (rewritten after every shape)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    command = "python benchmarks/convrot_paths.py " + " ".join(sys.argv[1:] if argv is None else argv)
    document: dict[str, Any] = {"schema": SCHEMA, "command": command, "status": "interrupted", "settings": {"m": args.m, "group": args.group, "rounds": args.rounds, "dtype": "bfloat16"}, "rows": [], "skipped": [], "environment": environment(device)}
    last = 0.0
    for k, n in parse_shapes(args.shapes):
        left = args.time_budget - (time.perf_counter() - started)
        if left < 1.5 * last:
            document["skipped"].append({"what": f"K={k} N={n}", "why": f"{left:.0f} s left, the previous shape took {last:.0f} s"})
            continue
        shape_started = time.perf_counter()
        row = measure_shape(k, n, args, device)
        document["rows"].append(row)
        document["rotation_cost"] = rotation_costs(document["rows"])
        last = time.perf_counter() - shape_started
        print(json.dumps(row), flush=True)
        if args.json:
            write_text_atomic(args.json, json.dumps(document, indent=1))
    document["status"] = "complete" if not document["skipped"] else "interrupted"
    print("rotation cost (convrot / plain, geometric mean over shapes):", json.dumps(document.get("rotation_cost", {})), flush=True)
    if args.json:
        write_text_atomic(args.json, json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
