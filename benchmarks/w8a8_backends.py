"""Every INT8 backend against BF16 `F.linear` on every klein linear shape, checked then timed, in one run.

    python benchmarks/w8a8_backends.py [--tokens 4608] [--repeats 100] [--json results.json]
    TRITON_INTERPRET=1 python benchmarks/w8a8_backends.py --device cpu --tiny   # smoke test, no GPU

For each distinct (K, N) of klein 4B and 9B at M = tokens (4608 = 1024x1024 image + 512
text tokens), each variant is first checked on fresh random inputs against a float64
reference (relative error; NaN fails), then timed (median of CUDA-event timings,
rotating among input buffers larger than L2 together). Variants:

    bf16           F.linear on BF16, the baseline (cuBLAS)
    int_mm         Int8Linear "int_mm", compiled: Inductor's quantize, torch._int_mm, rescale
    triton         Int8Linear "triton", eager: the fused kernel quantizing x in its load
    triton_int8_x  the fused kernel on an already-int8 x: what "triton_prequant" costs once
                   Inductor has fused the quantization into the producing op

Printed: time, TOPS, speedup over bf16 (target >= 1.7 at M = 4608), and the floor of each
shape (the larger of operations / INT8 peak and bytes / bandwidth, given with --peak-tops
and --bandwidth). Speed targets live here, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from flux2_int8.bench.microbench import klein_linear_shapes
from flux2_int8.int8 import Int8Linear, quantize_activation
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.variants import KLEIN_4B, KLEIN_9B

_ROTATING_INPUTS = 3
# Against float64 math of the same operands: BF16 output rounding is ~1e-3; a wrong or unwritten tile is far more.
_MAX_ERROR = {"bf16": 4e-3, "int_mm": 4e-3, "triton": 4e-3, "triton_int8_x": 4e-3}
# The interpreter cannot autotune: a fixed small tile on CPU.
_CPU_TILE = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4}


def make_layer(k: int, n: int, device: str, generator: torch.Generator) -> tuple[torch.Tensor, Int8Linear]:
    """A random BF16 weight [N, K] and its per-channel INT8 quantization (input_scale for N(0, 1) inputs)."""
    weight = torch.randn(n, k, device=device, generator=generator) / k**0.5
    layer = Int8Linear(k, n, device=device)
    layer.weight_scale.copy_(weight.abs().amax(dim=1) / 127)
    layer.weight.data = torch.round(weight / layer.weight_scale[:, None]).clamp(-127, 127).to(torch.int8)
    layer.input_scale.fill_(4.5 / 127)
    return weight.to(torch.bfloat16), layer


def float64_int8_math(x: torch.Tensor, layer: Int8Linear) -> torch.Tensor:
    """The W8A8 result in float64, before any rounding to the output dtype."""
    dequantized_x = quantize_activation(x, layer.input_scale).double() * layer.input_scale.double()
    return dequantized_x @ (layer.weight.double() * layer.weight_scale.double()[:, None]).t()


def variants(weight: torch.Tensor, layer: Int8Linear) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    from flux2_int8.int8.triton_w8a8 import launch_w8a8

    int_mm = Int8Linear(layer.in_features, layer.out_features, device=weight.device)
    int_mm.load_state_dict(layer.state_dict())
    int_mm.backend = "int_mm"
    triton_layer = Int8Linear(layer.in_features, layer.out_features, device=weight.device)
    triton_layer.load_state_dict(layer.state_dict())
    triton_layer.backend = "triton"
    scales = (layer.weight, layer.weight_scale, layer.input_scale, None, torch.bfloat16)
    found = {
        "bf16": lambda x: F.linear(x, weight),
        "triton": triton_layer,
        "triton_int8_x": lambda q: launch_w8a8(q, *scales, config=None if weight.is_cuda else _CPU_TILE),
    }
    if weight.is_cuda:  # torch._int_mm: CUDA only, M > 16
        torch._dynamo.reset()  # one compile per shape would otherwise hit Dynamo's recompile limit
        found["int_mm"] = torch.compile(int_mm, fullgraph=True, dynamic=False)
    return found


def time_median(function: Callable[[torch.Tensor], torch.Tensor], inputs: list[torch.Tensor], repeats: int) -> float:
    """Median seconds per call, cycling through `inputs` (CUDA events on GPU, perf_counter on CPU)."""
    for x in inputs:
        function(x)  # warm-up: compilation, autotuning
    samples = []
    for index in range(repeats):
        x = inputs[index % len(inputs)]
        if x.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            function(x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            began = time.perf_counter()
            function(x)
            samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def measure_shape(k: int, n: int, tokens: int, device: str, repeats: int, seed: int) -> dict[str, dict[str, float]]:
    generator = torch.Generator(device=device).manual_seed(seed)
    weight, layer = make_layer(k, n, device, generator)
    inputs = [torch.randn(tokens, k, device=device, generator=generator).to(torch.bfloat16) for _ in range(_ROTATING_INPUTS)]
    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for name, function in variants(weight, layer).items():
            wants_int8 = name == "triton_int8_x"
            feed = [quantize_activation(x, layer.input_scale) for x in inputs] if wants_int8 else inputs
            check = torch.randn(tokens, k, device=device, generator=generator).to(torch.bfloat16)  # fresh: never timed
            got = function(quantize_activation(check, layer.input_scale) if wants_int8 else check)
            expected = check.double() @ weight.double().t() if name == "bf16" else float64_int8_math(check, layer)
            error = relative_error(got, expected)
            if not error <= _MAX_ERROR[name]:  # also catches NaN
                raise SystemExit(f"{name} K={k} N={n}: relative error {error:.3g} over {_MAX_ERROR[name]}")
            results[name] = {"seconds": time_median(function, feed, repeats), "relative_error": error}
    return results


def print_table(rows: list[dict], peak_tops: float, bandwidth: float) -> None:
    names = [name for name in ("bf16", "int_mm", "triton", "triton_int8_x") if name in rows[0]["results"]]
    print("| K | N | M | floor us | " + " | ".join(f"{name} us (TOPS, x bf16)" for name in names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for row in rows:
        k, n, m = row["k"], row["n"], row["tokens"]
        operations = 2 * m * n * k
        floor = max(operations / (peak_tops * 1e12), (m * k * 2 + n * k + m * n * 2) / (bandwidth * 1e12))
        cells = []
        for name in names:
            seconds = row["results"][name]["seconds"]
            cells.append(f"{seconds * 1e6:.0f} ({operations / seconds / 1e12:.0f}, {row['results']['bf16']['seconds'] / seconds:.2f}x)")
        print(f"| {k} | {n} | {m} | {floor * 1e6:.0f} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4608, help="M: image + text tokens (default 4608, 1024x1024)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model's shapes (smoke test)")
    parser.add_argument("--peak-tops", type=float, default=1978.9, help="dense INT8 peak, for the floor (H100 SXM)")
    parser.add_argument("--bandwidth", type=float, default=3.0, help="device memory TB/s measured by a copy (H100: ~3.0)")
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args()
    configs = {"tiny": dict(TINY_TRANSFORMER_CONFIG)} if args.tiny else {arch.name: arch.transformer_config() for arch in (KLEIN_4B, KLEIN_9B)}
    rows = []
    for index, shape in enumerate(klein_linear_shapes(configs)):
        results = measure_shape(shape.in_features, shape.out_features, args.tokens, args.device, args.repeats, seed=index)
        rows.append({"k": shape.in_features, "n": shape.out_features, "tokens": args.tokens, "layers": list(shape.layers), "results": results})
        print(f"K={shape.in_features} N={shape.out_features}: " + ", ".join(f"{name} {r['seconds'] * 1e6:.0f} us" for name, r in results.items()), flush=True)
    print_table(rows, args.peak_tops, args.bandwidth)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
