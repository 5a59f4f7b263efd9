"""A ConvRot-rotated Int8Linear against the plain INT8 layer, side by side in one run (CPU or CUDA).

    python benchmarks/convrot_linear.py [--m 1024 --k 3072 --n 3072 --groups 256,16 --repeats 7 --dtype bfloat16]
    python benchmarks/convrot_linear.py --device cuda --shapes klein-9b --m 4608 --repeats 20   # GPU proof section

Both layers quantize activations dynamically per token (as ConvRot files are run; `--activations
static` for a calibrated scale) on the backend `auto` picks; the rotated one first multiplies each
group of G input columns by the [G, G] Hadamard matrix (`int8.rotation.rotate`: one GEMM up to
G = 64, its Kronecker factors beyond; eager on a CPU, inside the one cached-block pass that
quantizes). Calls alternate (plain, G1, G2, plain,
...) so load on a shared machine hits all alike; prints each median, the ratio of medians
and the spread of the per-round ratios (target: rotated / plain <= 1.3 at M >= 512).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pathlib import Path

import torch

from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.backends import CPU_HAS_VNNI, pick_backend
from flux2_int8.int8.weights import quantize_weight, weight_scale_per_channel
from flux2_int8.outputs import write_text_atomic


def layer(k: int, n: int, group: int | None, activations: str = "dynamic") -> Int8Linear:
    weight = torch.randn(n, k, generator=torch.Generator().manual_seed(0)) * 0.02
    built = Int8Linear(k, n, activations=activations, rotation_group_size=group)  # type: ignore[arg-type]
    built.weight_scale.copy_(weight_scale_per_channel(weight))
    built.weight.data = quantize_weight(weight, built.weight_scale)
    if built.input_scale is not None:
        built.input_scale.fill_(4.0 / 127)  # x ~ N(0, 1): a 4-sigma static range
    return built


# The klein-9B block linears (K, N): attention proj, fused q/k/v, MLP in, MLP out, single blocks' linear1 / linear2.
KLEIN_9B_SHAPES = ((4096, 4096), (4096, 12288), (4096, 24576), (12288, 4096), (4096, 36864), (16384, 4096))


def time_layers(layers: dict[str, Int8Linear], x: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each layer, calls alternating (plain, G1, G2, plain, ...) after one warm-up each."""
    synchronize = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    samples: dict[str, list[float]] = {name: [] for name in layers}
    with torch.no_grad():
        for module in layers.values():
            module(x)
        for _ in range(repeats):
            for name, module in layers.items():
                synchronize()
                start = time.perf_counter()
                module(x)
                synchronize()
                samples[name].append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=1024)
    parser.add_argument("--k", type=int, default=3072)
    parser.add_argument("--n", type=int, default=3072)
    parser.add_argument("--shapes", choices=("one", "klein-9b"), default="one", help="one: --k/--n; klein-9b: its six block linear shapes")
    parser.add_argument("--groups", default="256,16", help="comma-separated ConvRot group sizes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--activations", default="dynamic", choices=("dynamic", "static"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args()

    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = KLEIN_9B_SHAPES if args.shapes == "klein-9b" else ((args.k, args.n),)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, M={args.m} {args.dtype}, VNNI: {CPU_HAS_VNNI}")
    rows = []
    for k, n in shapes:
        x = torch.randn(args.m, k, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
        groups = [int(g) for g in args.groups.split(",") if k % int(g) == 0]
        layers = {"plain": layer(k, n, None, args.activations).to(device)} | {f"convrot G={g}": layer(k, n, g, args.activations).to(device) for g in groups}
        samples = time_layers(layers, x, args.repeats)
        plain = statistics.median(samples["plain"])
        print(f"K={k} N={n} backend {pick_backend(device, k, n)}: plain INT8 ({args.activations}) {plain * 1e3:8.2f} ms")
        for name, values in samples.items():
            if name == "plain":
                continue
            ratios = sorted(v / p for v, p in zip(values, samples["plain"]))
            median = statistics.median(values)
            print(f"  {name + ':':<15} {median * 1e3:8.2f} ms  ratio {median / plain:.3f} (per-round ratios {ratios[0]:.3f}-{ratios[-1]:.3f}; target <= 1.3)")
            rows.append({"k": k, "n": n, "m": args.m, "case": name, "plain_ms": plain * 1e3, "rotated_ms": median * 1e3, "ratio": median / plain, "ratio_spread": [ratios[0], ratios[-1]]})
    if args.json:
        document = {"device": str(device), "dtype": args.dtype, "activations": args.activations, "torch": torch.__version__, "rows": rows}
        write_text_atomic(Path(args.json), json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
