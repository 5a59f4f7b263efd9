"""`flux2-int8 inspect PATH [--json]`: describe a checkpoint from its header alone."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..formats.inspect import describe, format_report
    from ..lora.files import describe_lora_file

    lora = describe_lora_file(args.path) if Path(args.path).is_file() else None
    if lora is not None:
        print(json.dumps(lora.summary(), indent=2) if args.json else lora.report(args.path))
        return
    summary = describe(args.path)
    print(json.dumps(summary, indent=2) if args.json else format_report(summary))


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("inspect", help="describe a checkpoint from its header (no weights are read)")
    parser.add_argument("path", help="a .safetensors file (a checkpoint or a LoRA), or a diffusers/ModelOpt transformer folder")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(run=run)
