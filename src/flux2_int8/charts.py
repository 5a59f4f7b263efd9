"""Bar and line charts as inline SVG, for the eval report and the bench page.

Plain SVG written here rather than matplotlib: the charts are a few bars and a few
lines, the bench page must render on a bare GPU machine without the `eval` extra, and
SVG keeps every label as text (sharp at any zoom, searchable, and checkable by a test
that parses the page). Every chart carries its numbers: each bar or point has a
`data-value` attribute and a printed label, so nothing is read off an axis by eye.

Bars start at zero (a bar's length is its value); a value that cannot be drawn (None,
NaN, infinity) gets no bar, only its label ("∞", "n/a").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
REFERENCE_COLOUR = "#9a9a9a"
_FONT = "font-family='system-ui, sans-serif'"


@dataclass(frozen=True)
class Series:
    """One model (or mode): a value per group or per x position; None where there is none.

    `flags` marks values to draw hatched and label with a note (a noisy timing), one per value.
    """

    name: str
    values: Sequence[float | None]
    colour: str | None = None
    flags: Sequence[bool] = ()


@dataclass(frozen=True)
class ChartSize:
    width: int = 560
    height: int = 260
    left: int = 56
    right: int = 16
    top: int = 40
    bottom: int = 56

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


def drawable(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def significant(value: float) -> str:
    """Three significant digits, without an exponent between 0.001 and 100,000: a label, not a record (the tables have every digit)."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        digits = max(0, 2 - math.floor(math.log10(abs(value))))
        return f"{value:.{digits}f}"
    return f"{value:.2e}"


def label_of(value: float | None, fmt: Callable[[float], str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return fmt(value)


def bar_chart(title: str, groups: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str] = significant, kind: str = "", flag_note: str = "noisy", flag_mark: str = "†", layout: ChartSize = ChartSize()) -> str:
    """Grouped bars: one cluster per group (a task, a plan), one bar per series, each labelled with its value.

    Returns an `<svg class="chart">` element; `kind` goes to its `data-kind` attribute.
    """
    colours = _colours(series)
    slot = layout.plot_width / max(len(groups), 1)
    bar = min(48.0, slot * 0.8 / max(len(series), 1))
    labels = [fmt(v) for s in series for v in s.values if drawable(v)]
    upright = bar >= 6.5 * max(map(len, labels), default=0)  # else labels stand on end above their bars
    ticks = _ticks([v for s in series for v in s.values], 1.12 if upright else 1.4)
    y = _scale(ticks, layout)
    parts = [_frame(title, kind, layout), *_axis(ticks, y, layout)]
    parts += [_hatch(colour) for colour, item in zip(colours, series) if any(item.flags)]
    for g, group in enumerate(groups):
        start = layout.left + g * slot + (slot - bar * len(series)) / 2
        for s, item in enumerate(series):
            value = item.values[g] if g < len(item.values) else None
            flagged = g < len(item.flags) and item.flags[g]
            parts.append(_bar(start + s * bar, bar, value, y, colours[s], item.name, group, flagged, fmt, flag_note, flag_mark, upright))
        parts.append(_text(layout.left + (g + 0.5) * slot, layout.height - layout.bottom + 16, group, anchor="middle", size=12))
    parts.append(_legend(series, colours, layout, flagged=any(any(s.flags) for s in series), flag_note=f"{flag_mark} hatched: {flag_note}"))
    return "".join(parts) + "</svg>"


def hbar_chart(title: str, groups: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str] = significant, kind: str = "", flag_note: str = "noisy", flag_mark: str = "†", width: int = 580) -> str:
    """Horizontal grouped bars: a row per group (long names such as 'int8 (triton, fused q/k/v)' stay
    readable, and the chart grows with the rows), one bar per series, each labelled with its value."""
    colours = _colours(series)
    present = [item for item in series if any(v is not None for v in item.values)]  # a mode not run has no bars
    bar, gap = 16, 10
    left = min(260, 16 + 7 * max(map(len, groups), default=0))
    layout = ChartSize(width=width, height=0, left=left, right=90, top=40, bottom=0)
    rows_height = len(groups) * (len(present) * bar + gap)
    height = layout.top + rows_height + 52
    ticks = _ticks([v for s in series for v in s.values], 1.0, intervals=5)
    span = ticks[-1] - ticks[0]

    def x(value: float) -> float:
        return left + (value - ticks[0]) / span * layout.plot_width

    parts = [_frame(title, kind, ChartSize(width=width, height=height, left=left)), *[_hatch(colour) for colour, item in zip(colours, series) if any(item.flags)]]
    bottom = layout.top + rows_height
    for value in ticks:
        parts.append(f"<line x1='{x(value):.1f}' x2='{x(value):.1f}' y1='{layout.top}' y2='{bottom}' stroke='#e4e4e4'/>")
        parts.append(_text(x(value), bottom + 14, significant(value), anchor="middle", size=10, colour="#777"))
    parts.append(f"<line x1='{x(0.0):.1f}' x2='{x(0.0):.1f}' y1='{layout.top}' y2='{bottom}' stroke='#555'/>")
    top = float(layout.top)
    for g, group in enumerate(groups):
        parts.append(_text(left - 8, top + len(present) * bar / 2 + 4, group, anchor="end", size=12))
        for s, item in enumerate(present):
            value = item.values[g] if g < len(item.values) else None
            flagged = g < len(item.flags) and item.flags[g]
            parts.append(_hbar(top + s * bar, bar, value, x, colours[series.index(item)], item.name, group, flagged, fmt, flag_note, flag_mark))
        top += len(present) * bar + gap
    legend = ChartSize(width=width, height=height, left=left)
    parts.append(_legend(present, [colours[series.index(item)] for item in present], legend, flagged=any(any(s.flags) for s in series), flag_note=f"{flag_mark} hatched: {flag_note}"))
    return "".join(parts) + "</svg>"


