"""Benchmark results as one JSON document, and Markdown rendered from that document.

The Markdown is made from the JSON alone, so the two never disagree and a report
can be re-rendered from a saved JSON file. The first table has the shape of the
published one (eager and compiled seconds per image, images per second, peak
memory), one row per run plan ('int8 (triton, fused q/k/v)') with a column per
compile mode; the tables after it hold every measured field, then what the time
budget skipped, the microbenchmark and the correctness check. A document is written
after every finished run, so its `status` says whether the run was still going
("running"), ended ("complete") or was stopped ("interrupted").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..generate.compilation import COMPILE_MODES
from ..int8 import backends
from ..outputs import write_text_atomic
from ..provenance import device_description, utc_now, versions
from .check import CheckResult
from .microbench import MicrobenchResult
from .page import MODE_TITLES, NOISY_MARK, NOISY_NOTE, render_page
from .pipeline_bench import BenchResult

# 2: runs and summary rows carry label, int8_backend, fused_qkv; microbench INT8 timings per backend.
# 3: runs carry `compile` (off/full/regional), summary rows a time per mode; status, time budget,
#    skipped plans and the correctness check.
# 4: runs, summary rows (per mode) and microbench timings flag `noisy` timings (spread > median/2).
# 5: microbench lists `rotations` and each timing its `rotation` (off, convrot:G).
SCHEMA = "flux2-int8-bench/5"
STATUSES = ("running", "complete", "interrupted")
GB = 1e9  # the published figures are decimal gigabytes

# Figures published for klein on one RTX 5090 (1024x1024, 4 steps, batch 1), as quoted in
# issue 6 (docs/benchmarks.md). No img/s was given for 4B.
PUBLISHED_RTX_5090: dict[str, dict[str, float | None]] = {
    "klein-9b": {"eager_s": 3.04, "compiled_s": 1.09, "images_per_s": 0.917, "peak_gb": 20.15},
    "klein-4b": {"eager_s": 1.77, "compiled_s": 0.72, "images_per_s": None, "peak_gb": 11.25},
}


def environment(device: torch.device | str) -> dict[str, Any]:
    """What the numbers were measured on and with (the keys are flat: older reports read the same)."""
    device = torch.device(device)
    return {
        **device_description(device),
        **versions(),
        "int8_auto": auto_backend_description(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date_utc": utc_now(),
    }


def auto_backend_description(device: torch.device) -> str:
    """What Int8Linear's 'auto' runs on `device` in this process (`backends.pick_backend`)."""
    if device.type != "cuda":
        picked = backends.pick_backend(device, 3072, 3072)  # a klein-sized layer; small ones are noted
        described = {
            "onednn": "onednn eager (oneDNN int8 GEMM on a packed weight: this CPU has VNNI; emulated for layers of <= 2^18 weights), int_mm compiled",
            "int_mm": "int_mm (oneDNN int8 GEMM: this CPU has VNNI; oneDNN's packed-weight op does not run here)",
        }
        return described.get(picked, f"{picked} (no VNNI on this CPU)")
    if backends.TRITON_IN_AUTO:
        return "triton eager, triton_prequant compiled (FLUX2_INT8_TRITON=1)"
    return "int_mm (M <= 16 padded to 17 rows; emulated where K, N are not multiples of 8); Triton only with FLUX2_INT8_TRITON=1"


