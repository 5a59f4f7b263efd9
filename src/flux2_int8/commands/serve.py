"""`flux2-int8 serve`: an OpenAI-compatible image server (docs/serve.md).

Every option is checked (a public address without a key, a missing LoRA folder, a
missing extra) before torch or FastAPI is imported; then the port is bound, the model
loaded and warmed, and the server runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from .. import limits as ranges
from .options import ACTIVATIONS, ACTIVATIONS_HELP, STEPS, add_device, add_dtype, add_run_flags, device_or_default, gpus_per_worker, in_range
from .ray_options import CPUS_PER_WORKER, WORKERS, ray_address

_COMPILE_MODES = ("off", "full", "regional")
_SERVE_MODULES = ("fastapi", "uvicorn", "prometheus_client", "multipart")


def run(args: argparse.Namespace) -> None:
    from ..serve.settings import API_KEY_ENV, Limits, ModelSpec, ServeConfigError, ServeSettings, lora_files

    limits = Limits(args.max_pixels, args.max_steps, args.max_n, args.max_prompt_chars, args.max_body_mb * 2**20, args.max_references)
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    settings = ServeSettings(args.host, args.port, api_key, args.max_batch, args.batch_wait_ms, args.max_queue, args.request_timeout, tuple(args.cors_origin), limits)
    spec = ModelSpec(args.base, args.transformer, args.text_encoder, device_or_default(args.device), args.dtype, args.compile, args.activations, args.lora_dir, args.threads, args.local_files_only, args.random_weights)
    lora_files(spec.lora_dir)  # a missing or empty folder is refused now, not after the load
    if args.ray is not None:
        from ..serve.ray_serve import ReplicaOptions

        ReplicaOptions(args.ray, args.replicas, args.gpus_per_replica, args.cpus_per_replica)  # checked before Ray starts
    missing = [name for name in _SERVE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ServeConfigError(f"serve needs the serve extra ({missing[0]} is not installed): pip install 'flux2-int8[serve]'")
    if args.ray is None:
        if (args.replicas, args.gpus_per_replica, args.cpus_per_replica) != (1, None, 1.0):
            raise ServeConfigError("--replicas, --gpus-per-replica and --cpus-per-replica go with --ray ADDRESS (e.g. --ray local)")
        from ..serve.server import serve

        return serve(spec, settings, quiet=args.quiet, as_json=args.json)
    from ..serve.ray_serve import ReplicaOptions, serve_on_ray

    serve_on_ray(spec, settings, ReplicaOptions(args.ray, args.replicas, args.gpus_per_replica, args.cpus_per_replica), quiet=args.quiet, as_json=args.json)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="serve OpenAI's images API (generations, edits) on a loaded model, batched and bounded")
    parser.add_argument("--base", default="nano", help="variant (klein-4b, klein-9b, ...), hub repository id, local pipeline folder, or a built-in model: nano (default) or tiny")
    parser.add_argument("--transformer", help="INT8/BF16/FP8 transformer checkpoint: a path, or a hub file owner/repo/file.safetensors (default: the base's own)")
    parser.add_argument("--text-encoder", help="INT8 text encoder file from `flux2-int8 quantize --text-encoder` (default: the base's)")
    add_device(parser)
    add_dtype(parser)
    parser.add_argument("--activations", choices=ACTIVATIONS, default="auto", help=ACTIVATIONS_HELP)
    parser.add_argument("--compile", choices=_COMPILE_MODES, default="off", help="torch.compile the transformer: full, or regional (each repeated block); warm-up compiles (default off)")
    parser.add_argument("--random-weights", action="store_true", help="benchmarks: serve the full-size --base variant with random INT8 weights built on the device (no download; pictures are noise)")
    parser.add_argument("--lora-dir", metavar="DIR", help="LoRAs requests may name: each NAME.safetensors in DIR, by NAME (never a path from a request)")
    network = parser.add_argument_group("network and security")
    network.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; any other needs an API key)")
    network.add_argument("--port", type=in_range(ranges.PORT), default=8000, help="port (default 8000; 0: any free port, printed at start)")
    network.add_argument("--api-key", help="the key clients send as 'Authorization: Bearer KEY' (default: the FLUX2_INT8_API_KEY variable; prefer it: a flag shows in ps)")
    network.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow browser pages of ORIGIN to call the API (repeat; default: none)")
    batching = parser.add_argument_group("batching and queue")
    batching.add_argument("--max-batch", type=in_range(ranges.BATCH), default=4, help="images per pipeline call at most (default 4; 1 turns batching off)")
    batching.add_argument("--batch-wait-ms", type=in_range(ranges.BATCH_WAIT_MS), default=20.0, help="how long the oldest request waits for others to share its call (default 20)")
    batching.add_argument("--max-queue", type=in_range(ranges.MAX_QUEUE), default=16, help="requests waiting at most; more get 429 with Retry-After (default 16)")
    batching.add_argument("--request-timeout", type=in_range(ranges.REQUEST_TIMEOUT), default=300.0, help="seconds a request may take, queue included, before a 503 (default 300)")
    limits = parser.add_argument_group("request limits")
    limits.add_argument("--max-pixels", type=in_range(ranges.MAX_PIXELS), default=1024 * 1024, help="largest image (width x height) made or taken as a reference (default 1048576)")
    limits.add_argument("--max-steps", type=STEPS, default=50, help="most num_inference_steps (default 50)")
    limits.add_argument("--max-n", type=in_range(ranges.MAX_IMAGES_PER_REQUEST), default=4, help="most images per request (default 4)")
    limits.add_argument("--max-prompt-chars", type=in_range(ranges.MAX_PROMPT_CHARS), default=2000, help="longest prompt, in characters (default 2000)")
    limits.add_argument("--max-body-mb", type=in_range(ranges.MAX_BODY_MB), default=32, help="largest request body, in MiB (default 32)")
    limits.add_argument("--max-references", type=in_range(ranges.MAX_REFERENCES), default=4, help="most reference images per edit (default and most: 4)")
    add_run_flags(parser)
    ray = parser.add_argument_group("Ray Serve: replicas past one GPU (pip install 'flux2-int8[ray,serve]'; see docs/serve.md)")
    ray.add_argument("--ray", type=ray_address, metavar="ADDRESS", help="run as a Ray Serve deployment: local (start Ray here), auto (this machine's cluster) or HOST:PORT")
    ray.add_argument("--replicas", type=WORKERS, default=1, metavar="N", help="replicas, each holding one copy of the model (default 1)")
    ray.add_argument("--gpus-per-replica", type=gpus_per_worker, metavar="G", help="GPUs per replica (default 0 with --device cpu, else 1 where the cluster has GPUs)")
    ray.add_argument("--cpus-per-replica", type=CPUS_PER_WORKER, default=1.0, metavar="C", help="CPUs per replica, and its torch threads (default 1)")
    parser.set_defaults(run=run)
