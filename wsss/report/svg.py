"""Inline SVG plots for the run report: grouped bar charts and line charts, no plotting library.

Every chart is a self-contained ``<svg class="plot">`` string; its data marks (bars, lines,
points) carry the class ``mark`` so a browser test can check that a chart is not empty.
"""

from __future__ import annotations

import math
from html import escape
from typing import Optional, Sequence

# Tableau 10: distinguishable categorical colours for series.
SERIES_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                  "#9c755f", "#bab0ac"]

FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def series_colour(index: int) -> str:
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def format_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _legend(names: Sequence[str], x: float, y: float, colours: Sequence[str]) -> list[str]:
    """One row of colour swatches with names, starting at (x, y)."""
    parts, cursor = [], x
    for name, colour in zip(names, colours):
        parts.append(f'<rect x="{cursor:.1f}" y="{y - 9:.1f}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{cursor + 16:.1f}" y="{y + 1:.1f}" {FONT}>{escape(name)}</text>')
        cursor += 16 + 7 * len(name) + 18
    return parts


def _frame(width: float, height: float, title: str, plot_id: str) -> str:
    return (f'<svg class="plot" data-plot="{escape(plot_id)}" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<rect width="100%" height="100%" fill="#fff"/>')


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[Optional[float]]], title: str, plot_id: str,
              y_label: str = "IoU (%)", y_max: Optional[float] = 100.0) -> str:
    """Grouped vertical bars: one group per category, one bar per series (None = no bar).

    ``series`` maps a series name to one value per category. The chart widens with the number of
    bars so each stays at least a few pixels wide.
    """
    names = list(series)
    values = [v for vs in series.values() for v in vs if v is not None]
    top = y_max if y_max is not None else (max(values) if values else 1.0)
    ticks = nice_ticks(0.0, top)
    top = ticks[-1]
    bar_w = max(4.0, min(10.0, 48.0 / max(len(names), 1)))
    group_w = bar_w * len(names) + 10
    left, right, upper, lower = 52, 16, 44, 84
    width = max(640.0, left + right + group_w * len(categories))
    plot_h = 220
    height = upper + plot_h + lower
    y = lambda v: upper + plot_h * (1 - v / top)  # noqa: E731 - a local coordinate map
    parts = [_frame(width, height, title, plot_id)]
    parts.append(f'<text x="{left}" y="18" {FONT} font-weight="600">{escape(title)}</text>')
    parts += _legend(names, left, 34, [series_colour(i) for i in range(len(names))])
    for tick in ticks:
        parts.append(f'<line x1="{left}" x2="{width - right:.1f}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" {FONT}>{format_tick(tick)}</text>')
    parts.append(f'<text transform="translate(14 {upper + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
                 f'{FONT}>{escape(y_label)}</text>')
    for c, category in enumerate(categories):
        x0 = left + c * group_w + 5
        for s, name in enumerate(names):
            value = series[name][c]
            if value is None:
                continue
            bar_top = y(max(0.0, min(value, top)))
            parts.append(f'<rect class="mark" x="{x0 + s * bar_w:.1f}" y="{bar_top:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{upper + plot_h - bar_top:.1f}" fill="{series_colour(s)}">'
                         f'<title>{escape(category)} / {escape(name)}: {value:.2f}</title></rect>')
        label_x = x0 + bar_w * len(names) / 2
        parts.append(f'<text transform="translate({label_x:.1f} {upper + plot_h + 10}) rotate(45)" {FONT}>'
                     f'{escape(category)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right:.1f}" y1="{upper + plot_h}" y2="{upper + plot_h}" '
                 f'stroke="#333"/></svg>')
    return "".join(parts)


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, plot_id: str, x_label: str,
               y_label: str, markers: Optional[dict[str, tuple[float, float, str]]] = None,
               faint: Sequence[str] = (), width: float = 520, height: float = 300) -> str:
    """Lines through (x, y) points, one per series, with optional labelled marker points.

    ``series`` maps a name to (xs, ys); ``markers`` maps a label to (x, y, colour); series named
    in ``faint`` are drawn thin and light (raw values behind their smoothed version) and left
    out of the legend.
    """
    xs = [x for sx, _ in series.values() for x in sx]
    ys = [v for _, sy in series.values() for v in sy if math.isfinite(v)]
    if not xs or not ys:
        raise ValueError(f"line chart {title!r}: no finite points")
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    left, right, upper, lower = 58, 16, 44, 42
    plot_w, plot_h = width - left - right, height - upper - lower
    x_lo, x_hi, y_lo, y_hi = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    px = lambda v: left + plot_w * (v - x_lo) / ((x_hi - x_lo) or 1)  # noqa: E731
    py = lambda v: upper + plot_h * (1 - (v - y_lo) / ((y_hi - y_lo) or 1))  # noqa: E731
    parts = [_frame(width, height, title, plot_id)]
    parts.append(f'<text x="{left}" y="18" {FONT} font-weight="600">{escape(title)}</text>')
    legend = [n for n in series if n not in faint]
    colours = {name: series_colour(i) for i, name in enumerate(legend)}
    if len(legend) > 1:
        parts += _legend(legend, left, 34, [colours[n] for n in legend])
    for tick in y_ticks:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end" {FONT}>{format_tick(tick)}</text>')
    for tick in x_ticks:
        parts.append(f'<text x="{px(tick):.1f}" y="{upper + plot_h + 16}" text-anchor="middle" {FONT}>'
                     f'{format_tick(tick)}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{upper + plot_h}" y2="{upper + plot_h}" stroke="#333"/>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{upper}" y2="{upper + plot_h}" stroke="#333"/>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" {FONT}>{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {upper + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
                 f'{FONT}>{escape(y_label)}</text>')
    for name, (sx, sy) in series.items():
        points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(sx, sy) if math.isfinite(b))
        if name in faint:
            base = name.split(" (raw)")[0]
            style = f'stroke="{colours.get(base, "#999")}" stroke-opacity="0.3" stroke-width="1"'
        else:
            style = f'stroke="{colours[name]}" stroke-width="2"'
        parts.append(f'<polyline class="mark" fill="none" {style} points="{points}"><title>{escape(name)}</title>'
                     f'</polyline>')
    # marker labels are listed in the plot's top-right corner: beside their points they overlap
    for i, (label, (mx, my, colour)) in enumerate((markers or {}).items()):
        parts.append(f'<circle class="mark" cx="{px(mx):.1f}" cy="{py(my):.1f}" r="4" fill="{colour}" stroke="#fff"/>')
        parts.append(f'<text x="{left + plot_w - 4:.1f}" y="{upper + 14 + 15 * i:.1f}" text-anchor="end" fill="{colour}" '
                     f'{FONT}>&#9679; {escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first ones average what there is)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def thin(xs: Sequence[float], ys: Sequence[float], limit: int = 600) -> tuple[list[float], list[float]]:
    """Every k-th point so at most ``limit`` remain (the last one kept): keeps long curves small."""
    step = max(1, math.ceil(len(xs) / limit))
    keep = list(range(0, len(xs), step))
    if keep and keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]
