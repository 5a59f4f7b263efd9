"""`flux2-int8 inspect PATH [--json] [--check-values]`: describe a checkpoint from its header alone.

Exit status 0 means `load_transformer` would accept the file's structure; a file it
would refuse (a defect, or a foreign file such as a LoRA) exits 2 with the loader's
one-line error, after describing what the file is.
"""

from __future__ import annotations

import argparse
import json

from ..errors import Flux2Int8Error


def run(args: argparse.Namespace) -> None:
    from ..formats.inspect import describe, format_report

    summary = describe(args.path, check_values=args.check_values)
    plan = _pipeline_plan(args.path) if summary["loadable"] else None
    if plan is not None:
        summary["memory_plan"] = plan.to_dict()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif not args.quiet:
        print(format_report(summary))
        if plan is not None:
            from ..planning import format_plan

            print(format_plan(plan))
    if not summary["loadable"]:
        raise Flux2Int8Error(summary["error"])


def _pipeline_plan(path: str):  # type: ignore[no-untyped-def]
    """A pipeline folder (model_index.json) also gets its memory plan at the native 1024 px (see `flux2-int8 plan`)."""
    from pathlib import Path

    if not (Path(path) / "model_index.json").is_file():
        return None
    from ..planning import plan_memory

    return plan_memory(Path(path))


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("inspect", help="describe a checkpoint from its header (no weights are read)", description=__doc__)
    parser.add_argument("path", help="a .safetensors file, a diffusers/ModelOpt transformer folder, or a pipeline folder (also planned: `flux2-int8 plan`)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary (JSON) on stdout instead of text")
    parser.add_argument("--quiet", action="store_true", help="print nothing; the exit code says whether the file loads (0) or not (2)")
    parser.add_argument("--check-values", action="store_true", help="also read every scale and check it is finite and > 0 (reads a few bytes per layer)")
    parser.set_defaults(run=run)
