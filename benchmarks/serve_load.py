"""`flux2-int8 serve` under load: batching on vs off, side by side, on loopback.

    python benchmarks/serve_load.py [--requests 32 --concurrency 8 --rounds 3 --max-batch 8 -- SERVE FLAGS...]
    python benchmarks/serve_load.py --sweep 1,2,4 [--json OUT] -- --base klein-9b --random-weights --device cuda

Starts two servers of the same model (default nano; anything after `--` goes to both,
e.g. `-- --base klein-9b --transformer x.safetensors`): one with `--max-batch N`, one
with `--max-batch 1` (batching off). Each round sends `--requests` requests,
`--concurrency` at a time, to each server in turn (interleaved, so both see the same
machine), and prints images/s, p50/p95 latency and rejections per round, then the
medians, the images/s ratio with its spread over rounds, and each server's peak RSS.
Loops are bounded in count and by `--budget-s`. Not a test: a measurement.

`--sweep 1,2,4` instead starts one server with `--max-batch` the largest level and,
for each level c, keeps c requests in flight (so calls run c images at a time: the
mean batch size read from /metrics is printed beside): images/s at batch 1, 2, 4
under the server, one model load (the GPU proof's serve section).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROMPTS = ["two red circles on a blue background", "one green square on a white background", "three yellow triangles on a black background", "a white circle on a red background"]


def start(max_batch: int, flags: list[str], wait_ms: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "flux2_int8.cli", "serve", "--port", "0", "--json", "--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms), "--max-queue", "256", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("{"):
            return process, json.loads(line)["url"]
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"the server with --max-batch {max_batch} did not start: {' '.join(command)}")


def one_request(url: str, index: int, body: dict) -> tuple[int, float, int]:
    """(status, seconds, images) of one generation request."""
    payload = json.dumps({**body, "prompt": PROMPTS[index % len(PROMPTS)], "seed": index}).encode()
    request = urllib.request.Request(f"{url}/v1/images/generations", data=payload, headers={"Content-Type": "application/json"}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            images = len(json.loads(response.read())["data"])
            return response.status, time.perf_counter() - started, images
    except urllib.error.HTTPError as error:
        return error.code, time.perf_counter() - started, 0


def round_at(url: str, requests: int, concurrency: int, body: dict) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda i: one_request(url, i, body), range(requests)))
    seconds = time.perf_counter() - started
    latencies = sorted(s for status, s, _ in outcomes if status == 200)
    images = sum(n for _, _, n in outcomes)
    return {
        "images_per_s": images / seconds,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan"),
        "rejected": sum(1 for status, _, _ in outcomes if status != 200),
    }


def peak_rss_mib(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('flux2_int8_serve_peak_memory_bytes{kind="rss"}'):
                return float(line.rsplit(" ", 1)[1]) / 2**20
    return float("nan")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a hard stop still stops the servers (the finally blocks)
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per server per round (default 32)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--max-batch", type=int, default=8, help="--max-batch of the batching server (default 8)")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, help="its --batch-wait-ms (default 20)")
    parser.add_argument("--size", default="auto", help="size of every request (default auto: the model's native)")
    parser.add_argument("--steps", type=int, help="num_inference_steps of every request (default: the model's)")
    parser.add_argument("--budget-s", type=float, default=900, help="stop starting rounds after this many seconds (default 900)")
    parser.add_argument("--sweep", help="comma-separated concurrency levels on one server (e.g. 1,2,4), instead of batched vs unbatched")
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH ('-': stdout)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.sweep:
        return sweep(args, flags)
    body = {"size": args.size, **({"num_inference_steps": args.steps} if args.steps else {})}
    servers = {"batched": start(args.max_batch, flags, args.batch_wait_ms), "unbatched": start(1, flags, 0)}
    results: dict[str, list[dict]] = {name: [] for name in servers}
    started = time.monotonic()
    try:
        for name, (_, url) in servers.items():  # one warm round each, not counted
            round_at(url, args.concurrency, args.concurrency, body)
        for number in range(args.rounds):
            if time.monotonic() - started > args.budget_s:
                print(f"budget of {args.budget_s:g} s spent after {number} round(s)")
                break
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for name in order:
                row = round_at(servers[name][1], args.requests, args.concurrency, body)
                results[name].append(row)
                print(f"round {number + 1} {name:>9}: {row['images_per_s']:.2f} images/s, p50 {row['p50']:.2f} s, p95 {row['p95']:.2f} s, {row['rejected']} rejected", flush=True)
        rss = {name: peak_rss_mib(url) for name, (_, url) in servers.items()}
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            process.wait(timeout=120)
    ratios = [b["images_per_s"] / u["images_per_s"] for b, u in zip(results["batched"], results["unbatched"])]
    print(f"\n{args.requests} requests x {len(ratios)} rounds at concurrency {args.concurrency}, size {args.size}, max-batch {args.max_batch} vs 1, cpu threads {os.cpu_count()}")
    for name, rows in results.items():
        print(f"{name:>9}: {statistics.median(r['images_per_s'] for r in rows):.2f} images/s, p50 {statistics.median(r['p50'] for r in rows):.2f} s, "
              f"p95 {statistics.median(r['p95'] for r in rows):.2f} s, {sum(r['rejected'] for r in rows)} rejected, peak RSS {rss[name]:.0f} MiB")
    print(f"images/s ratio batched / unbatched: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    write_json(args.json, {"mode": "batched-vs-unbatched", "requests": args.requests, "concurrency": args.concurrency, "max_batch": args.max_batch, "size": args.size, "serve_flags": flags, "rounds": results, "ratio_median": statistics.median(ratios), "ratios": ratios, "peak_rss_mib": rss})


def batch_metrics(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    found = {name: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() for name in ("flux2_int8_serve_batch_size_sum", "flux2_int8_serve_batch_size_count") if line.startswith(name + " ")}
    return found.get("flux2_int8_serve_batch_size_sum", 0.0), found.get("flux2_int8_serve_batch_size_count", 0.0)


def sweep(args: argparse.Namespace, flags: list[str]) -> None:
    levels = [int(level) for level in args.sweep.split(",")]
    body = {"size": args.size, **({"num_inference_steps": args.steps} if args.steps else {})}
    process, url = start(max(levels), flags, args.batch_wait_ms)
    started = time.monotonic()
    rows = []
    try:
        round_at(url, max(levels), max(levels), body)  # warm, every batch size once
        for level in levels:
            if time.monotonic() - started > args.budget_s:
                print(f"budget of {args.budget_s:g} s spent before level {level}")
                break
            before = batch_metrics(url)
            row = round_at(url, max(args.requests, 2 * level), level, body)
            after = batch_metrics(url)
            row = {"concurrency": level, **row, "mean_batch": (after[0] - before[0]) / max(1.0, after[1] - before[1])}
            rows.append(row)
            print(f"concurrency {level}: {row['images_per_s']:.3f} images/s, mean batch {row['mean_batch']:.2f}, p50 {row['p50']:.2f} s, p95 {row['p95']:.2f} s, {row['rejected']} rejected", flush=True)
        rss = peak_rss_mib(url)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    print(f"peak RSS {rss:.0f} MiB; serve flags: {' '.join(flags) or '(nano)'}; size {args.size}")
    write_json(args.json, {"mode": "sweep", "size": args.size, "serve_flags": flags, "levels": rows, "peak_rss_mib": rss})


def write_json(path: str | None, document: dict) -> None:
    if path is None:
        return
    from flux2_int8.outputs import write_text_atomic

    text = json.dumps(document, indent=1)
    if path == "-":
        print(text)
    else:
        write_text_atomic(Path(path), text + "\n")


if __name__ == "__main__":
    main()
