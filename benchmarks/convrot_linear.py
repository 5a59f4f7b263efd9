"""CPU: a ConvRot-rotated Int8Linear against the plain INT8 layer, side by side in one run.

    python benchmarks/convrot_linear.py [--m 1024 --k 3072 --n 3072 --groups 256,16 --repeats 7 --dtype bfloat16]

Both layers quantize activations dynamically per token (as ConvRot files are run) on the
backend `auto` picks; the rotated one first multiplies each group of G input columns by the
[G, G] Hadamard matrix (one [M·K/G, G] x [G, G] GEMM). Calls alternate (plain, G1, G2, plain,
...) so load on a shared machine hits all alike; prints each median, the ratio of medians
and the spread of the per-round ratios (target: rotated / plain <= 1.3 at M >= 512).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.backends import CPU_HAS_VNNI, pick_backend
from flux2_int8.int8.weights import quantize_weight, weight_scale_per_channel


def layer(k: int, n: int, group: int | None) -> Int8Linear:
    weight = torch.randn(n, k, generator=torch.Generator().manual_seed(0)) * 0.02
    built = Int8Linear(k, n, activations="dynamic", rotation_group_size=group)
    built.weight_scale.copy_(weight_scale_per_channel(weight))
    built.weight.data = quantize_weight(weight, built.weight_scale)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=1024)
    parser.add_argument("--k", type=int, default=3072)
    parser.add_argument("--n", type=int, default=3072)
    parser.add_argument("--groups", default="256,16", help="comma-separated ConvRot group sizes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    x = torch.randn(args.m, args.k, generator=torch.Generator().manual_seed(1)).to(dtype)
    layers = {"plain": layer(args.k, args.n, None)} | {f"convrot G={g}": layer(args.k, args.n, int(g)) for g in args.groups.split(",")}
    samples: dict[str, list[float]] = {name: [] for name in layers}
    with torch.no_grad():
        for module in layers.values():
            module(x)  # warm-up
        for _ in range(args.repeats):
            for name, module in layers.items():
                start = time.perf_counter()
                module(x)
                samples[name].append(time.perf_counter() - start)
    plain = statistics.median(samples["plain"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, M={args.m} K={args.k} N={args.n} {args.dtype}, backend {pick_backend(x.device, args.k, args.n)}, VNNI: {CPU_HAS_VNNI}")
    print(f"plain INT8 (dynamic):   {plain * 1e3:8.1f} ms")
    for name, values in samples.items():
        if name == "plain":
            continue
        ratios = sorted(v / p for v, p in zip(values, samples["plain"]))
        print(f"{name + ':':<23} {statistics.median(values) * 1e3:8.1f} ms  ratio {statistics.median(values) / plain:.3f} (per-round ratios {ratios[0]:.3f}-{ratios[-1]:.3f}; target <= 1.3)")


if __name__ == "__main__":
    main()