def _hbar(y: float, height: float, value: float | None, x: Callable[[float], float], colour: str, name: str, group: str, flagged: bool, fmt: Callable[[float], str], flag_note: str, flag_mark: str) -> str:
    label = label_of(value, fmt) + (f" {flag_mark}" if flagged else "")
    zero = x(0.0)
    if not drawable(value):
        return _text(zero + 4, y + height - 4, label, size=11)
    end = x(value)
    fill = f"url(#hatch-{colour.lstrip('#')})" if flagged else colour
    note = f" ({flag_note})" if flagged else ""
    rect = (
        f"<rect class='bar' data-series='{escape(name)}' data-group='{escape(group)}' data-value='{value!r}' data-flagged='{str(flagged).lower()}' "
        f"x='{min(zero, end):.1f}' y='{y + 1:.1f}' width='{max(abs(end - zero), 1):.1f}' height='{height - 2:.1f}' fill='{fill}' stroke='{colour}'>"
        f"<title>{escape(name)}, {escape(group)}: {escape(label)}{escape(note)}</title></rect>"
    )
    return rect + _text(max(zero, end) + 4, y + height - 4, label, size=11)


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str] = significant, kind: str = "", x_title: str = "", layout: ChartSize = ChartSize()) -> str:
    """One line per series over the x positions, points marked; values printed while there are few points."""
    colours = _colours(series)
    ticks = _ticks([v for s in series for v in s.values], 1.12 + 0.06 * len(series))  # room for the point labels
    y = _scale(ticks, layout)
    count = max(len(x_labels), 1)
    step = layout.plot_width / count
    x = [layout.left + (i + 0.5) * step for i in range(count)]
    parts = [_frame(title, kind, layout), *_axis(ticks, y, layout)]
    every = max(1, math.ceil(count / 12))  # at most ~12 x labels
    for i, label in enumerate(x_labels):
        if i % every == 0 or i == count - 1:
            parts.append(_text(x[i], layout.height - layout.bottom + 16, label, anchor="middle", size=12))
    if x_title:
        parts.append(_text(layout.left + layout.plot_width / 2, layout.height - layout.bottom + 34, x_title, anchor="middle", size=12))
    for s, item in enumerate(series):
        points = [(x[i], y(v), v) for i, v in enumerate(item.values[:count]) if drawable(v)]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
            parts.append(f"<polyline class='line' data-series='{escape(item.name)}' points='{path}' fill='none' stroke='{colours[s]}' stroke-width='2'/>")
        for px, py, value in points:
            parts.append(f"<circle class='point' data-series='{escape(item.name)}' data-value='{value!r}' cx='{px:.1f}' cy='{py:.1f}' r='3.5' fill='{colours[s]}'><title>{escape(item.name)}: {escape(fmt(value))}</title></circle>")
            if count <= 8:
                parts.append(_text(px, py - 8 - 12 * s, fmt(value), anchor="middle", size=11, colour=colours[s]))
    parts.append(_legend(series, colours, layout))
    return "".join(parts) + "</svg>"


