"""metrics.json, report.md and report.html from the metrics document.

The tables have the shape of the published model card (one row per metric, one column
per model, the reference first), repeated per task, then candidate against candidate
and the velocity error per step. Tables are built once as rows and rendered to Markdown
and HTML. report.html adds a grid per case: inputs, reference, candidates, with the
prompt and each image's scores.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..outputs import write_text_atomic
from .layout import to_json_value

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
)
Table = tuple[list[str], list[list[str]]]


def write_reports(document: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write metrics.json, report.md and report.html into `out`, each whole or not at all."""
    paths = {"json": out / "metrics.json", "markdown": out / "report.md", "html": out / "report.html"}
    _write_text(paths["json"], json.dumps(to_json_value(document), indent=2) + "\n")
    _write_text(paths["markdown"], markdown(document))
    _write_text(paths["html"], html_report(document))
    return paths


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


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# {_title(document)}", "", _settings_line(document), ""]
    for title, (header, rows) in sections(document):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += ["## Metrics", ""] + [f"- **{name}**: {text}" for name, text in document["metric_models"].items()] + [""]
    if document["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in document["notes"]] + [""]
    return "\n".join(lines)


def _title(document: dict[str, Any]) -> str:
    return f"{', '.join(document['candidates'])} vs {document['reference']}"


def _settings_line(document: dict[str, Any]) -> str:
    s = document.get("settings", {})
    parts = [f"suite `{document['suite']['name']}` ({document['suite']['cases']} cases)"]
    if s:
        parts += [f"base `{s['base']}`", f"{s['steps']} steps", f"guidance {s['guidance']}", f"{s['width']}x{s['height']}", s["dtype"]]
    models = s.get("models", {})
    parts += [f"{name} = `{path or 'the base transformer'}`" for name, path in models.items()]
    return "Settings: " + ", ".join(parts) + "."


def html_report(document: dict[str, Any]) -> str:
    """One self-contained page; images are linked by their path relative to the page."""
    body = [f"<h1>{_e(_title(document))}</h1>", f"<p>{_e(_settings_line(document).replace('`', ''))}</p>"]
    for title, (header, rows) in sections(document):
        body.append(f"<h2>{_e(title)}</h2>" + _html_table(header, rows))
    body.append("<h2>Metrics</h2><ul>" + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in document["metric_models"].items()) + "</ul>")
    if document["notes"]:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in document["notes"]) + "</ul>")
    body.append("<h2>Cases</h2>")
    body += [_case_html(case, document) for case in document["cases"]]
    return _PAGE.format(title=_e(_title(document)), body="\n".join(body))


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _case_html(case: dict[str, Any], document: dict[str, Any]) -> str:
    reference = document["reference"]
    cells = [_figure(path, f"input {k + 1}", case["input_prompts"][k] if k < len(case["input_prompts"]) else "") for k, path in enumerate(case["inputs"])]
    for model, path in case["images"].items():
        label = f"{model} (reference)" if model == reference else model
        cells.append(_figure(path, label, _score_line(case["scores"].get(model, {}))))
    note = f" <span class=note>{_e(case['note'])}</span>" if case["note"] else ""
    return (
        f"<section class=case id='{_e(case['id'])}'><h3>{_e(case['id'])} <small>{_e(case['task'])}, seed {case['seed']}</small>{note}</h3>"
        f"<p class=prompt>{_e(case['prompt'])}</p><div class=grid>{''.join(cells)}</div></section>"
    )


def _figure(path: str, label: str, caption: str) -> str:
    return f"<figure><img src='{_e(path)}' alt='{_e(label)}' loading=lazy><figcaption><b>{_e(label)}</b><br>{_e(caption)}</figcaption></figure>"


def _score_line(scores: dict[str, Any]) -> str:
    parts = []
    for key, label, pattern in (("clip_s", "CLIP-S", "{:.4f}"), ("lpips", "LPIPS", "{:.4f}"), ("psnr", "PSNR", "{:.2f} dB"), ("velocity_error", "vel. err", "{:.4f}")):
        if key in scores:
            parts.append(f"{label} {fmt(scores[key], pattern)}")
    return " · ".join(parts)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _write_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
thead {{ background: #f3f3f3; }}
.case {{ border-top: 1px solid #ddd; padding-top: 8px; }}
.prompt {{ font-style: italic; }}
.note {{ background: #fff3c4; font-size: 12px; padding: 1px 6px; border-radius: 3px; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: 210px; }}
figure img {{ width: 210px; height: auto; image-rendering: auto; border: 1px solid #ccc; }}
figcaption {{ font-size: 12px; }}
</style></head>
<body>
{body}
</body></html>
"""
