"""`flux2_int8.charts`: every value is in the SVG as a bar or point with its number; odd values get labels, not bars."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest

from flux2_int8.charts import Series, bar_chart, hbar_chart, line_chart, significant


class Shapes(HTMLParser):
    """The bars, points and texts of one SVG."""

    def __init__(self, text: str):
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.points: list[dict[str, str]] = []
        self.texts: list[str] = []
        self._in_text = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "rect" and attributes.get("class") == "bar":
            self.bars.append(attributes)
        elif tag == "circle" and attributes.get("class") == "point":
            self.points.append(attributes)
        self._in_text = tag == "text"

    def handle_data(self, data):
        if self._in_text:
            self.texts.append(data)

    def handle_endtag(self, tag):
        self._in_text = False


def test_bar_chart_draws_each_finite_value_once_and_labels_the_rest():
    series = [Series("int8", [0.25, math.inf, None]), Series("fp8", [0.125, 0.5, math.nan])]
    shapes = Shapes(bar_chart("PSNR", ["overall", "t2i", "edit"], series, kind="psnr"))
    drawn = {(bar["data-series"], bar["data-group"]): float(bar["data-value"]) for bar in shapes.bars}
    assert drawn == {("int8", "overall"): 0.25, ("fp8", "overall"): 0.125, ("fp8", "t2i"): 0.5}
    assert "∞" in shapes.texts and shapes.texts.count("n/a") == 2
    assert {"0.250", "0.125", "0.500"} <= set(shapes.texts)


def test_bar_lengths_are_proportional_to_values_from_zero():
    shapes = Shapes(bar_chart("t", ["a", "b"], [Series("s", [1.0, 3.0])]))
    heights = [float(bar["height"]) for bar in shapes.bars]
    assert heights[1] == pytest.approx(3 * heights[0], rel=1e-2)


def test_flagged_values_are_hatched_marked_and_explained():
    svg = hbar_chart("s/img", ["bf16", "int8 (triton, fused q/k/v)"], [Series("Eager", [2.0, 1.0], flags=[False, True])])
    shapes = Shapes(svg)
    flagged = {bar["data-group"]: bar["data-flagged"] for bar in shapes.bars}
    assert flagged == {"bf16": "false", "int8 (triton, fused q/k/v)": "true"}
    assert "1.00 †" in shapes.texts and any("hatched: noisy" in text for text in shapes.texts)
    assert "url(#hatch-" in next(bar["fill"] for bar in shapes.bars if bar["data-flagged"] == "true")


def test_negative_values_hang_below_the_zero_line():
    shapes = Shapes(bar_chart("KID", ["overall"], [Series("int8", [-0.01]), Series("fp8", [0.02])]))
    low, high = (next(b for b in shapes.bars if b["data-series"] == name) for name in ("int8", "fp8"))
    assert float(low["y"]) == pytest.approx(float(high["y"]) + float(high["height"]), abs=0.2)  # both meet at zero


def test_line_chart_has_a_point_per_step_and_series():
    shapes = Shapes(line_chart("velocity", ["1", "2", "3", "4"], [Series("int8", [0.04, 0.03, 0.02, 0.01]), Series("fp8", [0.02, 0.02, 0.01, 0.01])]))
    assert [float(p["data-value"]) for p in shapes.points if p["data-series"] == "int8"] == [0.04, 0.03, 0.02, 0.01]
    assert len(shapes.points) == 8


def test_significant_keeps_three_digits_without_exponents_in_the_usual_range():
    assert [significant(v) for v in (0.0, 0.061534, 22.3412, 1234.6, 2.5e-05)] == ["0", "0.0615", "22.3", "1235", "2.50e-05"]
