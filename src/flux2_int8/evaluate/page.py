"""report.html: one self-contained page of an evaluation, opened from disk in any browser.

Top to bottom: what ran (settings, date, device, versions, command), a bar chart per
metric across tasks and the velocity error per denoising step (inline SVG, see
`flux2_int8.charts`), the tables, then every case: its inputs, the reference, each
candidate and, next to it, its difference map. A click on any image shows it
full size (a few lines of plain JS; no network, no external asset). Every text from
outside (prompts, paths, names) is escaped.
"""

from __future__ import annotations

import html
from typing import Any

from ..charts import REFERENCE_COLOUR, Series, bar_chart, line_chart
from .tables import TASK_TITLES, fmt, provenance_lines, sections, settings_line, subsets, title_of

# (summary key, chart title, whether the reference has a bar: CLIP scores it against the prompt too)
CHARTS = (
    ("clip_s", "CLIP-S vs the prompt (higher is better)", True),
    ("lpips", "LPIPS vs the reference (lower is closer)", False),
    ("psnr", "PSNR vs the reference, dB (higher is closer)", False),
    ("fid", "FID vs the reference set (lower is closer)", False),
    ("kid_mean", "KID vs the reference set (lower is closer)", False),
    ("velocity_error", "Velocity relative error (lower is closer)", False),
    ("accuracy", "Prompt accuracy, nano (higher is better)", True),
)


def html_report(document: dict[str, Any]) -> str:
    """The page; images are linked by their path relative to it (the evaluation folder)."""
    body = [f"<h1>{_e(title_of(document))}</h1>", _header(document), "<h2>Charts</h2>", f"<div class=charts>{''.join(metric_charts(document))}</div>"]
    for title, (header, rows) in sections(document):
        body.append(f"<h2>{_e(title)}</h2>" + _html_table(header, rows))
    body.append("<h2>Metrics</h2><ul>" + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in document["metric_models"].items()) + "</ul>")
    if document["notes"]:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in document["notes"]) + "</ul>")
    body.append("<h2>Cases</h2><p class=hint>Click an image to see it full size. Difference maps are |candidate &minus; reference| per pixel, amplified by the gain shown (the same for every candidate of a case).</p>")
    body += [_case_html(case, document) for case in document["cases"]]
    return _PAGE.format(title=_e(title_of(document)), body="\n".join(body), style=_STYLE, script=_ZOOM_SCRIPT)


def _header(document: dict[str, Any]) -> str:
    lines = [settings_line(document).replace("`", ""), *provenance_lines(document)]
    return "<div class=run>" + "".join(f"<div>{_e(line)}</div>" for line in lines) + "</div>"


def metric_charts(document: dict[str, Any]) -> list[str]:
    """One bar chart per metric computed (groups: overall and each task; bars: models), then the per-step line chart."""
    groups = subsets(document)
    summary, reference = document["summary"], document["reference"]
    charts = []
    for key, title, with_reference in CHARTS:
        models = [reference, *document["candidates"]] if with_reference else list(document["candidates"])
        if not any(key in summary[group][model] for group in groups for model in models):
            continue
        series = [Series(_model_label(model, reference), [summary[group][model].get(key) for group in groups], REFERENCE_COLOUR if model == reference else None) for model in models]
        labels = [f"{TASK_TITLES.get(group, group)} ({summary[group][models[0]]['count']})" for group in groups]
        charts.append(bar_chart(title, labels, series, kind=key))
    steps = velocity_chart(document)
    return charts + ([steps] if steps else [])


def velocity_chart(document: dict[str, Any]) -> str | None:
    """The velocity error per denoising step, mean over all cases, one line per candidate."""
    overall = document["summary"]["overall"]
    models = [m for m in document["candidates"] if "velocity_error_per_step" in overall[m]]
    if not models:
        return None
    count = max(len(overall[m]["velocity_error_per_step"]) for m in models)
    series = [Series(m, overall[m]["velocity_error_per_step"]) for m in models]
    return line_chart("Velocity relative error per denoising step (mean over cases)", [str(k + 1) for k in range(count)], series, kind="velocity_per_step", x_title="denoising step")