def _colours(series: Sequence[Series]) -> list[str]:
    cycle = iter(PALETTE * (len(series) // len(PALETTE) + 1))
    return [item.colour or next(cycle) for item in series]


def _ticks(values: Sequence[float | None], headroom: float = 1.12, intervals: int = 4) -> list[float]:
    """Gridline values: a round step (1, 2 or 5 times a power of ten), from zero (or below it) past the largest value."""
    finite = [v for v in values if drawable(v)]
    low, high = min([0.0, *finite]) * headroom, max([0.0, *finite]) * headroom
    if high == low:
        high = low + 1.0
    raw = (high - low) / intervals
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def _scale(ticks: Sequence[float], layout: ChartSize) -> Callable[[float], float]:
    low, high = ticks[0], ticks[-1]
    bottom, span = layout.top + layout.plot_height, high - low

    def y(value: float) -> float:
        return bottom - (value - low) / span * layout.plot_height

    return y


def _frame(title: str, kind: str, layout: ChartSize) -> str:
    return (
        f"<svg class='chart' data-kind='{escape(kind)}' xmlns='http://www.w3.org/2000/svg' width='{layout.width}' height='{layout.height}' "
        f"viewBox='0 0 {layout.width} {layout.height}' role='img' aria-label='{escape(title)}' {_FONT}>"
        f"<title>{escape(title)}</title><rect x='0' y='0' width='{layout.width}' height='{layout.height}' fill='white'/>"
        + _text(layout.left, 20, title, size=14, weight="600")
    )


def _axis(ticks: Sequence[float], y: Callable[[float], float], layout: ChartSize) -> list[str]:
    """A gridline and its value at each tick, and the zero line."""
    parts = []
    right = layout.width - layout.right
    for value in ticks:
        parts.append(f"<line x1='{layout.left}' x2='{right}' y1='{y(value):.1f}' y2='{y(value):.1f}' stroke='#e4e4e4'/>")
        parts.append(_text(layout.left - 6, y(value) + 4, significant(value), anchor="end", size=10, colour="#777"))
    parts.append(f"<line x1='{layout.left}' x2='{right}' y1='{y(0.0):.1f}' y2='{y(0.0):.1f}' stroke='#555'/>")
    return parts


def _bar(x: float, width: float, value: float | None, y: Callable[[float], float], colour: str, name: str, group: str, flagged: bool, fmt: Callable[[float], str], flag_note: str, flag_mark: str, upright: bool) -> str:
    label = label_of(value, fmt)
    zero = y(0.0)
    if not drawable(value):
        return _text(x + width / 2, zero - 4, label, anchor="middle", size=11)
    top = y(value)
    fill = f"url(#hatch-{colour.lstrip('#')})" if flagged else colour
    note = f" ({flag_note})" if flagged else ""
    rect = (
        f"<rect class='bar' data-series='{escape(name)}' data-group='{escape(group)}' data-value='{value!r}' data-flagged='{str(flagged).lower()}' "
        f"x='{x + 1:.1f}' y='{min(top, zero):.1f}' width='{max(width - 2, 1):.1f}' height='{abs(zero - top):.1f}' fill='{fill}' stroke='{colour}'>"
        f"<title>{escape(name)}, {escape(group)}: {escape(label)}{escape(note)}</title></rect>"
    )
    text = label + (f" {flag_mark}" if flagged else "")
    if upright:
        return rect + _text(x + width / 2, top - 4 if value >= 0 else top + 12, text, anchor="middle", size=11)
    edge = top - 4 if value >= 0 else top + 4
    return rect + _text(x + width / 2 + 4, edge, text, anchor="start" if value >= 0 else "end", size=11, rotate=True)


def _hatch(colour: str) -> str:
    """Diagonal stripes in the series colour: a flagged (noisy) value, visible without colour."""
    ident = colour.lstrip("#")
    return (
        f"<defs><pattern id='hatch-{ident}' patternUnits='userSpaceOnUse' width='6' height='6' patternTransform='rotate(45)'>"
        f"<rect width='6' height='6' fill='white'/><line x1='0' y1='0' x2='0' y2='6' stroke='{colour}' stroke-width='4'/></pattern></defs>"
    )


def _legend(series: Sequence[Series], colours: Sequence[str], layout: ChartSize, flagged: bool = False, flag_note: str = "") -> str:
    parts, x = [], float(layout.left)
    y = layout.height - 14
    for item, colour in zip(series, colours):
        parts.append(f"<rect x='{x:.1f}' y='{y - 10}' width='12' height='12' fill='{colour}'/>")
        parts.append(_text(x + 16, y, item.name, size=12))
        x += 28 + 7 * len(item.name)
    if flagged:
        parts.append(_text(x, y, flag_note, size=12, colour="#a00"))
    return f"<g class='legend'>{''.join(parts)}</g>"


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12, colour: str = "#222", weight: str = "400", rotate: bool = False) -> str:
    turn = f" transform='rotate(-90 {x:.1f} {y:.1f})'" if rotate else ""
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='{size}' font-weight='{weight}' fill='{colour}'{turn}>{escape(text)}</text>"
