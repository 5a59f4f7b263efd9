#!/usr/bin/env python
"""Train klein-nano from scratch and write it as a diffusers folder (bf16 safetensors).

From scratch (VAE, then transformer), then more transformer training:
    python scripts/train_nano.py --out nano-run --log nano-train.jsonl
    python scripts/train_nano.py --out nano-run2 --resume nano-run --seed 1 --log nano-train-2.jsonl
The exact commands behind the shipped weights (src/flux2_int8/nano/weights) are in docs/nano.md.
A 20-step smoke run (what CI does):
    python scripts/train_nano.py --out /tmp/nano --vae-steps 10 --vae-batch 2 \
        --transformer-steps 10 --transformer-batch 4 --latent-pool 8 --pool-refresh 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from flux2_int8.nano.train import TrainConfig, train_nano


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the trained pipeline to")
    parser.add_argument("--log", help="also append each log record to this JSON-lines file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--resume", help="continue the transformer of a pipeline folder this script wrote (VAE kept; use another --seed)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        config = TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})
        config.check_resume(args.resume)
    except ValueError as error:
        parser.error(str(error))  # a usage message and exit status 2, not a traceback
    log_file = open(args.log, "a") if args.log else None
    start = time.monotonic()

    def log(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if log_file:
            log_file.write(line + "\n")
            log_file.flush()

    log({"phase": "start", "config": dataclasses.asdict(config), "torch": torch.__version__})
    train_nano(config, args.out, log, resume=args.resume)
    log({"phase": "done", "wall_s": round(time.monotonic() - start, 1), "out": args.out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