def build_document(
    result: BenchResult | None,
    microbench: MicrobenchResult | None,
    env: dict[str, Any],
    command: str,
    variant: str,
    check: CheckResult | None = None,
    status: str = "complete",
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """The JSON document of one `flux2-int8 bench` invocation (or of its progress so far)."""
    if status not in STATUSES:
        raise ValueError(f"status '{status}': expected one of {', '.join(STATUSES)}")
    return {
        "schema": SCHEMA,
        "variant": variant,
        "command": command,
        "status": status,
        "time_budget_s": time_budget_s,
        "environment": env,
        "settings": None if result is None else result.settings.to_dict(),
        "source": None if result is None else result.source,
        "components_load_s": None if result is None else result.components_load_s,
        "components_bytes": None if result is None else result.components_bytes,
        "runs": [] if result is None else [run.to_dict() for run in result.runs],
        "summary": [] if result is None else summary_rows(result),
        "skipped": [] if result is None else list(result.skipped),
        "microbench": None if microbench is None else microbench.to_dict(),
        "check": None if check is None else check.to_dict(),
        "published_reference_rtx_5090": PUBLISHED_RTX_5090.get(variant),
    }


def summary_rows(result: BenchResult) -> list[dict[str, Any]]:
    """One row per run plan (label): seconds per image and first call per compile mode, best images/s,
    peak memory, speed-up vs BF16 (the unfused BF16 row, the model as diffusers runs it, when there is one).
    `compiled_s_per_image` is the faster compiled mode's."""
    rows = []
    for label in dict.fromkeys(run.label for run in result.runs):
        runs = [run for run in result.runs if run.label == label]
        by_mode = {run.compile: run.image.total.median_s / result.settings.batch for run in runs}
        compiled = [seconds for mode, seconds in by_mode.items() if mode != "off"]
        rows.append(
            {
                "label": label,
                "format": runs[0].format,
                "int8_backend": runs[0].int8_backend,
                "activations": runs[0].activations,
                "fused_qkv": runs[0].fused_qkv,
                "s_per_image": by_mode,
                "first_call_s": {run.compile: run.first_call_s for run in runs},
                "step_s": {run.compile: run.step.median_s for run in runs},
                "eager_s_per_image": by_mode.get("off"),
                "compiled_s_per_image": min(compiled) if compiled else None,
                "images_per_s": max(run.images_per_s for run in runs),
                "peak_device_gb": _max_gb(run.peak_image_bytes or run.peak_step_bytes for run in runs),
                "host_rss_peak_gb": _max_gb(run.host_rss_peak_bytes for run in runs),
                "image_latency_measured": all(run.image.measured for run in runs),
                "noisy": {run.compile: run.noisy for run in runs},
            }
        )
    bf16_rows = [row for row in rows if row["format"] == "bf16"]
    bf16 = next((row for row in bf16_rows if not row["fused_qkv"]), bf16_rows[0] if bf16_rows else None)
    for row in rows:
        row["speedup_vs_bf16"] = None if bf16 is None else row["images_per_s"] / bf16["images_per_s"]
    return rows


def _max_gb(values: Any) -> float | None:
    present = [value for value in values if value is not None]
    return max(present) / GB if present else None


def write_report(out_dir: str | Path, document: dict[str, Any]) -> tuple[Path, Path, Path]:
    """Write `bench-<variant>.json`, `.md` and `.html` (charts) into `out_dir`, each through a temp file and a rename."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{document['variant']}"
    markdown = format_markdown(document)
    json_path = write_text_atomic(out_dir / f"{stem}.json", json.dumps(document, indent=2) + "\n")
    md_path = write_text_atomic(out_dir / f"{stem}.md", markdown)
    html_path = write_text_atomic(out_dir / f"{stem}.html", render_page(document, markdown))
    return json_path, md_path, html_path


def format_markdown(document: dict[str, Any]) -> str:
    """The whole report as Markdown, rendered from the JSON document."""
    env = document["environment"]
    lines = [
        f"# flux2-int8 bench: {document['variant']}",
        "",
        f"- device: {env['device_name']} ({env['device_type']}{', CUDA ' + env['cuda'] if env['cuda'] else ''})",
        f"- torch {env['torch']}, diffusers {env['diffusers']}, transformers {env['transformers']}, triton {env['triton'] or '-'}, flux2-int8 {env['flux2_int8']}, Python {env['python']}",
        f"- Int8Linear backend 'auto' here: {env['int8_auto']}",
        *([f"- Inductor/Triton caches: {env['compile_caches']}"] if env.get("compile_caches") else []),
        f"- date: {env['date_utc']}",
        f"- command: `{document['command']}`",
        f"- status: {document['status']}" + ("" if document["time_budget_s"] is None else f", time budget {document['time_budget_s']:.0f} s"),
    ]
    if document["check"] is not None:
        lines += [""] + check_table(document["check"])
    if document["settings"] is not None:
        lines += _settings_lines(document) + [""] + summary_table(document) + [""] + _details_table(document)
    skipped = document["skipped"] + (document["microbench"] or {}).get("skipped", []) + (document["check"] or {}).get("skipped", [])
    if skipped:
        lines += ["", "Skipped by the time budget:", ""] + [f"- {entry['what']}: {entry['why']}" for entry in skipped]
    if document["published_reference_rtx_5090"]:
        lines += [""] + published_table(document)
    if document["microbench"] is not None:
        lines += [""] + microbench_table(document["microbench"])
    return "\n".join(lines) + "\n"


def _settings_lines(document: dict[str, Any]) -> list[str]:
    s = document["settings"]
    seconds, size = document["components_load_s"], document["components_bytes"]
    resident = "" if size is None else f", {size / GB:.2f} GB resident on the device through every run"
    return [
        f"- weights: {document['source']}",
        f"- {s['resolution']}x{s['resolution']} ({s['image_tokens']} image + {s['text_tokens']} text tokens), {s['num_steps']} steps, batch {s['batch']}, {s['repeats']} repeats after {s['warmup']} warm-up",
        f"- text encoder + VAE + tokenizer: {'none (transformer only)' if seconds is None else f'built in {seconds:.2f} s{resident}'}",
        f"- INT8 backends: {', '.join(s['int8_backends'])}; q/k/v fused: {', '.join('on' if on else 'off' for on in s['fuse_qkv_modes'])}; activations: {', '.join(s.get('activations', ('auto',)))}",
    ]


def _modes(document: dict[str, Any]) -> list[str]:
    """The compile modes run, in COMPILE_MODES order."""
    present = {run["compile"] for run in document["runs"]}
    return [mode for mode in COMPILE_MODES if mode in present]


_MODE_COLUMN = MODE_TITLES


def summary_table(document: dict[str, Any]) -> list[str]:
    """One row per plan: s/img per compile mode (compile time of each compiled mode), img/s, peak memory, vs BF16."""
    on_cuda = document["environment"]["device_type"] == "cuda"
    memory = "Peak GPU memory (GB)" if on_cuda else "Peak host RSS (GB)"
    modes = _modes(document)
    compiled = [mode for mode in modes if mode != "off"]
    columns = ["Model", "Format"] + [f"{_MODE_COLUMN[mode]} (s/img)" for mode in modes] + [f"{_MODE_COLUMN[mode]}: first call (s)" for mode in compiled]
    lines = ["| " + " | ".join([*columns, "img/s", memory, "vs BF16"]) + " |", "|" + "---|" * (len(columns) + 3)]
    for row in document["summary"]:
        mark = "" if row["image_latency_measured"] else "*"
        peak = row["peak_device_gb"] if on_cuda else row["host_rss_peak_gb"]
        noisy = row.get("noisy", {})
        cells = [document["variant"], row["label"]] + [_num(row["s_per_image"].get(mode), 3) + mark + _noisy(noisy.get(mode)) for mode in modes]
        cells += [_num(row["first_call_s"].get(mode), 1) for mode in compiled]
        cells += [_num(row["images_per_s"], 3) + mark, _num(peak, 2), _ratio(row["speedup_vs_bf16"])]
        lines.append("| " + " | ".join(cells) + " |")
    if any(not row["image_latency_measured"] for row in document["summary"]):
        lines += ["", "\\* estimated: steps x transformer step latency (transformer only; run with --full-pipeline to measure whole images)."]
    if any(any(row.get("noisy", {}).values()) for row in document["summary"]):
        lines += ["", NOISY_NOTE]
    return lines


def check_table(check: dict[str, Any]) -> list[str]:
    """The correctness check: one row per backend, dtype and M, the worst case over the shapes; then every failure."""
    verdict = "PASS" if check["passed"] else f"FAIL ({check['failed']} of {len(check['cases'])} cases)"
    lines = [
        f"Correctness check on {check['device_name']}: every INT8 backend vs the float64 reference, {len(check['cases'])} cases: **{verdict}**.",
        f"Tolerance: {check['tolerance']}.",
        "",
        "| Backend | Ran | Activations | dtype | M | Shapes | Max abs error | Relative error | Worst error / tolerance | Result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str, str, str, int], list[dict[str, Any]]] = {}
    for case in check["cases"]:
        groups.setdefault((case["backend"], case["ran"], case["activations"], case["dtype"], case["tokens"]), []).append(case)
    for (backend, ran, activations, dtype, tokens), cases in groups.items():
        passed = all(case["passed"] for case in cases)
        lines.append(
            f"| {backend} | {ran} | {activations} | {dtype} | {tokens} | {len(cases)} | {max(c['max_abs_error'] for c in cases):.3g} | {max(c['relative_error'] for c in cases):.3g} "
            f"| {max(c['worst_tolerance_ratio'] for c in cases):.2f} | {'pass' if passed else 'FAIL'} |"
        )
    failures = [case for case in check["cases"] if not case["passed"]]
    if failures:
        lines += ["", "Failed cases:", ""]
        lines += [f"- {c['backend']} ({c['ran']}) {c['in_features']}x{c['out_features']} M={c['tokens']} {c['dtype']} {c['activations']}: max abs error {c['max_abs_error']:.3g}, {c['worst_tolerance_ratio']:.2f}x the tolerance" for c in failures]
    return lines


def _details_table(document: dict[str, Any]) -> list[str]:
    lines = [
        "| Format | Mode | Load (s) | First call (s) | Step median (ms) | Step min-max (ms) | Text enc. (s) | Denoise (s) | VAE decode (s) | Image (s) | img/s | Weights (GB) | Peak step (GB) | Peak image (GB) | Host RSS peak (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in document["runs"]:
        image, step = run["image"], run["step"]
        lines.append(
            f"| {run['label']}{_noisy(run.get('noisy'))} | {_MODE_COLUMN[run['compile']].lower()} | {_num(run['load_s'], 2)} | {_num(run['first_call_s'], 2)} "
            f"| {_num(step['median_s'] * 1e3, 1)} | {_num(step['min_s'] * 1e3, 1)}-{_num(step['max_s'] * 1e3, 1)} "
            f"| {_stat(image['text_encoding'])} | {_stat(image['denoising'])} | {_stat(image['vae_decode'])} | {_num(image['total']['median_s'], 3)}{'' if image['measured'] else '*'} "
            f"| {_num(run['images_per_s'], 3)} | {_bytes(run['weights_bytes'])} | {_bytes(run['peak_step_bytes'])} | {_bytes(run['peak_image_bytes'])} | {_bytes(run['host_rss_peak_bytes'])} |"
        )
    return lines


def published_table(document: dict[str, Any]) -> list[str]:
    ref = document["published_reference_rtx_5090"]
    return [
        "Published reference (RTX 5090, 1024x1024, 4 steps, batch 1; see docs/benchmarks.md):",
        "",
        "| Model | Eager (s/img) | Compiled (s/img) | img/s | Peak GPU memory (GB) |",
        "|---|---|---|---|---|",
        f"| {document['variant']} | {_num(ref['eager_s'], 2)} | {_num(ref['compiled_s'], 2)} | {_num(ref['images_per_s'], 3)} | {_num(ref['peak_gb'], 2)} |",
    ]


def microbench_table(micro: dict[str, Any]) -> list[str]:
    """One row per shape, mode (and rotation); BF16 then, per INT8 backend, time, TOPS (% of peak) and INT8/BF16."""
    peak = micro["peak"]
    head = f"peak {peak['bf16_tflops']} BF16 TFLOPS / {peak['int8_tops']} INT8 TOPS dense ({peak['name']} datasheet)" if peak else "no datasheet peak known for this device"
    backends = micro["int8_backends"]
    rotated = micro.get("rotations", ["off"]) != ["off"]  # a Rotation column only where ConvRot rows were asked for
    columns = ["K", "N", "Layers", "M", "Mode", *(["Rotation"] if rotated else []), "BF16 (ms)", "BF16 TFLOPS"]
    for backend in backends:
        columns += [f"{backend} (ms)", f"{backend} TOPS", f"{backend}/BF16"]
    lines = [
        f"Int8Linear ({', '.join(backends)}) vs BF16 nn.Linear on {micro['device_name']}: {head}. TFLOPS/TOPS: % of that peak in parentheses.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for t in micro["timings"]:
        layers = t["layers"][0] + (f" (+{len(t['layers']) - 1})" if len(t["layers"]) > 1 else "") if t["layers"] else ""
        cells = [str(t["in_features"]), str(t["out_features"]), layers, str(t["tokens"]), "compiled" if t["compiled"] else "eager"]
        cells += [t.get("rotation", "off")] if rotated else []
        cells += [_num(t["bf16"]["median_s"] * 1e3, 3) + _noisy(t["bf16"].get("noisy")), _rate(t["bf16_tflops"], t["bf16_fraction_of_peak"])]
        for backend in backends:
            int8 = t["int8"][backend]
            cells += [_num(int8["time"]["median_s"] * 1e3, 3) + _noisy(int8["time"].get("noisy")), _rate(int8["tops"], int8["fraction_of_peak"]), _ratio(int8["speedup_vs_bf16"])]
        lines.append("| " + " | ".join(cells) + " |")
    if any(t["bf16"].get("noisy") or any(v["time"].get("noisy") for v in t["int8"].values()) for t in micro["timings"]):
        lines += ["", NOISY_NOTE]
    return lines


def _noisy(flag: bool | None) -> str:
    return f" {NOISY_MARK}" if flag else ""


def _rate(value: float, fraction_of_peak: float | None) -> str:
    return _num(value, 1) + ("" if fraction_of_peak is None else f" ({_percent(fraction_of_peak)})")


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / GB:.2f}"


def _stat(stats: dict[str, Any] | None) -> str:
    return "-" if stats is None else f"{stats['median_s']:.3f}"
