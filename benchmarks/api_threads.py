"""CPU: one nano image through the Python API with its fitted threads vs PyTorch's default, side by side.

    python benchmarks/api_threads.py [--repeats 7]

`load_pipeline("nano")` runs each call on one thread (restoring the caller's count after);
`threads=N` asks for N. Both pipelines are the same weights; the two are called in
alternation so load from other processes hits both alike. Prints the median seconds per
128 px image of each, the spread (min-max) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flux2_int8 import load_pipeline

PROMPT = "two red circles on a blue background"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    pipelines = {
        "fitted (1 thread, the API default)": load_pipeline("nano", device="cpu"),
        f"PyTorch's default ({default_threads} threads)": load_pipeline("nano", device="cpu", threads=default_threads),
    }
    for pipe in pipelines.values():
        pipe.set_progress_bar_config(disable=True)
        pipe(prompt=PROMPT)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.repeats):
        for name, pipe in pipelines.items():
            start = time.perf_counter()
            pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0))
            samples[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"{name:<36} median {medians[name]:.3f} s per image (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")
    fitted, default = medians.values()
    print(f"PyTorch's default / fitted: {default / fitted:.1f}x; threads after the calls: {torch.get_num_threads()} (unchanged)")


if __name__ == "__main__":
    main()
