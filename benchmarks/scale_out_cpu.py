"""Ray scale-out on CPU: images per second with 1 and with 2 workers, tiny model, side by side.

    python benchmarks/scale_out_cpu.py [--images 24 --size 512 --steps 8]

Starts one local Ray (2 CPUs, a 200 MB object store), then makes the same prompts-file
batch (`generate --prompts --ray` underneath) with a pool of 1 actor and with a pool of
2, one CPU and one torch thread each, and prints both rates and their ratio. Two rates
per pool: over the whole run (actor start-up and model load included: what a user
waits for), and while busy (workers / the mean seconds an image takes inside a worker,
so contention between the workers shows as a longer time per image). On a machine
with 2 free cores the busy ratio approaches 2; start-up does not shrink with more
workers, so short runs gain less.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from flux2_int8.generate import Request, plan_jobs
from flux2_int8.scale_out import ClusterOptions, GenerateSpec, connect, generate_on_cluster
from flux2_int8.tiny import tiny_pipeline_cache

PROMPTS = ("A red cube on a blue table", "A green cat on a sofa", "A yellow car in a garage", "A lighthouse at dusk")


def run_pool(workers: int, images: int, size: int, steps: int, base: Path, out: Path) -> dict[str, float]:
    requests = [Request(PROMPTS[i % len(PROMPTS)], (), seed=i) for i in range(images)]
    jobs = plan_jobs(requests, 1, out / f"workers-{workers}")
    cluster = connect(ClusterOptions("local", workers, 0, 1.0), device="cpu")
    spec = GenerateSpec({"base": base, "device": "cpu", "dtype": torch.float32}, steps, None, size, size)
    start = time.perf_counter()
    done, _ = generate_on_cluster(cluster, jobs, spec, progress=False)
    wall = time.perf_counter() - start
    per_image = sum(item.seconds for item in done) / len(done)
    return {"wall": wall, "rate": len(done) / wall, "busy": workers / per_image, "per_image": per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (multiple of 16)")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    base = tiny_pipeline_cache()
    with tempfile.TemporaryDirectory() as folder:
        results = {workers: run_pool(workers, args.images, args.size, args.steps, base, Path(folder)) for workers in (1, 2)}
    ray.shutdown()
    print(f"tiny klein, {args.images} images of {args.size}x{args.size}, {args.steps} steps, CPU, 1 thread per worker")
    print(f"{'workers':>8} {'wall s':>8} {'images/s':>9} {'busy images/s':>14} {'s/image in worker':>18}")
    for workers, result in results.items():
        print(f"{workers:>8} {result['wall']:>8.1f} {result['rate']:>9.2f} {result['busy']:>14.2f} {result['per_image']:>18.2f}")
    one, two = results[1], results[2]
    print(f"2 vs 1 workers: {two['rate'] / one['rate']:.2f}x images/s over the whole run, {two['busy'] / one['busy']:.2f}x while busy")


if __name__ == "__main__":
    main()
