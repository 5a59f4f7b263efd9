"""`flux2-int8 inspect PATH [--json]`: describe a checkpoint from its header alone."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> None:
    from ..formats.inspect import describe, format_report

    summary = describe(args.path)
    print(json.dumps(summary, indent=2) if args.json else format_report(summary))


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("inspect", help="describe a checkpoint from its header (no weights are read)")
    parser.add_argument("path", help="a .safetensors file, or a diffusers/ModelOpt transformer folder")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(run=run)
