"""bench-<variant>.html: the bench report as a page, its charts first.

Charts (inline SVG, `flux2_int8.charts`): seconds per image per plan, one bar per
compile mode (eager vs compiled); the first call of each compiled mode (what compiling
costs); peak memory per plan; and, with --microbench, INT8's speed-up over BF16 per
layer shape. Every timing whose spread is wider than half its median is hatched and
marked. Below them the Markdown report, rendered as HTML from the same text, so the
page and report.md never disagree. No script, no external asset.
"""

from __future__ import annotations

import html
from typing import Any

from ..charts import PALETTE, Series, hbar_chart

MODE_TITLES = {"off": "Eager", "full": "Full compile", "regional": "Regional compile"}
MODE_COLOURS = dict(zip(MODE_TITLES, PALETTE))  # a mode keeps its colour from chart to chart
NOISY_MARK = "†"
NOISY_NOTE = f"{NOISY_MARK} noisy: the timing's spread (max - min) is wider than half its median; a ratio from it is unreliable (rerun with more --repeats on a quiet machine)."
GB = 1e9


def render_page(document: dict[str, Any], markdown: str) -> str:
    """The page of one bench document; `markdown` is `format_markdown(document)`."""
    blocks = markdown_blocks(markdown.splitlines()[1:])  # the first line is the title
    charts = bench_charts(document)
    section = f"<h2>Charts</h2><div class=charts>{''.join(charts)}</div>" if charts else ""
    body = blocks[:1] + [section] + blocks[1:]
    title = f"flux2-int8 bench: {document['variant']}"
    return _PAGE.format(title=_e(title), style=_STYLE, body="\n".join([f"<h1>{_e(title)}</h1>", *body]))


def bench_charts(document: dict[str, Any]) -> list[str]:
    charts = []
    rows = document["summary"]
    if rows:
        charts += [latency_chart(document), *([first_call_chart(document)] if _compiled_modes(document) else []), memory_chart(document)]
    if document.get("microbench") and document["microbench"]["timings"]:
        charts.append(microbench_chart(document["microbench"]))
    return charts


def _modes(document: dict[str, Any]) -> list[str]:
    present = {mode for row in document["summary"] for mode in row["s_per_image"]}
    return [mode for mode in MODE_TITLES if mode in present]


def _compiled_modes(document: dict[str, Any]) -> list[str]:
    return [mode for mode in _modes(document) if mode != "off"]


def latency_chart(document: dict[str, Any]) -> str:
    """Seconds per image, a row per plan, a bar per compile mode; noisy timings hatched."""
    rows = document["summary"]
    series = [Series(MODE_TITLES[mode], [row["s_per_image"].get(mode) for row in rows], MODE_COLOURS[mode], flags=[bool(row.get("noisy", {}).get(mode)) for row in rows]) for mode in _modes(document)]
    estimated = "" if all(row["image_latency_measured"] for row in rows) else " (estimated: steps x step latency)"
    return hbar_chart(f"Seconds per image, lower is faster{estimated}", [row["label"] for row in rows], series, kind="latency")


def first_call_chart(document: dict[str, Any]) -> str:
    rows = document["summary"]
    series = [Series(MODE_TITLES[mode], [row["first_call_s"].get(mode) for row in rows], MODE_COLOURS[mode]) for mode in _compiled_modes(document)]
    return hbar_chart("First call, seconds (compiling included)", [row["label"] for row in rows], series, kind="first_call")


def memory_chart(document: dict[str, Any]) -> str:
    rows = document["summary"]
    on_cuda = document["environment"]["device_type"] == "cuda"
    key, title = ("peak_device_gb", "Peak GPU memory, GB") if on_cuda else ("host_rss_peak_gb", "Peak host memory (RSS), GB")
    return hbar_chart(title, [row["label"] for row in rows], [Series("peak memory", [row[key] for row in rows])], kind="memory")


def microbench_chart(micro: dict[str, Any]) -> str:
    """INT8 over BF16 speed-up (BF16 time / INT8 time) per layer shape and backend; above 1 INT8 is faster."""
    timings = micro["timings"]
    groups = [f"{t['in_features']}x{t['out_features']} M={t['tokens']}{' compiled' if t['compiled'] else ''}{_rotated(t)}" for t in timings]
    series = [
        Series(backend, [t["int8"][backend]["speedup_vs_bf16"] for t in timings], flags=[bool(t["int8"][backend]["time"].get("noisy") or t["bf16"].get("noisy")) for t in timings])
        for backend in micro["int8_backends"]
    ]
    return hbar_chart("Int8Linear speed-up over BF16 nn.Linear (x, higher is faster)", groups, series, kind="microbench")


def _rotated(timing: dict[str, Any]) -> str:
    rotation = timing.get("rotation", "off")
    return "" if rotation == "off" else f" {rotation}"


def markdown_blocks(lines: list[str]) -> list[str]:
    """The report's Markdown as HTML blocks: tables, bullet lists, paragraphs (the only forms it uses)."""
    blocks: list[str] = []
    group: list[str] = []
    for line in [*lines, ""]:
        if line.strip() and (not group or _kind(line) == _kind(group[0])):
            group.append(line)
            continue
        if group:
            blocks.append(_block(group))
        group = [line] if line.strip() else []
    return blocks


def _kind(line: str) -> str:
    return "table" if line.startswith("|") else "list" if line.startswith("- ") else "text"


def _block(lines: list[str]) -> str:
    kind = _kind(lines[0])
    if kind == "list":
        return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"
    if kind == "text":
        return "<p>" + " ".join(_inline(line) for line in lines) + "</p>"
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if not set(line) <= set("|-: ")]
    head = "".join(f"<th>{_inline(cell)}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td{' class=noisy' if NOISY_MARK in cell else ''}>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses: **bold** and `code`."""
    parts = _e(text.replace("\\*", "*")).split("**")
    text = "".join(f"<b>{part}</b>" if k % 2 else part for k, part in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{part}</code>" if k % 2 else part for k, part in enumerate(parts))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
ul { padding-left: 20px; }
code { font-size: 12px; overflow-wrap: anywhere; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
svg.chart { border: 1px solid #e2e2e6; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f3f3f3; }
td.noisy { background: #fde8e8; }
"""

_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>{style}</style></head>
<body>
{body}
</body></html>
"""
