"""Put a GPU run's figures into docs/benchmarks.md by rendering its JSON reports, not by hand.

`scripts/bench_gpu.sh proof` leaves one bench JSON per section (check.json, micro.json,
9b.json, ...). `record_measured` renders them, in the order they were run, into the part
of docs/benchmarks.md between two marker lines: device, versions, date and the command
of each report, its tables (the 9B table beside the RTX 5090 reference), and the
targets of issue 10 with whether each was met. Sections the run did not produce are
listed as still owed. Everything outside the markers is left as it is.

Reports can also arrive as one line of a run's log.txt (`== report NAME.json: {...}`):
the device tool returns at most 8 files, and `proof` already fills them (its convrot
section travels that way). `bash scripts/bench_gpu.sh offload` (a call of its own) leaves
offload.json, rendered between the offload markers, so recording it keeps the proof's figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import Flux2Int8Error
from .report import GB, check_table, microbench_table, published_table, summary_table, write_text_atomic

BEGIN = "<!-- measured:begin (written by scripts/record_gpu_results.py; edit outside these markers) -->"
END = "<!-- measured:end -->"
OFFLOAD_BEGIN = "<!-- offload:begin (written by scripts/record_gpu_results.py; edit outside these markers) -->"
OFFLOAD_END = "<!-- offload:end -->"
PROOF_SECTIONS = ("check", "micro", "eager-compiled", "9b", "micro-compiled", "lora", "convrot", "9b-full")
LORA_SCHEMA = "flux2-int8-lora-step/"  # benchmarks/lora_step.py --json
PEERS_SCHEMA = "flux2-int8-peers/"  # benchmarks/peers.py --json (the eager-compiled section)
CONVROT_SCHEMA = "flux2-int8-convrot/"  # benchmarks/convrot_paths.py --json (the convrot section, via log.txt)
OFFLOAD_SCHEMA = "flux2-int8-offload/"  # benchmarks/offload_modes.py --json (bash scripts/bench_gpu.sh offload)
SCHEMAS = ("flux2-int8-bench/", LORA_SCHEMA, PEERS_SCHEMA, CONVROT_SCHEMA, OFFLOAD_SCHEMA)
REPORT_LINE = "== report "  # log.txt: "== report NAME.json: {...}", a report that did not travel as a file
# Targets of issue 10 for klein-9B at 1024x1024, 4 steps.
LINEAR_SPEEDUP_TARGET = 1.7  # every linear shape, INT8 / BF16
TRANSFORMER_SPEEDUP_TARGET = 1.5  # compiled INT8 vs compiled BF16
TRANSFORMER_SECONDS_TARGET = 0.25  # compiled INT8, 4 steps
PEAK_MEMORY_RATIO_TARGET = 0.6  # INT8 peak / BF16 peak


def read_reports(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every report under `out_dir` (JSON files, and report lines of log.txt files), keyed by name ('check', '9b', ...), proof sections first."""
    found: dict[str, dict[str, Any]] = {}

    def keep(name: str, where: str, document: Any) -> None:
        if isinstance(document, dict) and str(document.get("schema", "")).startswith(SCHEMAS) and found.get(name) != document:
            found[name if name not in found else where] = document  # the same report twice (a file and its log line) counts once

    for path in sorted(Path(out_dir).rglob("*.json")):
        try:
            keep(path.stem, str(path.relative_to(out_dir)), json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise Flux2Int8Error(f"{path}: not a readable JSON report ({error})") from None
    for path in sorted(Path(out_dir).rglob("log.txt")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(REPORT_LINE) and ".json: " in line:
                name, _, payload = line[len(REPORT_LINE) :].partition(".json: ")
                try:
                    keep(name, f"{path.relative_to(out_dir)}:{number}", json.loads(payload))
                except ValueError as error:
                    raise Flux2Int8Error(f"{path}, line {number}: the {name} report is not readable JSON ({error})") from None
    if not found:
        raise Flux2Int8Error(f"{out_dir}: no flux2-int8 bench JSON found (expected the folder a bench_gpu.sh run wrote)")
    order = [name for name in PROOF_SECTIONS if name in found] + sorted(name for name in found if name not in PROOF_SECTIONS)
    return {name: found[name] for name in order}


def render_measured(reports: dict[str, dict[str, Any]], call: str) -> str:
    """The Markdown between the markers for one run's reports."""
    first = next(iter(reports.values()))
    env = first["environment"]
    lines = [
        f"### {env['device_name']}, {env['date_utc'][:10]}",
        "",
        f"- call: `{call}`",
        f"- torch {env['torch']}, CUDA {env['cuda'] or '-'}, triton {env['triton'] or '-'}, diffusers {env['diffusers']}, transformers {env['transformers']}, Python {env['python']}, flux2-int8 {env['flux2_int8']}",
        f"- Int8Linear 'auto' there: {env['int8_auto']}",
        "",
        "Targets (issue 10, klein-9B, 1024x1024, 4 steps):",
        "",
        *targets_table(reports),
    ]
    for name, document in reports.items():
        lines += ["", f"#### {name}", "", f"`{document['command']}` ({document['status']}; {document['environment']['date_utc']})", ""]
        lines += _report_tables(document)
    missing = [name for name in PROOF_SECTIONS if name not in reports]
    if missing:
        lines += ["", f"Still owed (not produced by this run): {', '.join(missing)}."]
    return "\n".join(lines)


def _report_tables(document: dict[str, Any]) -> list[str]:
    if str(document["schema"]).startswith(LORA_SCHEMA):
        return lora_table(document)
    if str(document["schema"]).startswith(CONVROT_SCHEMA):
        return convrot_table(document)
    if str(document["schema"]).startswith(PEERS_SCHEMA):
        return peers_tables(document)
    lines: list[str] = []
    if document.get("check") is not None:
        lines += check_table(document["check"]) + [""]
    if document.get("runs"):
        lines += summary_table(document) + [""]
        if document.get("published_reference_rtx_5090"):
            lines += published_table(document) + [""]
    if document.get("microbench") is not None and document["microbench"]["timings"]:
        lines += microbench_table(document["microbench"]) + [""]
    skipped = document.get("skipped", []) + (document.get("microbench") or {}).get("skipped", []) + (document.get("check") or {}).get("skipped", [])
    lines += [f"- skipped: {entry['what']}: {entry['why']}" for entry in skipped]
    return lines or ["(no finished run)"]


def lora_table(document: dict[str, Any]) -> list[str]:
    """benchmarks/lora_step.py's step times: INT8, + LoRA unfused, + LoRA fused, per compile mode."""
    settings = document["settings"]
    kind = "LoKr" if settings.get("adapter") == "lokr" else "LoRA"
    lines = [
        f"{settings['variant']} shapes, {settings['double']} double + {settings['single']} single blocks, "
        f"{settings['side'] ** 2} image + {settings['text']} text tokens, {settings.get('adapter', 'lora')} rank {settings['rank']} on {settings['layers']} layers, {settings['dtype']}",
        "",
        f"| compile | INT8 ms/step | + {kind} unfused | + {kind} fused |",
        "|---|---|---|---|",
    ]
    for mode, steps in document["steps"].items():
        cells = [f"{steps[name]['s'] * 1e3:.2f} ms ({steps[name]['ratio_to_int8']:.2f}x)" for name in ("unfused", "fused")]
        lines.append(f"| {mode} | {steps['int8']['s'] * 1e3:.2f} | {cells[0]} | {cells[1]} |")
    return lines


def peers_tables(document: dict[str, Any]) -> list[str]:
    """benchmarks/peers.py: time per path as a ratio to BF16 (median of the interleaved rounds, min-max), per workload.

    One table for the linear shapes (a column per path), one row per block or model,
    then the geometric means per M and whatever was skipped or failed.
    """
    rows = [*document.get("linear", []), *([document["block"]] if document.get("block") else []), *document.get("models", [])]
    if not rows:
        return ["(no finished workload)"]
    names = list(dict.fromkeys(name for row in rows for name in row["paths"] if name != "bf16"))
    lines = [
        f"Time relative to BF16 (median of {document['settings']['rounds']} interleaved rounds, min-max in brackets); BF16 ms per call; `-`: not run there.",
        "",
        "| workload | BF16 ms | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in rows:
        paths = row["paths"]
        cells = [f"{paths[name]['ratio']:.2f} ({paths[name]['ratio_min']:.2f}-{paths[name]['ratio_max']:.2f})" if name in paths else "-" for name in names]
        lines.append(f"| {_workload(row)} | {paths['bf16']['median_s'] * 1e3:.2f} | " + " | ".join(cells) + " |")
    for m, means in document.get("geometric_means", {}).items():
        lines += ["", f"Geometric mean over the linear shapes at M = {m}: " + ", ".join(f"{name} {ratio:.2f}" for name, ratio in means.items() if name != "bf16")]
    lines += [f"- {what}: {why}" for what, why in {**document.get("skipped_peers", {}), **document.get("notes", {})}.items()]
    return lines


CONVROT_PATHS = ("int_mm eager", "triton in-tile", "triton prequant", "int_mm compiled")  # benchmarks/convrot_paths.PATHS


def convrot_table(document: dict[str, Any]) -> list[str]:
    """benchmarks/convrot_paths.py: each path plain and rotated, ms and the ratio to plain `int_mm eager`, per shape."""
    settings = document["settings"]
    columns = [f"{path}, {kind}" for path in CONVROT_PATHS for kind in ("plain", "convrot")]
    lines = [
        f"ConvRot G = {settings['group']} vs plain INT8, dynamic activations, M = {settings['m']}, {settings['dtype']} x; "
        f"ms per call (median of {settings['rounds']} interleaved rounds) and, in brackets, the time relative to plain `int_mm eager` (median, min-max); `-`: not run.",
        "",
        "| K x N | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in document["rows"]:
        cells = []
        for name in columns:
            entry = row["paths"].get(name, {})
            if "median_s" not in entry:
                cells.append("-")
            elif "ratio" in entry:
                cells.append(f"{entry['median_s'] * 1e3:.3f} ({entry['ratio']:.2f}, {entry['ratio_min']:.2f}-{entry['ratio_max']:.2f})")
            else:
                cells.append(f"{entry['median_s'] * 1e3:.3f}")
        lines.append(f"| {row['k']} x {row['n']} | " + " | ".join(cells) + " |")
    if not document["rows"]:
        lines.append("| (no shape finished) |" + " |" * len(columns))
    costs = document.get("rotation_cost") or {}
    if costs:
        lines += ["", "What rotating costs (convrot / plain time on the same path, geometric mean over the shapes): " + ", ".join(f"{path} {ratio:.2f}x" for path, ratio in costs.items())]
    lines += [f"- K={row['k']} N={row['n']}, {name}: {why}" for row in document["rows"] for name, why in row.get("errors", {}).items()]
    lines += [f"- skipped: {entry['what']}: {entry['why']}" for entry in document.get("skipped", [])]
    return lines


def offload_table(document: dict[str, Any]) -> list[str]:
    """benchmarks/offload_modes.py: seconds per image and peak memory of each placement beside the memory plan's peak."""
    lines = [
        f"{document['variant']}, random weights (INT8 transformer), {document['resolution']}x{document['resolution']}, {document['steps']} steps; "
        "peak = `torch.cuda.max_memory_allocated` over the timed image; planned = `flux2_int8.plan_memory` for that placement.",
        "",
        "| placement | s / image | peak GB (1e9 bytes) | planned peak GB | peak / planned |",
        "|---|---|---|---|---|",
    ]
    for result in document["results"]:
        if "error" in result:
            lines.append(f"| {result['mode']} | failed: {result['error']} | - | - | - |")
            continue
        peak, planned = result.get("peak_allocated_bytes"), result.get("planned_peak_bytes")
        ratio = f"{peak / planned:.2f}" if peak and planned else "-"
        lines.append(f"| {result['mode']} | {result['seconds_per_image']:.2f} | {_gb(peak)} | {_gb(planned)} | {ratio} |")
    lines += [f"- skipped: {entry['mode']}: {entry['why']}" for entry in document.get("skipped", [])]
    return lines


def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / GB:.2f}"


def render_offload(reports: dict[str, dict[str, Any]], call: str) -> str:
    """The Markdown between the offload markers: device, versions, date, then each placement report's table."""
    lines: list[str] = []
    for name, document in reports.items():
        env = document["environment"]
        lines += [
            f"### {env['device_name']}, {env['date_utc'][:10]}" + ("" if name == "offload" else f" ({name})"),
            "",
            f"- call: `{call}`",
            f"- torch {env['torch']}, CUDA {env['cuda'] or '-'}, diffusers {env['diffusers']}, flux2-int8 {env['flux2_int8']}",
            "",
            *offload_table(document),
            "",
        ]
    return "\n".join(lines).rstrip("\n")


def _workload(row: dict[str, Any]) -> str:
    if row["part"] == "linear":
        return f"K={row['k']} N={row['n']} M={row['m']}"
    return f"{row['name']} ({row['image_tokens']} + {row['text_tokens']} tokens)"


def targets_table(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One row per target: what was measured, and met / not met / not measured."""
    rows = [_linear_target(reports), *_transformer_targets(reports)]
    return ["| Target | Measured | Met |", "|---|---|---|", *[f"| {target} | {measured} | {met} |" for target, measured, met in rows]]


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("yes" if ok else "no")


def _linear_target(reports: dict[str, dict[str, Any]]) -> tuple[str, str, str]:
    """Every klein-9B linear shape: some INT8 backend at least 1.7x BF16 on all of them (eager or compiled)."""
    target = f"every klein-9B linear shape INT8 >= {LINEAR_SPEEDUP_TARGET}x BF16 (M = 4608)"
    best: tuple[float, str] | None = None
    for name in ("micro", "micro-compiled"):
        micro = (reports.get(name) or {}).get("microbench")
        if not micro or not micro["timings"]:
            continue
        for compiled in (False, True):
            timings = [t for t in micro["timings"] if t["compiled"] == compiled and t.get("rotation", "off") == "off"]  # the target is plain INT8's
            for backend in micro["int8_backends"] if timings else ():
                worst = min(t["int8"][backend]["speedup_vs_bf16"] for t in timings)
                label = f"{backend} {'compiled' if compiled else 'eager'}: worst shape {worst:.2f}x ({len(timings)} shapes)"
                best = max(best or (worst, label), (worst, label))
    if best is None:
        return target, "-", _verdict(None)
    return target, best[1], _verdict(best[0] >= LINEAR_SPEEDUP_TARGET)


def _transformer_targets(reports: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Compiled INT8 vs compiled BF16 (speed, seconds), and peak memory, from the transformer rows."""
    rows = [row for name in ("9b", "9b-full") for row in (reports.get(name) or {}).get("summary", [])]
    bf16 = [row for row in rows if row["format"] == "bf16" and not row["fused_qkv"]]
    int8 = [row for row in rows if row["format"] != "bf16"]
    speed_target = f"9B transformer, 4 steps, compiled: INT8 >= {TRANSFORMER_SPEEDUP_TARGET}x BF16 and <= {TRANSFORMER_SECONDS_TARGET} s"
    memory_target = f"peak GPU memory INT8 <= {PEAK_MEMORY_RATIO_TARGET}x BF16"
    bf16_compiled = min((row["compiled_s_per_image"] for row in bf16 if row["compiled_s_per_image"]), default=None)
    int8_compiled = [(row["compiled_s_per_image"], row["label"]) for row in int8 if row["compiled_s_per_image"]]
    if bf16_compiled is None or not int8_compiled:
        speed = (speed_target, "-", _verdict(None))
    else:
        seconds, label = min(int8_compiled)
        ratio = bf16_compiled / seconds
        speed = (speed_target, f"{label}: {seconds:.3f} s vs BF16 {bf16_compiled:.3f} s, {ratio:.2f}x", _verdict(ratio >= TRANSFORMER_SPEEDUP_TARGET and seconds <= TRANSFORMER_SECONDS_TARGET))
    bf16_peak = max((row["peak_device_gb"] for row in bf16 if row["peak_device_gb"]), default=None)
    int8_peaks = [(row["peak_device_gb"], row["label"]) for row in int8 if row["peak_device_gb"]]
    if bf16_peak is None or not int8_peaks:
        memory = (memory_target, "-", _verdict(None))
    else:
        peak, label = max(int8_peaks)
        memory = (memory_target, f"{label}: {peak:.2f} GB vs BF16 {bf16_peak:.2f} GB, {peak / bf16_peak:.2f}x", _verdict(peak / bf16_peak <= PEAK_MEMORY_RATIO_TARGET))
    return [speed, memory]


def record_measured(doc_path: str | Path, out_dir: str | Path, call: str | None = None) -> str:
    """Render the run in `out_dir` into `doc_path` between its markers; returns the new text.

    Proof reports replace the text between the measured markers, placement reports
    (offload.json) the text between the offload markers; a run holding only one kind
    leaves the other section as it is. `call` is the device call that made the run
    (default: `bash scripts/bench_gpu.sh proof`, or `... offload` for placement reports).
    Written through a temporary file and a rename, like every report.
    """
    path = Path(doc_path)
    text = path.read_text()
    reports = read_reports(out_dir)
    offload = {name: document for name, document in reports.items() if str(document["schema"]).startswith(OFFLOAD_SCHEMA)}
    proof = {name: document for name, document in reports.items() if name not in offload}
    if proof:
        text = _replace_between(path, text, BEGIN, END, render_measured(proof, call or "bash scripts/bench_gpu.sh proof"))
    if offload:
        text = _replace_between(path, text, OFFLOAD_BEGIN, OFFLOAD_END, render_offload(offload, call or "bash scripts/bench_gpu.sh offload"))
    write_text_atomic(path, text)
    return text


def _replace_between(path: Path, text: str, begin: str, end: str, body: str) -> str:
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise Flux2Int8Error(f"{path}: expected one '{begin}' line followed by one '{end}' line around the measured figures")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


__all__ = ["BEGIN", "END", "GB", "OFFLOAD_BEGIN", "OFFLOAD_END", "convrot_table", "offload_table", "peers_tables", "read_reports", "record_measured", "render_measured", "render_offload", "targets_table"]