def _model_label(model: str, reference: str) -> str:
    return f"{model} (reference)" if model == reference else model


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _case_html(case: dict[str, Any], document: dict[str, Any]) -> str:
    reference = document["reference"]
    cells = [_figure(path, f"input {k + 1}", case["input_prompts"][k] if k < len(case["input_prompts"]) else "") for k, path in enumerate(case["inputs"])]
    maps, gain = case.get("differences", {}), case.get("difference_gain")
    for model, path in case["images"].items():
        cells.append(_figure(path, _model_label(model, reference), _score_line(case["scores"].get(model, {}))))
        if model in maps:
            cells.append(_figure(maps[model], f"|{model} − {reference}| × {gain}", "difference map", kind="diff"))
    note = f" <span class=note>{_e(case['note'])}</span>" if case["note"] else ""
    return (
        f"<section class=case id='{_e(case['id'])}'><h3>{_e(case['id'])} <small>{_e(case['task'])}, seed {case['seed']}</small>{note}</h3>"
        f"<p class=prompt>{_e(case['prompt'])}</p><div class=grid>{''.join(cells)}</div></section>"
    )


def _figure(path: str, label: str, caption: str, kind: str = "image") -> str:
    return f"<figure class={kind}><img src='{_e(path)}' alt='{_e(label)}' loading=lazy class=zoomable><figcaption><b>{_e(label)}</b><br>{_e(caption)}</figcaption></figure>"


def _score_line(scores: dict[str, Any]) -> str:
    parts = []
    for key, label, pattern in (("clip_s", "CLIP-S", "{:.4f}"), ("lpips", "LPIPS", "{:.4f}"), ("psnr", "PSNR", "{:.2f} dB"), ("velocity_error", "vel. err", "{:.4f}")):
        if key in scores:
            parts.append(f"{label} {fmt(scores[key], pattern)}")
    return " · ".join(parts)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
.run { background: #f6f6f8; border: 1px solid #e2e2e6; border-radius: 4px; padding: 8px 12px; font-size: 13px; max-width: 1100px; }
.run div { overflow-wrap: anywhere; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { border: 1px solid #e2e2e6; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f3f3f3; }
.case { border-top: 1px solid #ddd; padding-top: 8px; }
.prompt { font-style: italic; }
.hint { color: #555; }
.note { background: #fff3c4; font-size: 12px; padding: 1px 6px; border-radius: 3px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 210px; }
figure img { width: 210px; height: auto; border: 1px solid #ccc; cursor: zoom-in; }
img.small { image-rendering: pixelated; }
figure.diff img { border-color: #b55; }
figcaption { font-size: 12px; }
#zoom { display: none; position: fixed; inset: 0; background: rgba(0, 0, 0, 0.85); z-index: 10; cursor: zoom-out; align-items: center; justify-content: center; flex-direction: column; }
#zoom.open { display: flex; }
#zoom img { max-width: 95vw; max-height: 88vh; min-width: min(512px, 95vw); background: white; }
#zoom p { color: #eee; margin: 8px; }
"""

# Click an image: shown over the page at up to the window's size; click or Escape closes it.
# Images smaller than they are shown (a tiny model's 64 px) are scaled up as sharp pixels, not blurred.
_ZOOM_SCRIPT = """
const sharpen = (img) => { if (img.naturalWidth && img.naturalWidth < 256) img.classList.add('small'); };
document.querySelectorAll('img.zoomable').forEach((img) => img.complete ? sharpen(img) : img.addEventListener('load', () => sharpen(img)));
const zoom = document.getElementById('zoom');
const zoomed = zoom.querySelector('img');
const caption = zoom.querySelector('p');
document.querySelectorAll('img.zoomable').forEach((img) => img.addEventListener('click', () => {
  zoomed.src = img.src;
  zoomed.className = img.naturalWidth < 256 ? 'small' : '';
  caption.textContent = img.alt;
  zoom.classList.add('open');
}));
zoom.addEventListener('click', () => zoom.classList.remove('open'));
document.addEventListener('keydown', (event) => { if (event.key === 'Escape') zoom.classList.remove('open'); });
"""

_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>{style}</style></head>
<body>
{body}
<div id=zoom role=dialog aria-label="full-size image"><img alt=""><p></p></div>
<script>{script}</script>
</body></html>
"""
