"""CPU: Int8Linear (exact integer math carried in float32) vs fp32 `F.linear`, side by side.

    python benchmarks/cpu_int8_linear.py [--m 4096 --k 3072 --n 3072 --repeats 5]

Prints the median time of each and their ratio (target: Int8Linear <= 1.2x fp32).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from flux2_int8.int8 import Int8Linear


def interleaved_medians(functions: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in alternation so that load from other
    processes on the machine hits both sides alike (the ratio is what we report)."""
    for function in functions.values():
        function()  # warm-up: first-call allocation and thread start-up
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4096)
    parser.add_argument("--k", type=int, default=3072)
    parser.add_argument("--n", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.m, args.k)
    weight = torch.randn(args.n, args.k) * 0.02
    layer = Int8Linear(args.k, args.n)
    layer.weight_scale.copy_(weight.abs().amax(dim=1) / 127)
    layer.weight.data = torch.round(weight / layer.weight_scale[:, None]).to(torch.int8)
    layer.input_scale.fill_(float(x.abs().amax()) / 127)

    with torch.no_grad():
        medians = interleaved_medians({"fp32": lambda: F.linear(x, weight), "int8": lambda: layer(x)}, args.repeats)
    fp32, int8 = medians["fp32"], medians["int8"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, M={args.m} K={args.k} N={args.n}")
    print(f"fp32 F.linear:        {fp32 * 1e3:8.1f} ms")
    print(f"Int8Linear (emulated): {int8 * 1e3:8.1f} ms")
    print(f"ratio Int8Linear / fp32: {int8 / fp32:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
