#!/usr/bin/env python
"""Train klein-nano from scratch and write it as a diffusers folder (bf16 safetensors).

From scratch (VAE, then transformer), then more transformer training:
    python scripts/train_nano.py --out nano-run --log nano-train.jsonl
    python scripts/train_nano.py --out nano-run2 --resume nano-run --seed 1 --log nano-train-2.jsonl
The exact commands behind the shipped weights (src/flux2_int8/nano/weights) are in docs/nano.md.
A 20-step smoke run (what CI does):
    python scripts/train_nano.py --out /tmp/nano --vae-steps 10 --vae-batch 2 \\
        --transformer-steps 10 --transformer-batch 4 --latent-pool 8 --pool-refresh 2
It follows the CLI's rules (docs/reliability.md): --out is never the --resume folder nor a folder
someone else filled (unless --overwrite); every option is checked before training; mistakes,
Ctrl-C and SIGTERM are one `Error:` line (exit 2, 130, 143).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

from flux2_int8.cli import UsageParser, run_guarded
from flux2_int8.outputs import add_overwrite_flag


def main(argv: list[str] | None = None) -> int:
    from flux2_int8.nano.train import TrainConfig

    parser = UsageParser(prog="train_nano.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the trained pipeline to")
    parser.add_argument("--log", help="also append each log record to this JSON-lines file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, at least 1 (1 is fastest on a shared machine)")
    parser.add_argument("--resume", help="continue the transformer of a pipeline folder this script wrote (VAE kept; use another --seed)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    add_overwrite_flag(parser)
    args = parser.parse_args(argv)
    return run_guarded(lambda: _train(args, TrainConfig))


def _train(args: argparse.Namespace, config_class: type) -> None:
    """Check every option and path, claim --out and --log, then train (the log gets every record)."""
    from flux2_int8.errors import ConfigError
    from flux2_int8.outputs import claim_file, claim_folder, input_files, mark_folder

    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be at least 1")
    config = config_class(**{field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)})
    config.check_resume(args.resume)
    inputs = input_files(args.resume)
    out = claim_folder(args.out, inputs, args.overwrite)
    log_path = claim_file(args.log, inputs, option="--log") if args.log else None
    mark_folder(out)  # claimed now, so a killed run can be rerun into it (and a log kept inside it is no obstacle)

    import torch

    from flux2_int8.nano.train import train_nano

    torch.set_num_threads(args.threads)
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") if log_path else contextlib.nullcontext() as log_file:

        def log(record: dict) -> None:
            line = json.dumps(record)
            print(line, flush=True)
            if log_path:
                log_file.write(line + "\n")
                log_file.flush()

        log({"phase": "start", "config": dataclasses.asdict(config), "torch": torch.__version__})
        train_nano(config, out, log, resume=args.resume, overwrite=args.overwrite)
        log({"phase": "done", "wall_s": round(time.monotonic() - start, 1), "out": str(Path(out))})


if __name__ == "__main__":
    sys.exit(main())
