"""The server-side SVG plots: scales, calendar ticks, accessibility, and that text never escapes."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from appliance.web import plots

UTC = dt.UTC


def _points(values: list[float], start: dt.datetime, step: dt.timedelta, abnormal=()) -> list[plots.Point]:
    return [plots.Point(start + i * step, v, abnormal=i in abnormal) for i, v in enumerate(values)]


@given(st.floats(min_value=1e-6, max_value=1e9), st.integers(min_value=1, max_value=12))
def test_nice_step_is_one_two_two_and_a_half_or_five_times_a_power_of_ten(span, ticks):
    step = plots.nice_step(span, ticks)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))
    assert span / step <= ticks + 1e-9


@given(st.floats(min_value=-1e6, max_value=1e6), st.floats(min_value=1e-3, max_value=1e6))
def test_value_ticks_lie_inside_the_range_and_are_evenly_spaced(low, width):
    ticks = plots.value_ticks(low, low + width)
    assert ticks, (low, width)
    assert all(low - 1e-6 * width <= t <= low + width + 1e-6 * width for t in ticks)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(gaps) <= 1 or max(gaps) - min(gaps) < 1e-6 * max(1.0, width)


@given(st.floats(min_value=-1e6, max_value=1e6), st.floats(min_value=1e-3, max_value=1e6))
def test_tick_labels_name_each_tick_apart(low, width):
    """A 0.0025 step rounded to two decimals read '0, 0, 0.01, 0.01' (the bed turnover chart)."""
    ticks = plots.value_ticks(low, low + width)
    labels = plots.tick_labels(ticks)
    assert len(set(labels)) == len(ticks), (ticks, labels)
    assert all(math.isclose(float(label), tick, abs_tol=1e-9 + width * 1e-6)
               for label, tick in zip(labels, ticks, strict=True))


def test_a_chart_with_a_floor_has_no_axis_below_it():
    """A KPI of 0% every day was drawn on an axis from -1% to 1%: a percentage of none as if it could be negative."""
    start = dt.datetime(2026, 11, 1, 12, tzinfo=UTC)
    flat = [plots.Series("Discharges before noon", [plots.Point(start + dt.timedelta(days=d), 0.0) for d in range(5)])]
    labels = lambda chart: re.findall(r'text-anchor="end">([^<]+)</text>', str(chart))  # noqa: E731
    assert "-1" in labels(plots.time_chart(flat, ident="n", title="t", description="d", unit="%"))
    floored = labels(plots.time_chart(flat, ident="f", title="t", description="d", unit="%", floor=0))
    assert floored[0] == "0" and not any(label.startswith("-") for label in floored)
    assert labels(plots.time_chart([plots.Series("Bed turnover", [
        plots.Point(start, 0.0), plots.Point(start + dt.timedelta(days=1), 0.0102)])],
        ident="b", title="t", description="d", floor=0)) == ["0", "0.0025", "0.005", "0.0075", "0.01"]


def test_month_ticks_name_the_year_where_it_changes():
    ticks = plots.time_ticks(dt.datetime(2025, 11, 20, tzinfo=UTC), dt.datetime(2026, 11, 25, tzinfo=UTC), 8)
    labels = [label for _, label in ticks]
    assert labels[0].endswith("2025") or labels[0] == "Dec 2025"
    assert any(label.endswith("2026") for label in labels)
    assert sum(label.endswith("2026") for label in labels) == 1  # once, where the year turns


def test_hour_ticks_for_an_admission_day():
    ticks = plots.time_ticks(dt.datetime(2026, 3, 1, 6, 30, tzinfo=UTC), dt.datetime(2026, 3, 2, 6, tzinfo=UTC), 8)
    assert [label for _, label in ticks][:2] == ["09:00", "12:00"]


def test_a_chart_is_well_formed_accessible_svg_with_a_band_and_abnormal_diamonds():
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    svg = plots.time_chart([plots.Series("Haemoglobin", _points([9.1, 10.2, 12.4], start, dt.timedelta(days=30),
                                                                  abnormal={0, 1}))],
                           ident="hb", title="Haemoglobin over time", description="3 values", unit="g/dL",
                           band=(12, 16))
    root = ET.fromstring(str(svg))  # noqa: S314 -- our own output, parsed to check its shape
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img" and root.get("aria-labelledby") == "hb-t hb-d"
    assert root.find(f"{ns}title").text == "Haemoglobin over time"
    assert root.find(f"{ns}desc").text == "3 values"
    assert root.find(f".//{ns}rect[@class='plot-band']") is not None
    assert len(root.findall(f".//{ns}path[@class='abn']")) == 2  # shape as well as colour
    assert len(root.findall(f".//{ns}circle")) == 1
    assert "style=" not in str(svg)  # presentation comes from the stylesheet (CSP: no inline style)


def test_text_from_the_record_is_escaped_in_svg():
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    hostile = '</title><script>alert(1)</script>'
    svg = str(plots.time_chart([plots.Series(hostile, [plots.Point(start, 1.0, label=hostile)])], ident="x",
                               title=hostile, description=hostile, unit=hostile))
    assert "<script>" not in svg
    ET.fromstring(svg)  # noqa: S314 -- our own output: still well-formed
    spark = str(plots.sparkline(_points([1, 2], start, dt.timedelta(days=1)), ident="s", title=hostile))
    assert "<script>" not in spark


def test_empty_and_single_point_charts_do_not_fail():
    empty = plots.time_chart([], ident="e", title="Nothing", description="No values")
    assert "No values to plot" in str(empty)
    one = plots.time_chart([plots.Series("T", [plots.Point(dt.datetime(2026, 1, 1, tzinfo=UTC), 37.0)])],
                           ident="o", title="One", description="one", unit="°C")
    assert re.search(r"<circle cx=\"[\d.]+\" cy=\"[\d.]+\"", str(one))
    assert str(plots.sparkline([], ident="n", title="none")).endswith("</svg>")


def test_describe_trend_says_what_the_chart_shows():
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    text = plots.describe_trend("haemoglobin", _points([9.1, 12.4], start, dt.timedelta(days=31), abnormal={0}),
                                "g/dL", (12, 16))
    assert text == ("2 haemoglobin values from 01 Jan 2026 to 01 Feb 2026. Latest 12.4 g/dL; lowest 9.1, "
                    "highest 12.4. Reference range 12–16 g/dL; 1 outside it.")
