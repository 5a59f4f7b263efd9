"""CPU: Int8Linear (exact integer math) vs fp32 `F.linear`, side by side.

    python benchmarks/cpu_int8_linear.py [--m 4096 --k 3072 --n 3072 --repeats 5]

Prints the median time of each and their ratio (target: Int8Linear <= 1.2x fp32).
It times the exact float32 emulation and whatever `auto` picks on this CPU (`int_mm`, oneDNN's
int8 GEMM, where the CPU has VNNI); --int-mm adds `int_mm` where auto does not pick it.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from flux2_int8.bench.timing import interleaved_medians
from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.backends import CPU_HAS_VNNI, pick_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4096)
    parser.add_argument("--k", type=int, default=3072)
    parser.add_argument("--n", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--int-mm", action="store_true", help="also time the int_mm backend (torch._int_mm on CPU)")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.m, args.k)
    weight = torch.randn(args.n, args.k) * 0.02
    layer = Int8Linear(args.k, args.n)
    layer.weight_scale.copy_(weight.abs().amax(dim=1) / 127)
    layer.weight.data = torch.round(weight / layer.weight_scale[:, None]).to(torch.int8)
    layer.input_scale.fill_(float(x.abs().amax()) / 127)

    auto = pick_backend(x.device, args.k, args.n)
    backends = ["emulated"] + ([] if auto == "emulated" else [auto]) + (["int_mm"] if args.int_mm and auto != "int_mm" else [])
    functions = {"fp32": lambda: F.linear(x, weight)}
    for backend in backends:
        functions[backend] = _forced(layer, backend, x)
    with torch.no_grad():
        medians = interleaved_medians(functions, "cpu", args.repeats)
    fp32 = medians.pop("fp32")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, M={args.m} K={args.k} N={args.n}, VNNI: {CPU_HAS_VNNI}")
    print(f"fp32 F.linear:               {fp32 * 1e3:8.1f} ms")
    for backend, seconds in medians.items():
        tag = " (auto)" if backend == auto else ""
        print(f"Int8Linear {backend + tag:<17} {seconds * 1e3:8.1f} ms  ratio to fp32 {seconds / fp32:.3f}")
    print(f"target: Int8Linear (auto) / fp32 <= 1.2 -> {medians[auto] / fp32:.3f}")


def _forced(layer: Int8Linear, backend: str, x: torch.Tensor):  # type: ignore[no-untyped-def]
    forced = copy.deepcopy(layer)
    forced.backend = backend
    return lambda: forced(x)

if __name__ == "__main__":
    main()
