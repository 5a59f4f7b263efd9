"""The report's tables, built once as rows of text: Markdown, HTML and the console render them.

The tables have the shape of the published model card (one row per metric, one column
per model, the reference first), repeated per task, then candidate against candidate
and the velocity error per step. The console summary turns it around (one row per task
and model, one column per metric) so it reads in a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..provenance import versions_line

TASK_TITLES = {"overall": "Overall", "t2i": "Text-to-image", "edit": "Editing", "composition": "Composition"}
DASH = "—"
# (key in the summary, label, format); the reference has no row in metrics against itself.
METRIC_ROWS = (
    ("clip_s", "CLIP-S (2.5·max(cos,0)) ↑", "{:.4f}"),
    ("clip_cosine", "CLIP cosine ↑", "{:.4f}"),
    ("lpips", "LPIPS ↓", "{:.4f}"),
    ("psnr", "PSNR ↑", "{:.2f} dB"),
    ("fid", "FID ↓", "{:.2f}"),
    ("kid_mean", "KID ↓", "{:.4f}"),
    ("velocity_error", "velocity rel. error ↓", "{:.4f}"),
    ("accuracy", "prompt accuracy ↑", "{:.1%}"),
    ("accuracy_background", "background colour ↑", "{:.1%}"),
    ("accuracy_colour", "object colour ↑", "{:.1%}"),
    ("accuracy_count", "object count ↑", "{:.1%}"),
    ("accuracy_shape", "shape ↑", "{:.1%}"),
)
Table = tuple[list[str], list[list[str]]]


def fmt(value: Any, pattern: str = "{:.4f}") -> str:
    if value is None:
        return DASH
    if isinstance(value, float) and math.isinf(value):
        return "∞ (identical)" if "dB" in pattern else "∞"
    return pattern.format(value)


def summary_table(document: dict[str, Any], subset: str) -> Table:
    """Rows of metrics, columns of models (reference first), for one subset."""
    reference, models = document["reference"], [document["reference"], *document["candidates"]]
    summary = document["summary"][subset]
    header = ["Metric", *(f"{m} (reference)" if m == reference else m for m in models)]
    rows = []
    for key, label, pattern in METRIC_ROWS:
        if not any(key in summary[m] for m in models):
            continue
        cells = [_metric_cell(summary[m], key, pattern) for m in models]
        rows.append([label, *cells])
    return header, rows


def _metric_cell(entry: dict[str, Any], key: str, pattern: str) -> str:
    if key == "kid_mean" and key in entry:
        return f"{entry['kid_mean']:.4f} ± {entry['kid_std']:.4f}"
    return fmt(entry.get(key), pattern)


def pairs_table(document: dict[str, Any]) -> Table | None:
    """Candidate against candidate, one row per pair and subset: how alike their images are, and who is closer to the reference."""
    header = ["Pair", "Cases", "PSNR between them", "LPIPS between them", "Closer to the reference (cases)"]
    rows = []
    for subset in ["overall", *document["suite"]["tasks"]]:
        for pair in document["pairs"][subset]:
            closer = pair.get("closer")
            wins = DASH if closer is None else f"{pair['a']} {closer[pair['a']]}, {pair['b']} {closer[pair['b']]}, tie {closer['tie']} (by {pair['closer_by']})"
            label = f"{pair['a']} vs {pair['b']}: {TASK_TITLES.get(subset, subset).lower()}"
            rows.append([label, str(pair["count"]), fmt(pair.get("psnr"), "{:.2f} dB"), fmt(pair.get("lpips")), wins])
    return (header, rows) if rows else None


def steps_table(document: dict[str, Any]) -> Table | None:
    summary = document["summary"]["overall"]
    columns = [m for m in document["candidates"] if "velocity_error_per_step" in summary[m]]
    if not columns:
        return None
    steps = max(len(summary[m]["velocity_error_per_step"]) for m in columns)
    rows = [[str(step + 1), *(fmt(_at(summary[m]["velocity_error_per_step"], step)) for m in columns)] for step in range(steps)]
    return ["Step", *columns], rows


def _at(values: Sequence[float], index: int) -> float | None:
    return values[index] if index < len(values) else None


def sections(document: dict[str, Any]) -> list[tuple[str, Table]]:
    """(title, table) in report order: overall, each task, candidate pairs, per-step fidelity."""
    suite = document["suite"]
    result = []
    for subset in ["overall", *suite["tasks"]]:
        count = suite["cases"] if subset == "overall" else suite["tasks"][subset]
        result.append((f"{TASK_TITLES.get(subset, subset)} ({count} case{'s' if count != 1 else ''})", summary_table(document, subset)))
    table = pairs_table(document)
    if table is not None:
        result.append(("Candidate vs candidate", table))
    table = steps_table(document)
    if table is not None:
        result.append(("Transformer fidelity per denoising step (mean over cases)", table))
    return result


def title_of(document: dict[str, Any]) -> str:
    return f"{', '.join(document['candidates'])} vs {document['reference']}"


def settings_line(document: dict[str, Any]) -> str:
    s = document.get("settings", {})
    parts = [f"suite `{document['suite']['name']}` ({document['suite']['cases']} cases)"]
    if s:
        parts += [f"base `{s['base']}`", f"{s['steps']} steps", f"guidance {s['guidance']}", f"{s['width']}x{s['height']}", s["dtype"]]
    models = s.get("models", {})
    parts += [f"{name} = `{path or 'the base transformer'}`" for name, path in models.items()]
    return "Settings: " + ", ".join(parts) + "."


def provenance_lines(document: dict[str, Any]) -> list[str]:
    """The run that scored (date, device, versions, command) and how many runs wrote the folder."""
    runs = document.get("runs") or []
    if not runs:
        return []
    run = runs[-1]
    device = run["device_name"] + (f", CUDA {run['cuda']}" if run.get("cuda") else "")
    lines = [f"Scored {run['date_utc']} on {run['device_type']} ({device})", versions_line(run["versions"]), f"Command: {run['command']}"]
    if len(runs) > 1:
        lines.append(f"{len(runs)} runs wrote this folder (images are reused across runs); run.json lists each one's date, device, versions and command")
    return lines


# Short column names for the console summary, in METRIC_ROWS order.
CONSOLE_LABELS = {"clip_s": "CLIP-S", "clip_cosine": "CLIP cos", "lpips": "LPIPS", "psnr": "PSNR", "fid": "FID", "kid_mean": "KID", "velocity_error": "vel. err", "accuracy": "accuracy", "accuracy_background": "bg colour", "accuracy_colour": "colour", "accuracy_count": "count", "accuracy_shape": "shape"}


def subsets(document: dict[str, Any]) -> list[str]:
    """'overall', then each task of the suite."""
    return ["overall", *document["suite"]["tasks"]]


def console_table(document: dict[str, Any]) -> Table:
    """One row per task and model (a model without a score in the run left out), one column per metric computed."""
    reference, models = document["reference"], [document["reference"], *document["candidates"]]
    summary = document["summary"]
    keys = [key for key, _, _ in METRIC_ROWS if any(key in summary[s][m] for s in summary for m in models)]
    patterns = {key: pattern for key, _, pattern in METRIC_ROWS}
    rows = []
    for subset in subsets(document):
        for model in models:
            entry = summary[subset][model]
            if not any(key in entry for key in keys):
                continue
            name = f"{model} (reference)" if model == reference else model
            rows.append([f"{subset} ({entry['count']})", name, *(_metric_cell(entry, key, patterns[key]) for key in keys)])
    return ["Task (cases)", "Model", *(CONSOLE_LABELS[key] for key in keys)], rows


def console_summary(document: dict[str, Any]) -> str:
    """The console table as aligned text, with a line saying what each column is measured against."""
    header, rows = console_table(document)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([f"Summary, mean over cases ({_against(header[2:], document['reference'])})", *lines])


def _against(columns: list[str], reference: str) -> str:
    """What the printed columns compare with: the reference's images, its image set, or the prompt."""
    pairs = [name for name in ("LPIPS", "PSNR", "vel. err") if name in columns]
    parts = [f"{', '.join(pairs)} against {reference}"] if pairs else []
    parts += [f"{'/'.join(n for n in ('FID', 'KID') if n in columns)} of each image set against {reference}'s"] if {"FID", "KID"} & set(columns) else []
    parts += ["CLIP against the prompt"] if "CLIP-S" in columns else []
    return "; ".join(parts)
