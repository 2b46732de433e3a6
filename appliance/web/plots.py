"""Charts a clinician would rather look at than read — a result's trend, vital signs over an admission —
drawn on the server as inline SVG.

No plotting library and no script: the page arrives with its pictures, reads with JavaScript off, and
passes the CSP (presentation comes from classes in healthos.css, never a `style` attribute). Each chart
is an `<svg role="img">` named by its `<title>` and summarised in words by its `<desc>`, and each point
carries its own `<title>` (the browser shows it on hover; screen readers can reach it). Pages put the
same numbers in a table beside the chart, so nothing is only in the picture.

Abnormal points are drawn as diamonds as well as in the alert colour, so the flag does not rest on
colour alone.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Point:
    at: dt.datetime
    value: float
    label: str = ""  # what the point's tooltip says, e.g. "12 Mar 2025: 9.8 g/dL (L)"
    abnormal: bool = False


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    css: str = "s1"  # colour class in healthos.css: s1..s4


def nice_step(span: float, target_ticks: int) -> float:
    """A 1, 2, 2.5 or 5 × 10^n step that cuts `span` into about `target_ticks` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(target_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def value_ticks(low: float, high: float, target_ticks: int = 5) -> list[float]:
    step = nice_step(high - low, target_ticks)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """The value axis's labels, with as many decimals as the step between ticks needs: rounded to two, a
    0.0025 step read '0, 0, 0.01, 0.01', four ticks under two names."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = next((d for d in range(7) if abs(round(step, d) - step) <= abs(step) * 1e-6), 6)
    if decimals == 0:
        return [_format_number(round(t)) for t in ticks]
    return [f"{t:.{decimals}f}".rstrip("0").rstrip(".") for t in ticks]


_HOURLY = [1, 3, 6, 12]
_DAILY = [1, 2, 7, 14]
_MONTHLY = [1, 2, 3, 6, 12]


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.month - 1 + months
    return dt.date(day.year + index // 12, index % 12 + 1, 1)


def time_ticks(start: dt.datetime, end: dt.datetime, max_ticks: int) -> list[tuple[dt.datetime, str]]:
    """Calendar-aligned ticks between two times: hours, days, weeks or months, whichever fits."""
    span = (end - start).total_seconds()
    tz = start.tzinfo
    for hours in _HOURLY:
        if span / (hours * 3600) <= max_ticks:
            first = start.replace(minute=0, second=0, microsecond=0)
            first += dt.timedelta(hours=(-first.hour) % hours)
            if first < start:
                first += dt.timedelta(hours=hours)
            ticks = []
            at = first
            while at <= end:
                ticks.append((at, at.strftime("%H:%M") if at.hour else at.strftime("%d %b")))
                at += dt.timedelta(hours=hours)
            return ticks
    for days in _DAILY:
        if span / (days * 86400) <= max_ticks:
            at = dt.datetime.combine(start.date(), dt.time(), tzinfo=tz)
            if days == 7:
                at -= dt.timedelta(days=at.weekday())  # weeks start on Monday
            if at < start:
                at += dt.timedelta(days=days)
            ticks = []
            while at <= end:
                ticks.append((at, at.strftime("%d %b")))
                at += dt.timedelta(days=days)
            return ticks
    for months in _MONTHLY:
        if span / (months * 30.44 * 86400) <= max_ticks:
            day = _add_months(start.date().replace(day=1), 1 if start.day > 1 or start.hour else 0)
            ticks = []
            while (at := dt.datetime.combine(day, dt.time(), tzinfo=tz)) <= end:
                # The year is named on the first tick and wherever it changes, so "Dec" is never ambiguous.
                new_year = not ticks or ticks[-1][0].year != at.year
                ticks.append((at, at.strftime("%b %Y") if new_year else at.strftime("%b")))
                day = _add_months(day, months)
            return ticks
    return [(start, str(start.year)), (end, str(end.year))]


def _diamond(x: float, y: float, r: float) -> str:
    return f"M{x:.1f},{y - r:.1f} L{x + r:.1f},{y:.1f} L{x:.1f},{y + r:.1f} L{x - r:.1f},{y:.1f} Z"


def _marker(x: float, y: float, tip: str, abnormal: bool) -> str:
    """A point with its tooltip: a diamond when abnormal (the flag does not rest on colour alone)."""
    title = f"<title>{escape(tip)}</title>"
    if abnormal:
        return f'<path class="abn" d="{_diamond(x, y, 5.5)}">{title}</path>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5">{title}</circle>'


def time_chart(
    series: Sequence[Series],
    *,
    ident: str,
    title: str,
    description: str,
    unit: str = "",
    band: tuple[float | None, float | None] | None = None,
    width: int = 640,
    height: int = 220,
    floor: float | None = None,
) -> Markup:
    """A line chart of values over time: axes with calendar ticks, a shaded reference range, a line
    per series and a marker per point (diamonds for abnormal ones). With `floor`, the value axis does not
    go below it: a percentage of none read as a line between -1% and 1%."""
    points = [p for s in series for p in s.points]
    legend = len(series) > 1
    # A header row above the plot area holds the unit (left) and the legend (right of the axis).
    left, right, top, bottom = 48, 12, 26 if unit or legend else 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    parts: list[str] = [
        f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" focusable="false" '
        f'aria-labelledby="{ident}-t {ident}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(description)}</desc>',
    ]
    if not points:
        parts.append(f'<text class="plot-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "No values to plot</text></svg>")
        return Markup("".join(parts))  # noqa: S704 -- every interpolated text above went through escape()

    times = [p.at for p in points]
    start, end = min(times), max(times)
    if end - start < dt.timedelta(hours=2):
        start, end = start - dt.timedelta(hours=12), end + dt.timedelta(hours=12)
    else:
        pad = (end - start) * 0.03
        start, end = start - pad, end + pad
    values = [p.value for p in points]
    band_low, band_high = band or (None, None)
    extent = values + [v for v in (band_low, band_high) if v is not None]
    low, high = min(extent), max(extent)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.08
    low, high = low - margin, high + margin
    if floor is not None:
        low = max(low, floor)
    ticks = value_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])

    def x_of(at: dt.datetime) -> float:
        return left + (at - start).total_seconds() / (end - start).total_seconds() * plot_w

    def y_of(value: float) -> float:
        return top + (high - value) / (high - low) * plot_h

    if band_low is not None or band_high is not None:
        y1 = y_of(band_high if band_high is not None else high)
        y2 = y_of(band_low if band_low is not None else low)
        parts.append(f'<rect class="plot-band" x="{left}" y="{y1:.1f}" width="{plot_w}" height="{y2 - y1:.1f}">'
                     f"<title>Reference range {escape(_range_text(band_low, band_high, unit))}</title></rect>")
    parts.append('<g class="plot-grid">')
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
    parts.append("</g>")
    parts.append('<g class="plot-axis">')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    for tick, label in zip(ticks, tick_labels(ticks), strict=True):
        parts.append(f'<text x="{left - 6}" y="{y_of(tick) + 4:.1f}" text-anchor="end">{label}</text>')
    for at, label in time_ticks(start, end, max(2, plot_w // 80)):
        x = x_of(at)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle">{escape(label)}</text>')
    if unit:
        parts.append(f'<text class="plot-unit" x="4" y="13">{escape(unit)}</text>')
    parts.append("</g>")

    for index, line in enumerate(series):
        ordered = sorted(line.points, key=lambda p: p.at)
        if not ordered:
            continue
        css = escape(line.css)
        path = " ".join(f"{'M' if i == 0 else 'L'}{x_of(p.at):.1f},{y_of(p.value):.1f}" for i, p in enumerate(ordered))
        parts.append(f'<path class="plot-line {css}" d="{path}"/>')
        parts.append(f'<g class="plot-points {css}">')
        for p in ordered:
            x, y = x_of(p.at), y_of(p.value)
            parts.append(_marker(x, y, p.label or f"{line.name}: {_format_number(p.value)} {unit}".strip(), p.abnormal))
        parts.append("</g>")
        if legend:
            lx = left + 24 + index * 110
            parts.append(f'<g class="plot-legend {css}"><line x1="{lx}" x2="{lx + 18}" y1="9" y2="9"/>'
                         f'<text x="{lx + 24}" y="13">{escape(line.name)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every interpolated text above went through escape()


def sparkline(points: Sequence[Point], *, ident: str, title: str,
              band: tuple[float | None, float | None] | None = None, width: int = 120, height: int = 30) -> Markup:
    """A word-sized trend for a table cell: the reference band, the line and the latest point."""
    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" focusable="false" '
             f'aria-labelledby="{ident}-t" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{ident}-t">{escape(title)}</title>']
    ordered = sorted(points, key=lambda p: p.at)
    if len(ordered) < 2:
        parts.append("</svg>")
        return Markup("".join(parts))  # noqa: S704 -- escaped above
    band_low, band_high = band or (None, None)
    extent = [p.value for p in ordered] + [v for v in (band_low, band_high) if v is not None]
    low, high = min(extent), max(extent)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    start, end = ordered[0].at, ordered[-1].at
    span = max((end - start).total_seconds(), 1.0)
    pad = 3

    def x_of(at: dt.datetime) -> float:
        return pad + (at - start).total_seconds() / span * (width - 2 * pad)

    def y_of(value: float) -> float:
        return pad + (high - value) / (high - low) * (height - 2 * pad)

    if band_low is not None or band_high is not None:
        y1 = y_of(band_high if band_high is not None else high)
        y2 = y_of(band_low if band_low is not None else low)
        parts.append(f'<rect class="plot-band" x="0" y="{y1:.1f}" width="{width}" height="{y2 - y1:.1f}"/>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x_of(p.at):.1f},{y_of(p.value):.1f}" for i, p in enumerate(ordered))
    parts.append(f'<path class="plot-line s1" d="{path}"/>')
    last = ordered[-1]
    if last.abnormal:
        parts.append(f'<path class="abn" d="{_diamond(x_of(last.at), y_of(last.value), 3.5)}"/>')
    else:
        parts.append(f'<circle class="last" cx="{x_of(last.at):.1f}" cy="{y_of(last.value):.1f}" r="2.5"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- escaped above


def _range_text(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        text = f"{_format_number(low)}–{_format_number(high)}"
    elif low is not None:
        text = f"≥ {_format_number(low)}"
    elif high is not None:
        text = f"≤ {_format_number(high)}"
    else:
        text = "none"
    return f"{text} {unit}".strip()


def describe_trend(name: str, points: Sequence[Point], unit: str, band: tuple[float | None, float | None] | None,
                   when: str = "%d %b %Y") -> str:
    """The chart in one or two sentences, for its `<desc>`: how many values, over what period, the
    latest, the lowest and highest, and how many fell outside the reference range."""
    if not points:
        return f"No {name} values recorded."
    ordered = sorted(points, key=lambda p: p.at)
    values = [p.value for p in ordered]
    last = ordered[-1]
    abnormal = sum(1 for p in ordered if p.abnormal)
    text = (f"{len(ordered)} {name} value{'s' if len(ordered) != 1 else ''} from {ordered[0].at.strftime(when)} "
            f"to {last.at.strftime(when)}. Latest {_format_number(last.value)} {unit}".rstrip())
    text += f"; lowest {_format_number(min(values))}, highest {_format_number(max(values))}."
    if band and (band[0] is not None or band[1] is not None):
        text += f" Reference range {_range_text(band[0], band[1], unit)}; {abnormal} outside it."
    return text


def _value_axis(ticks: Sequence[float], y_of: Callable[[float], float], left: float, plot_w: float, top: float,
                plot_h: float, *, baseline: float) -> list[str]:
    """The grid lines at the value ticks, the value axis with its labels and the horizontal axis at
    `baseline`; opens `<g class="plot-axis">`, which the caller closes after adding its own labels."""
    return ['<g class="plot-grid">',
            *(f'<line x1="{left}" x2="{left + plot_w}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}"/>' for t in ticks),
            '</g><g class="plot-axis">',
            f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>',
            f'<line x1="{left}" x2="{left + plot_w}" y1="{baseline:.1f}" y2="{baseline:.1f}"/>',
            *(f'<text x="{left - 6}" y="{y_of(t) + 4:.1f}" text-anchor="end">{label}</text>'
              for t, label in zip(ticks, tick_labels(ticks), strict=True))]


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar, e.g. "31–60 days"
    value: float
    title: str = ""  # the bar's tooltip, e.g. "31–60 days: KES 12,400.00 in 3 invoices"
    css: str = "s1"  # colour class in healthos.css: s1..s4
    shown: str = ""  # what is written above the bar, e.g. "12,400.00"; the bare value when empty


def bar_chart(bars: Sequence[Bar], *, ident: str, title: str, description: str, unit: str = "",
              width: int = 640, height: int = 240) -> Markup:
    """Vertical bars from a zero baseline (a receivable can be negative: a credit owed back), with the
    value written above each bar so the figure does not rest on reading the axis."""
    left, right, top, bottom = 64, 12, 26 if unit else 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="plot bars" viewBox="0 0 {width} {height}" role="img" focusable="false" '
             f'aria-labelledby="{ident}-t {ident}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{ident}-t">{escape(title)}</title>', f'<desc id="{ident}-d">{escape(description)}</desc>']
    if not bars:
        parts.append(f'<text class="plot-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "Nothing to chart</text></svg>")
        return Markup("".join(parts))  # noqa: S704 -- every interpolated text above went through escape()
    values = [b.value for b in bars]
    low, high = min(0.0, *values), max(0.0, *values)
    if high - low < 1e-9:
        high = low + 1
    ticks = value_ticks(low, high + (high - low) * 0.12)
    low, high = min(low, ticks[0]), max(high, ticks[-1])

    def y_of(value: float) -> float:
        return top + (high - value) / (high - low) * plot_h

    parts.extend(_value_axis(ticks, y_of, left, plot_w, top, plot_h, baseline=y_of(0)))
    if unit:
        parts.append(f'<text class="plot-unit" x="4" y="13">{escape(unit)}</text>')
    slot = plot_w / len(bars)
    for index, bar in enumerate(bars):  # labels under the axis
        middle = left + index * slot + slot * 0.5
        parts.append(f'<text x="{middle:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{escape(bar.label)}</text>')
    parts.append("</g>")
    for index, bar in enumerate(bars):
        x = left + index * slot + slot * 0.18
        y0, y1 = sorted((y_of(0), y_of(bar.value)))
        tip = escape(bar.title or f"{bar.label}: {_format_number(bar.value)} {unit}".strip())
        parts.append(f'<rect class="plot-bar {escape(bar.css)}" x="{x:.1f}" y="{y0:.1f}" width="{slot * 0.64:.1f}" '
                     f'height="{max(y1 - y0, 0.5):.1f}"><title>{tip}</title></rect>')
        parts.append(f'<text class="plot-bar-value" x="{x + slot * 0.32:.1f}" y="{y0 - 5:.1f}" text-anchor="middle">'
                     f"{escape(bar.shown or _format_number(bar.value))}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every interpolated text above went through escape()


@dataclass(frozen=True)
class AgePoint:
    months: float  # the child's age at the measurement
    value: float
    label: str = ""  # the point's tooltip, e.g. "12 Mar 2026, 14 months: 7.9 kg, WAZ -2.4 (underweight)"
    abnormal: bool = False


# The WHO lines a growth chart draws, by z-score: their class in growth.css and the label at their end.
GROWTH_LINES = {-3: ("sd3", "-3"), -2: ("sd2", "-2"), 0: ("median", "0"), 2: ("sd2", "+2"), 3: ("sd3", "+3")}


def _age_label(months: float) -> str:
    return f"{_format_number(months)} m" if months < 24 else f"{_format_number(months / 12)} y"


def growth_chart(curves: Sequence[tuple[int, Sequence[tuple[float, float]]]], points: Sequence[AgePoint], *,
                 ident: str, title: str, description: str, unit: str, width: int = 640,
                 height: int = 300) -> Markup:
    """A WHO growth chart: the standard's median and ±2, ±3 SD lines against age (`curves`, each a z-score
    and its (months, value) pairs) and the child's measurements over them, a diamond where the child's
    z-score lies beyond ±2."""
    left, right, top, bottom = 48, 28, 26, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    parts: list[str] = [
        f'<svg class="plot growth" viewBox="0 0 {width} {height}" role="img" focusable="false" '
        f'aria-labelledby="{ident}-t {ident}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(description)}</desc>',
    ]
    drawn = [xy for _, line in curves for xy in line] + [(p.months, p.value) for p in points]
    if not drawn:
        parts.append(f'<text class="plot-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "No values to plot</text></svg>")
        return Markup("".join(parts))  # noqa: S704 -- every interpolated text above went through escape()
    x_low, x_high = 0.0, max(x for x, _ in drawn)
    low, high = min(v for _, v in drawn), max(v for _, v in drawn)
    margin = (high - low) * 0.05 or 1
    ticks = value_ticks(low - margin, high + margin)
    low, high = min(low - margin, ticks[0]), max(high + margin, ticks[-1])

    def x_of(months: float) -> float:
        return left + (months - x_low) / max(x_high - x_low, 1) * plot_w

    def y_of(value: float) -> float:
        return top + (high - value) / (high - low) * plot_h

    parts.extend(_value_axis(ticks, y_of, left, plot_w, top, plot_h, baseline=top + plot_h))
    step = 6 if x_high <= 60 else 12 if x_high <= 120 else 24
    for months in range(0, int(x_high) + 1, step):
        x = x_of(months)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle">{_age_label(months)}</text>')
    parts.append(f'<text class="plot-unit" x="4" y="13">{escape(unit)}</text>')
    parts.append("</g>")
    for z, line in curves:
        if not line:
            continue
        css, label = GROWTH_LINES[z]
        path = " ".join(f"{'M' if i == 0 else 'L'}{x_of(x):.1f},{y_of(v):.1f}" for i, (x, v) in enumerate(line))
        end_x, end_v = line[-1]
        parts.append(f'<path class="growth-ref {css}" d="{path}"><title>WHO {label} SD</title></path>')
        parts.append(f'<text class="growth-ref-label" x="{x_of(end_x) + 4:.1f}" y="{y_of(end_v) + 4:.1f}">'
                     f"{label}</text>")
    ordered = sorted(points, key=lambda p: p.months)
    if ordered:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x_of(p.months):.1f},{y_of(p.value):.1f}"
                        for i, p in enumerate(ordered))
        parts.append(f'<path class="plot-line s1" d="{path}"/><g class="plot-points s1">')
        for p in ordered:
            x, y = x_of(p.months), y_of(p.value)
            parts.append(_marker(x, y, p.label or f"{_age_label(p.months)}: {_format_number(p.value)} {unit}",
                                 p.abnormal))
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every interpolated text above went through escape()
